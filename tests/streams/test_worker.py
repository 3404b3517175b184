"""The live worker against the real (embedded Tansu) broker, run as ``leadflow worker`` subprocesses.

Every expectation is computed by replaying the same events through the pure engine
(``lifecycle.processor.Processor``, event-time clock, timers run to the end): live processing must
produce every transition and alert id the replay produces — exactly, for an undisturbed worker; at
least once, across a SIGKILL or a rebalance. Events are produced in real time (``occurred_at`` is the
wall clock when sent) and SLAs are seconds long, written to a policy file.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from lifecycle.engine import Engine
from schemas.policy_file import load_policy
from lifecycle.processor import Processor
from schemas import codec
from leadflow.broker import EmbeddedBroker, die_with_parent, free_port
from streams.topics import Topics
from tests.kafka_helpers import consume_all, decode_json

ROOT = Path(__file__).resolve().parents[2]

#: Short SLAs: everything of one lead is over within seconds.
QUICK_POLICY = """
[sla.assignment]
within = "2s"
business = false

[sla.first_touch]
within = "3s"
business = false
warn_at = 0.5
escalate_after = "2s"

[sla.qualification]
within = "3s"
business = false

[sla.opportunity]
within = "3s"
business = false

[sla.nurture]
within = "3s"
business = false
"""

#: For crash and rebalance tests: first_touch steps at +4 s, +8 s, +12 s, so some fall due after a
#: restarted (or surviving) worker is ready.
SLOW_POLICY = QUICK_POLICY.replace('within = "3s"\nbusiness = false\nwarn_at = 0.5\nescalate_after = "2s"',
                                   'within = "8s"\nbusiness = false\nwarn_at = 0.5\nescalate_after = "4s"')
assert SLOW_POLICY != QUICK_POLICY


# -- helpers ---------------------------------------------------------------------------------------

def _now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


class Worker:
    """``python -m leadflow worker`` in its own session (so SIGKILL hits it and nothing else)."""

    def __init__(self, bootstrap: str, prefix: str, policy: Path, log_dir: Path, name: str,
                 *extra: str) -> None:
        self.extra = extra  # more command-line arguments, e.g. ("--data-dir", path)
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.policy = policy
        self.port = free_port()
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_at: float | None = None

    def start(self) -> "Worker":
        env = dict(os.environ, LEADFLOW_APP_ID=self.prefix, LEADFLOW_TOPIC_PREFIX=self.prefix,
                   LEADFLOW_PARTITIONS="4", LEADFLOW_LOGLEVEL="info")
        env.pop("LEADFLOW_BROKER", None)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "leadflow", "worker", "--broker", self.bootstrap,
                 "--policy", str(self.policy), "--web-port", str(self.port), *self.extra],
                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=die_with_parent,
            )
        return self

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as r:
                body = r.read()
                status = r.status
        except urllib.error.HTTPError as error:
            body, status = error.read(), error.code
        ctype = "json"
        try:
            return status, json.loads(body)
        except ValueError:
            ctype = "text"
        return status, body.decode() if ctype == "text" else body

    def health(self) -> dict[str, Any] | None:
        try:
            status, doc = self.get("/health", timeout=1.0)
        except OSError:
            return None
        return doc if status == 200 else None

    def wait_ready(self, timeout: float = 40.0, partitions: int | None = None) -> dict[str, Any]:
        """Until ``/health`` is 200 (and, if given, this worker holds ``partitions`` partitions)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.tail()
            doc = self.health()
            if doc is not None and (partitions is None or len(doc["partitions"]) == partitions):
                self.ready_at = time.time()
                return doc
            time.sleep(0.2)
        raise AssertionError(f"worker not ready in {timeout} s:\n{self.tail()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, size: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-size:].decode(errors="replace")
        except OSError:
            return ""


class Feed:
    """Produces events in real time and remembers them for the replay that computes expectations.

    Kafka orders a lead's events within one topic partition only; faust may hand two messages of
    different topics fetched together to the agent in either order. So when a lead's next event goes
    to another topic than its previous one, the feed waits ``CROSS_TOPIC_GAP`` first.
    """

    CROSS_TOPIC_GAP = 0.3

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        self.topics = topics
        self.events: list[bytes] = []
        self._last: dict[str, tuple[str, float]] = {}
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)

    def send(self, lead_id: str, event_type: str, *, topic: str | None = None, **fields: Any) -> dict[str, Any]:
        body = {"event_id": f"{lead_id}-{uuid.uuid4().hex[:8]}", "event_type": event_type,
                "lead_id": lead_id, "occurred_at": _now_rfc3339(), **fields}
        value = json.dumps(body).encode()
        topic = topic or {"form_fill": self.topics.form_fills, "email_engagement": self.topics.email_engagement,
                 "deal_stage_change": self.topics.deal_stages}.get(event_type, self.topics.sales_activity)
        last = self._last.get(lead_id)
        if last is not None and last[0] != topic:
            sleep_until(last[1] + self.CROSS_TOPIC_GAP)
        self.producer.send(topic, key=lead_id.encode(), value=value).get(timeout=10)
        self._last[lead_id] = (topic, time.time())
        self.events.append(value)
        return body

    def raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.producer.send(topic, key=key, value=value).get(timeout=10)

    def close(self) -> None:
        self.producer.close(timeout=5)


def replay(policy_path: Path, events: list[bytes]) -> tuple[set[str], set[str], dict[str, str], list[Any]]:
    """(transition ids, alert ids, lead -> final stage, records) of the same events, timers run to
    the end."""
    processor = Processor(Engine(load_policy(policy_path)))
    records = []
    last = 0
    for value in events:
        event = codec.decode(value)
        last = max(last, event.occurred_at)
        records.extend(processor.submit(event))
    records.extend(processor.advance(last + 3_600_000))
    transitions = {r.transition_id for r in records if hasattr(r, "transition_id")}
    alerts = {r.alert_id for r in records if hasattr(r, "alert_id")}
    stages = {lead_id: lead.stage.value for lead_id, lead in processor.leads.items()}
    return transitions, alerts, stages, records


def wait_for_ids(bootstrap: str, topics: Topics, transitions: set[str], alerts: set[str],
                 timeout: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Output records, read until every expected id is there (or the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        lifecycle = decode_json(consume_all(bootstrap, topics.lifecycle, idle=0.3, timeout=10))
        alert_records = decode_json(consume_all(bootstrap, topics.alerts, idle=0.3, timeout=10))
        have_t = {r["transition_id"] for r in lifecycle}
        have_a = {r["alert_id"] for r in alert_records}
        if (transitions <= have_t and alerts <= have_a) or time.monotonic() > deadline:
            return lifecycle, alert_records
        time.sleep(0.5)


def sleep_until(t: float) -> None:
    delay = t - time.time()
    if delay > 0:
        time.sleep(delay)


@pytest.fixture
def deployment(kafka_broker: EmbeddedBroker, tmp_path: Path,
               unique_name: Callable[..., str]) -> Iterator[Callable[..., Any]]:
    """Factory: ``deployment(policy_text)`` → (topics, policy path, make_worker); workers are
    stopped at the end of the test."""
    workers: list[Worker] = []
    prefix = unique_name("lfw")
    topics = Topics.prefixed(prefix)

    def make(policy_text: str) -> tuple[Topics, Path, Callable[[str], Worker]]:
        policy = tmp_path / "policy.toml"
        policy.write_text(policy_text)

        def worker(name: str, *extra: str) -> Worker:
            w = Worker(kafka_broker.bootstrap, prefix, policy, tmp_path, name, *extra)
            workers.append(w)
            return w.start()

        return topics, policy, worker

    yield make
    for w in workers:
        w.stop()


# -- (a) events → lifecycle and alerts; (b) DLQ; operations endpoints ------------------------------

def test_events_become_the_replays_lifecycle_and_alert_records_and_bad_messages_go_to_the_dlq(
    deployment: Callable[..., Any], bootstrap: str
) -> None:
    topics, policy, make_worker = deployment(QUICK_POLICY)
    worker = make_worker("w1")
    health = worker.wait_ready()
    assert health["partitions"] == [0, 1, 2, 3]
    feed = Feed(bootstrap, topics)
    t0 = time.time()
    # A: hand-raiser, never assigned → handoff_broken (unassigned) at +2 s
    feed.send("A", "form_fill", form_type="demo_request", form_id="f1")
    # B: assigned and touched at once → sal; qualified → sql; the opportunity SLA breaches at +3 s
    feed.send("B", "form_fill", form_type="pricing", form_id="f2")
    feed.send("B", "lead_assigned", owner_id="rep-1", team="na")
    feed.send("B", "sales_touch", rep_id="rep-1", channel="call", outcome="connected")
    feed.send("B", "sales_disposition", decision="qualify", rep_id="rep-1")
    # C: assigned, not touched: warning +1.5 s, breach +3 s, escalation +5 s; then touched → resolved
    feed.send("C", "form_fill", form_type="contact_us", form_id="f3")
    feed.send("C", "lead_assigned", owner_id="rep-2", team="emea")
    # malformed input between good events: bad JSON, no lead_id, unknown type, bad time, unknown Avro id
    bad = [
        b'{"event_id": "x1", "event_type": ',
        b'{"event_id": "x2", "event_type": "form_fill", "occurred_at": "2026-03-02T10:00:00Z"}',
        b'{"event_id": "x3", "event_type": "fax", "lead_id": "Z", "occurred_at": "2026-03-02T10:00:00Z"}',
        b'{"event_id": "x4", "event_type": "form_fill", "lead_id": "Z", "occurred_at": "yesterday"}',
        b"\x00\x00\x00\x03\xe7garbage",
    ]
    for value in bad:
        feed.raw(topics.sales_activity, value, key=b"Z")
    # good events after the bad ones: JSON with a key that is not the lead id (repartitioned), and Avro
    d = feed.send("D", "form_fill", form_type="webinar", form_id="f4")
    feed.send("E", "form_fill", form_type="webinar", form_id="f5")
    sleep_until(t0 + 5.6)
    # seconds later (order across topics is not Kafka's to keep): D again with a foreign key, so it
    # is repartitioned, and E in Avro
    d2 = json.dumps({**d, "event_id": "D-2", "form_type": "pricing"}).encode()
    feed.raw(topics.form_fills, d2, key=b"not-the-lead")
    feed.events.append(d2)
    e2 = json.dumps({"event_id": "E-avro", "event_type": "email_engagement", "lead_id": "E",
                     "occurred_at": _now_rfc3339(), "action": "reply", "campaign_id": "c1"}).encode()
    feed.raw(topics.email_engagement, codec.encode_event_avro(codec.decode(e2)), key=b"E")
    feed.events.append(e2)
    feed.send("C", "sales_touch", rep_id="rep-2", channel="email", outcome="replied")
    feed.send("C", "sales_disposition", decision="disqualify", reason="no budget", rep_id="rep-2")
    feed.close()

    expected_t, expected_a, stages, _ = replay(policy, feed.events)
    lifecycle, alerts = wait_for_ids(bootstrap, topics, expected_t, expected_a, timeout=20)
    assert {r["transition_id"] for r in lifecycle} == expected_t
    assert {r["alert_id"] for r in alerts} == expected_a
    kinds = {(a["lead_id"], a["type"], a["sla"], a["level"]) for a in alerts}
    assert ("A", "handoff_broken", "assignment", 1) in kinds
    assert ("B", "follow_up_overdue", "opportunity", 1) in kinds
    assert {("C", "sla_warning", "first_touch", 0), ("C", "follow_up_overdue", "first_touch", 1),
            ("C", "follow_up_overdue", "first_touch", 2)} <= kinds
    assert ("C", "sla_resolved", "first_touch") in {k[:3] for k in kinds}
    late = [a for a in alerts if a["type"] != "sla_resolved" and a["due_at"] and a["lead_id"] in "AB"]
    for a in late:   # fired within a second of the deadline
        assert 0 <= a["overdue_by_ms"] < 1000, a

    # (b) every bad message is in the DLQ with its bytes, origin and code; D and E were processed
    dlq = decode_json(consume_all(bootstrap, topics.dlq, expected_count=len(bad), timeout=10))
    assert sorted(base64.b64decode(r["original"]) for r in dlq) == sorted(bad)
    assert {r["error"] for r in dlq} == {"invalid_json", "missing_field", "unknown_event_type",
                                         "invalid_timestamp", "unknown_schema_id"}
    assert all(r["source_topic"] == topics.sales_activity and r["source_offset"] is not None for r in dlq)
    moves = {(r["lead_id"], r["to_stage"]) for r in lifecycle}
    assert {("D", "mql"), ("E", "engaged")} <= moves   # D-2 came through the repartition topic
    status, doc = worker.get("/leads/E")
    assert status == 200 and doc["score"] == 20 + 15    # webinar (JSON) + reply (Avro)

    # operations: lead lookup, health, metrics
    status, doc = worker.get("/leads/C")
    assert status == 200
    assert (doc["stage"], doc["owner_id"], doc["team"]) == ("disqualified", "rep-2", "emea")
    assert doc["stage"] == stages["C"]
    assert [h["stage"] for h in doc["history"]][:2] == ["new", "mql"]
    status, doc = worker.get("/leads/B")
    assert status == 200 and doc["stage"] == "sql"
    (sla,) = doc["open_slas"]                # breached, still open until a deal stage change
    assert sla["sla"] == "opportunity" and sla["breached"] and all(s["fired"] for s in sla["steps"])
    status, _ = worker.get("/leads/nobody")
    assert status == 404
    status, doc = worker.get("/health")
    assert status == 200 and doc["partitions"] == [0, 1, 2, 3] and doc["timers_pending"] == 0
    status, text = worker.get("/metrics")
    assert status == 200
    assert 'leadflow_dlq_records_total{error="invalid_json"} 1.0' in text
    assert 'leadflow_alerts_total{type="handoff_broken"}' in text
    assert "leadflow_timer_lateness_seconds_bucket" in text
    assert 'leadflow_events_total{event_type="form_fill"}' in text
    assert "leadflow_forwarded_events_total 1.0" in text


def test_open_slas_are_shown_with_rfc3339_due_times(deployment: Callable[..., Any], bootstrap: str) -> None:
    topics, policy, make_worker = deployment(SLOW_POLICY)
    worker = make_worker("w1")
    worker.wait_ready()
    feed = Feed(bootstrap, topics)
    feed.send("F", "form_fill", form_type="demo_request", form_id="f1")
    feed.send("F", "lead_assigned", owner_id="rep-9", team="apac")
    feed.close()
    deadline = time.monotonic() + 10
    while True:
        status, doc = worker.get("/leads/F")
        if status == 200 and doc["owner_id"] == "rep-9" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status == 200
    assert doc["stage"] == "mql" and doc["owner_id"] == "rep-9"
    (sla,) = doc["open_slas"]
    assert sla["sla"] == "first_touch"
    assert [s["kind"] for s in sla["steps"]] == ["warning", "breach", "escalation"]
    for step in sla["steps"]:
        assert dt.datetime.fromisoformat(step["at"]).tzinfo is not None
    health = worker.health()
    assert health is not None and health["timers_pending"] == 1
