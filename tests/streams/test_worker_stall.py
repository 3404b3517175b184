"""Stalls past the session timeout (issue 10 item 8): a worker SIGSTOPped (a GC pause, a VM stall) or
the broker SIGSTOPped, three times each, while ~12 000 events stream through three workers in one group.

A stalled worker loses its partitions; when it wakes it must not write a lead row or an output for
them, and whoever owns a partition next must serve it from complete rows. The check is exact: the set
of stage changes ``(lead, from, to, trigger_event_id)`` (deduplicated by ``transition_id``) equals
``leadflow replay`` of the same events; the newest row of every lead has applied each of its events
(none lost, even one that changes no stage); and a fresh worker that recovers the whole table from
the changelog afterwards holds every lead in its replayed stage.

Knobs for verification loops (defaults keep each test near 1.5 minutes):
``LEADFLOW_STALL_PAUSE`` (seconds a worker is stopped, default 20), ``LEADFLOW_BROKER_STALL`` (seconds
the broker is stopped, default 15), ``LEADFLOW_STALL_EVENTS`` (default 12 000).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from leadflow.broker import signal_group
from leadflow.traffic import TrafficShape, json_lines
from lifecycle.ids import event_digest
from leadflow.worker import topics_from_env
from streams import rows
from streams.topics import Topics, ensure_topics
from tests.kafka_helpers import consume_all, decode_json
from tests.streams.test_worker import EmbeddedBroker, Worker, replay

EVENTS = int(os.environ.get("LEADFLOW_STALL_EVENTS", "12000"))
WORKER_PAUSE = float(os.environ.get("LEADFLOW_STALL_PAUSE", "20"))
BROKER_PAUSE = float(os.environ.get("LEADFLOW_BROKER_STALL", "15"))
STALLS = 3
#: seconds between the end of one stall and the start of the next (a rebalance settles meanwhile)
GAP = 6.0
#: Default policy: every SLA of these March 2026 journeys is long overdue, so timers fire too.
POLICY = "# built-in defaults\n"


def traffic(count: int) -> list[tuple[bytes, bytes]]:
    """``count`` events of realistic journeys (1% duplicates, nothing malformed), as (key, value)."""
    lines = []
    for line in json_lines(count // 6 + 50, seed=11, shape=TrafficShape(bad_share=0.0)):
        lines.append((json.loads(line)["lead_id"].encode(), line))
        if len(lines) == count:
            break
    return lines


class Stream(threading.Thread):
    """Sends ``events`` to one topic, keyed by lead, evenly over ``seconds`` (in 50 ms slices)."""

    def __init__(self, bootstrap: str, topic: str, events: list[tuple[bytes, bytes]], seconds: float) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.events, self.seconds = bootstrap, topic, events, seconds
        self.error: BaseException | None = None

    def run(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5,
                                 max_in_flight_requests_per_connection=1, request_timeout_ms=60_000,
                                 client_id="leadflow-stall-feed")
        try:
            started = time.monotonic()
            slices = max(1, int(self.seconds / 0.05))
            per = -(-len(self.events) // slices)
            futures = []
            for i in range(0, len(self.events), per):
                for key, value in self.events[i:i + per]:
                    futures.append(producer.send(self.topic, key=key, value=value))
                delay = started + (i // per + 1) * 0.05 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            producer.flush(timeout=120)
            for future in futures:
                future.get(timeout=120)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            producer.close(timeout=5)


class Cluster:
    """Three (or more) ``leadflow worker`` processes in one group on ``broker``."""

    def __init__(self, broker: EmbeddedBroker, prefix: str, work: Path) -> None:
        self.broker, self.prefix, self.work = broker, prefix, work
        self.policy = work / "policy.toml"
        self.policy.write_text(POLICY)
        self.workers: list[Worker] = []
        env = {"LEADFLOW_APP_ID": prefix, "LEADFLOW_TOPIC_PREFIX": prefix, "LEADFLOW_PARTITIONS": "4"}
        self.topics: Topics = topics_from_env(env)
        ensure_topics(broker.bootstrap, self.topics)

    def start(self, name: str) -> Worker:
        worker = Worker(self.broker.bootstrap, self.prefix, self.policy, self.work, name).start()
        self.workers.append(worker)
        return worker

    def wait_split(self, workers: list[Worker], timeout: float = 60.0) -> None:
        """Until the workers together hold the 4 partitions, each at least one."""
        deadline = time.monotonic() + timeout
        while True:
            docs = [w.health() for w in workers]
            held = sorted(p for d in docs if d for p in d["partitions"])
            if all(d and d["partitions"] for d in docs) and held == [0, 1, 2, 3]:
                return
            assert time.monotonic() < deadline, f"no split in {timeout} s: {docs}"
            time.sleep(0.3)

    def kill_all(self) -> None:
        for worker in self.workers:
            if worker.proc is not None:
                signal_group(worker.proc.pid, signal.SIGCONT)
            worker.kill()


@pytest.fixture
def cluster_on(tmp_path: Path, unique_name: Callable[..., str]) -> Iterator[Callable[[EmbeddedBroker], Cluster]]:
    made: list[Cluster] = []

    def make(broker: EmbeddedBroker) -> Cluster:
        cluster = Cluster(broker, unique_name("lfs"), tmp_path)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.kill_all()


def transitions(records: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    """(lead, from, to, trigger) of each distinct transition id (a repeat is the same record)."""
    first: dict[str, dict[str, Any]] = {}
    for r in records:
        first.setdefault(r["transition_id"], r)
    return {(r["lead_id"], r["from_stage"], r["to_stage"], r["trigger_event_id"]) for r in first.values()}


def changelog_story(bootstrap: str, topics: Topics, lead_ids: list[str]) -> dict[str, list[tuple[Any, ...]]]:
    """Every changelog write of ``lead_ids``, in log order: (partition, offset, time ms, version,
    stage, events seen), to tell a stale write from a lost one when the check fails."""
    wanted = {lead.encode() for lead in lead_ids}
    story: dict[str, list[tuple[Any, ...]]] = {lead: [] for lead in lead_ids}
    for r in consume_all(bootstrap, topics.changelogs[0], idle=1.0, timeout=30):
        if r.key in wanted and r.value:
            doc = json.loads(r.value)
            lead = doc.get("lead") or {}
            story[r.key.decode()].append((r.partition, r.offset, r.timestamp, doc.get("v"),
                                          lead.get("stage"), len(lead.get("seen", "")) // 16))
    return story


def unapplied_events(bootstrap: str, topics: Topics, events: list[tuple[bytes, bytes]]) -> list[str]:
    """Event ids that the newest row of their lead (highest version, as recovery keeps) has not
    seen: SPEC 6, no input event is lost. Catches a lost event that changes no stage, too."""
    newest: dict[str, tuple[int, bytes]] = {}
    for r in consume_all(bootstrap, topics.changelogs[0], idle=1.0, timeout=30):
        if r.value:
            lead_id, v = r.key.decode(), rows.version_of(r.value)
            if lead_id not in newest or v > newest[lead_id][0]:
                newest[lead_id] = (v, r.value)
    leads = {lead_id: rows.decode(raw).lead for lead_id, (_, raw) in newest.items()}
    lost = []
    for key, value in events:
        lead, event_id = leads.get(key.decode()), json.loads(value)["event_id"]
        if lead is None or not lead.has_seen(event_digest(event_id)):
            lost.append(event_id)
    return sorted(set(lost))


def check_against_replay(cluster: Cluster, events: list[tuple[bytes, bytes]], timeout: float = 60.0) -> None:
    """The lifecycle output is exactly the replay's, every event is applied to its lead's newest
    row, and a fresh worker recovers every lead's stage."""
    bootstrap, topics = cluster.broker.bootstrap, cluster.topics
    _, _, stages, records = replay(cluster.policy, [value for _, value in events])
    expected = {(r.lead_id, r.from_stage, r.to_stage, r.trigger_event_id)
                for r in records if hasattr(r, "transition_id")}
    expected_ids = {r.transition_id for r in records if hasattr(r, "transition_id")}
    deadline = time.monotonic() + timeout
    while True:
        lifecycle = decode_json(consume_all(bootstrap, topics.lifecycle, idle=1.0, timeout=30))
        if expected_ids <= {r["transition_id"] for r in lifecycle} or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    time.sleep(2.0)   # anything late (an extra) lands too
    live = transitions(decode_json(consume_all(bootstrap, topics.lifecycle, idle=1.0, timeout=30)))
    missing, extra = sorted(expected - live, key=repr), sorted(live - expected, key=repr)  # from_stage may be None
    lost = unapplied_events(bootstrap, topics, events)
    if missing or extra or lost:
        leads = sorted({t[0] for t in missing[:5] + extra[:5]} | {e.rsplit("-", 1)[0] for e in lost[:5]})
        story = changelog_story(bootstrap, topics, leads)
        raise AssertionError(
            f"{len(missing)} stage changes missing, {len(extra)} extra of {len(expected)}; "
            f"{len(lost)} events never applied:\n"
            f"missing {missing[:10]}\nextra {extra[:10]}\nnever applied {lost[:10]}\nchangelog {story}")
    # Second look, at the state itself: one new worker rebuilds the whole table from the changelog.
    cluster.kill_all()
    fresh = cluster.start("fresh")
    fresh.wait_ready(timeout=60, partitions=4)
    wrong = []
    for lead_id, stage in sorted(stages.items()):
        try:
            status, doc = fresh.get(f"/leads/{lead_id}", timeout=5)
        except (OSError, urllib.error.URLError) as exc:
            wrong.append((lead_id, stage, repr(exc)))
            continue
        if status != 200 or doc.get("stage") != stage:
            wrong.append((lead_id, stage, status, doc.get("stage") if isinstance(doc, dict) else doc))
    if wrong:
        story = changelog_story(bootstrap, topics, [w[0] for w in wrong[:5]])
        raise AssertionError(f"{len(wrong)} of {len(stages)} leads recovered in another stage: "
                             f"{wrong[:10]}\nchangelog {story}")


def stream_with_stalls(cluster: Cluster, events: list[tuple[bytes, bytes]], stall: Callable[[int], None],
                       seconds: float) -> None:
    feed = Stream(cluster.broker.bootstrap, cluster.topics.sales_activity, events, seconds)
    feed.start()
    try:
        for i in range(STALLS):
            time.sleep(GAP)
            stall(i)
    finally:
        feed.join(timeout=180)
    assert not feed.is_alive(), "the feed did not finish"
    assert feed.error is None, feed.error


def stall_and_check(cluster: Cluster, stopped: Callable[[list[Worker]], int], pause: float) -> None:
    """Three workers share the partitions; while the events stream, the process ``stopped(workers)``
    names is stopped (SIGSTOP) for ``pause`` seconds, ``STALLS`` times. Then every worker still runs
    and the outcome is the replay's (``check_against_replay``)."""
    workers = [cluster.start(name) for name in ("w1", "w2", "w3")]
    for w in workers:
        w.wait_ready(timeout=60)
    cluster.wait_split(workers)
    events = traffic(EVENTS)

    def stall(i: int) -> None:
        pid = stopped(workers)
        signal_group(pid, signal.SIGSTOP)
        time.sleep(pause)
        signal_group(pid, signal.SIGCONT)

    stream_with_stalls(cluster, events, stall, seconds=STALLS * (GAP + pause) + GAP)
    for w in workers:
        assert w.proc is not None and w.proc.poll() is None, w.tail()
    check_against_replay(cluster, events)


def running_pid(worker: Worker) -> int:
    assert worker.proc is not None and worker.proc.poll() is None, worker.tail()
    return worker.proc.pid


def test_a_worker_paused_past_its_session_timeout_never_corrupts_lead_state(
    kafka_broker: EmbeddedBroker, cluster_on: Callable[[EmbeddedBroker], Cluster]
) -> None:
    stall_and_check(cluster_on(kafka_broker), lambda workers: running_pid(workers[0]), WORKER_PAUSE)


def test_a_broker_stalled_past_the_session_timeout_never_corrupts_lead_state(
    private_broker: EmbeddedBroker, cluster_on: Callable[[EmbeddedBroker], Cluster]
) -> None:
    stall_and_check(cluster_on(private_broker), lambda workers: private_broker.pid, BROKER_PAUSE)
