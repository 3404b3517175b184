"""The sink relay (``streams.relay``) against the real embedded broker, real SQLite and PostgreSQL
databases and a real local HTTP receiver; and ``leadflow worker`` with ``LEADFLOW_SQL_URL`` end to end.

Every test has its own topics (so its own consumer group ``<prefix>.sinks``) and its own database.
Results are waited for with a deadline, never assumed after a sleep.
"""

from __future__ import annotations

import base64
import json
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from lifecycle.records import AlertRecord, DlqRecord, LifecycleRecord, Record, record_key
from schemas.codec import bundled_schemas, decode_record, encode_record_avro
from schemas.registry import RegistryClient
from schemas.wire import record_json
from sinks.base import ListSink, Position, SinkClosed, StoreUnavailable, record_id
from sinks.sql import SqlSink
from sinks.webhook import verify
from leadflow.broker import EmbeddedBroker, signal_group
from streams.config import load_settings
from streams.output import AvroOutput
from streams.relay import SINK_REFUSED, SinkRelay, group_id, relay_for
from streams.topics import Topics, ensure_topics
from tests.kafka_helpers import consume_all, decode_json, produce
from tests.sinks.conftest import (  # noqa: F401 - fixtures
    WEBHOOK_SECRET,
    Reply,
    WebhookReceiver,
    webhook_receiver,
    webhook_secret,
)
from tests.sinks.sample_records import DAY, HOUR, T0, make_alert, make_dlq, make_transition
from tests.streams.test_worker import QUICK_POLICY, Feed, deployment, replay  # noqa: F401 - fixture

# -- helpers ---------------------------------------------------------------------------------------


def eventually(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout} s")
        time.sleep(0.1)


def topic_of(topics: Topics, record: Record) -> str:
    return {LifecycleRecord: topics.lifecycle, AlertRecord: topics.alerts, DlqRecord: topics.dlq}[type(record)]


def publish(bootstrap: str, topics: Topics, records: Iterable[Record], *, avro: bool = False) -> int:
    """Each record to its output topic, keyed as the worker keys it; JSON, or Avro (bundled ids)."""
    by_topic: dict[str, list[tuple[Any, bytes]]] = {}
    for r in records:
        key = record_key(r)
        value = encode_record_avro(r) if avro else record_json(r)
        by_topic.setdefault(topic_of(topics, r), []).append((key, value))
    return sum(produce(bootstrap, topic, pairs) for topic, pairs in by_topic.items())


def journey(lead: str) -> list[Record]:
    """A few records of every type for one lead."""
    warning = make_alert(lead, "sla_warning", level=0)
    return [
        make_transition(lead, None, "new", at=T0, time_in_previous=None),
        make_transition(lead, "new", "mql", at=T0 + 1, owner_id="rep-1", team="emea", skipped=("engaged",)),
        make_transition(lead, "mql", "recycled", at=T0 + DAY, owner_id="rep-1", event_type="sales_disposition",
                        reason="no budget", score=0),
        warning,
        make_alert(lead, "sla_resolved", level=0, resolves=warning.alert_id, alert_id=f"res-{lead}"),
        make_alert(lead, "handoff_broken", sla="assignment", reason="unassigned", due_at=T0 + HOUR),
        make_dlq(len(lead), original=f"{{bad {lead}".encode()),
    ]


def stored(url: str) -> tuple[list[LifecycleRecord], list[AlertRecord], list[DlqRecord]]:
    with SqlSink(url) as db:
        return db.transitions(), db.alerts(), db.dlq_records()


def by_id(records: Iterable[Record]) -> dict[str, Record]:
    return {record_id(r): r for r in records}


def committed(bootstrap: str, group: str, topics: Topics) -> dict[tuple[str, int], int]:
    """The group's committed offsets on the output topics, by (topic, partition); asked without
    joining the group."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                             client_id="leadflow-test-offsets")
    try:
        offsets = {}
        for topic in topics.outputs:
            for p in sorted(consumer.partitions_for_topic(topic) or ()):
                offset = consumer.committed(TopicPartition(topic, p))
                if offset is not None:
                    offsets[(topic, p)] = offset
        return offsets
    finally:
        consumer.close(autocommit=False)


@pytest.fixture
def relays(bootstrap: str) -> Iterator[Callable[..., SinkRelay]]:
    """Factory: a started relay over ``topics`` into ``sink`` (Tansu group timings, bundled Avro
    schemas); every relay is stopped at the end of the test."""
    started: list[SinkRelay] = []

    def make(topics: Topics, sink: Any, **kwargs: Any) -> SinkRelay:
        relay = SinkRelay(bootstrap, topics, sink, **{"tansu": True, "lookup": bundled_schemas(), **kwargs})
        started.append(relay)
        return relay.start()

    yield make
    for relay in started:
        relay.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'relay.db'}"
    url = request.getfixturevalue("postgres_url")
    # trust auth takes any password: one in the URL shows it is never printed
    return url.replace("postgresql://postgres@", "postgresql://postgres:hunter2@", 1)


# -- values -> records -----------------------------------------------------------------------------

def test_values_decode_back_into_the_records_from_json_and_avro() -> None:
    for record in journey("L1"):
        assert decode_record(type(record), record_json(record)) == record
        assert decode_record(type(record), encode_record_avro(record), bundled_schemas()) == record


@pytest.mark.parametrize("value, code", [
    (None, "empty_message"),
    (b"", "empty_message"),
    (b"{not json", "invalid_json"),
    (b"\xff\xfe", "invalid_utf8"),
    (b"[1, 2]", "not_an_object"),
    (b'{"transition_id": "t1"}', "missing_field"),
    (json.dumps({**json.loads(record_json(make_transition())), "score": "ten"}).encode(), "invalid_field"),
    (json.dumps({**json.loads(record_json(make_transition())), "score": 2**63}).encode(), "invalid_field"),
    (json.dumps({**json.loads(record_json(make_transition())), "lead_id": ""}).encode(), "invalid_field"),
    (json.dumps({**json.loads(record_json(make_transition())), "skipped_stages": "mql"}).encode(), "invalid_field"),
    (json.dumps({**json.loads(record_json(make_transition())), "occurred_at": "yesterday"}).encode(),
     "invalid_timestamp"),
    (b"\x00\x00\x00\x03\xe7body", "unknown_schema_id"),
    (encode_record_avro(make_transition())[:8], "invalid_avro"),
    (encode_record_avro(make_alert()), "missing_field"),   # an alert's schema on the lifecycle topic
])
def test_values_that_hold_no_record_raise_a_stable_code(value: bytes | None, code: str) -> None:
    from lifecycle.errors import EventError

    with pytest.raises(EventError) as raised:
        decode_record(LifecycleRecord, value, bundled_schemas())
    assert raised.value.code == code


# -- (a)(b) into SQL, once by id -------------------------------------------------------------------

def test_output_records_reach_the_database_once_each_even_when_produced_twice(
    bootstrap: str, kafka_topics: Callable[..., Topics], relays: Callable[..., SinkRelay], sql_url: str
) -> None:
    topics = kafka_topics()
    records = [r for lead in ("A", "B", "C") for r in journey(lead)]
    publish(bootstrap, topics, records)
    publish(bootstrap, topics, records[::2], avro=True)   # repeats, in the other wire format
    sent = len(records) + len(records[::2])
    relay = relays(topics, SqlSink(sql_url))
    assert "hunter2" not in relay.describe() and "consumer group" in relay.describe()

    eventually(lambda: relay.relayed == sent, what=f"{sent} records relayed and committed")
    transitions, alerts, dlq = stored(sql_url)
    assert by_id(transitions) == by_id(r for r in records if isinstance(r, LifecycleRecord))
    assert by_id(alerts) == by_id(r for r in records if isinstance(r, AlertRecord))
    assert by_id(dlq) == by_id(r for r in records if isinstance(r, DlqRecord))
    assert len(transitions) + len(alerts) + len(dlq) == len(records)   # one row per id
    with SqlSink(sql_url) as db:
        assert {lead: row["stage"] for lead, row in db.leads().items()} == {"A": "recycled", "B": "recycled",
                                                                            "C": "recycled"}
    assert relay.undecodable == 0 and relay.running
    assert sum(committed(bootstrap, group_id(topics), topics).values()) == sent


# -- (c) alerts to a webhook; its dead letters to the DLQ topic ------------------------------------

def test_alerts_reach_the_webhook_and_what_it_gives_up_on_goes_to_the_dlq_topic(
    bootstrap: str, kafka_topics: Callable[..., Topics], webhook_receiver: WebhookReceiver,
    webhook_secret: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    topics = kafka_topics()
    records = journey("W1") + journey("W2")
    alerts = [r for r in records if isinstance(r, AlertRecord)]
    refused = alerts[-1].alert_id
    webhook_receiver.script = lambda n, headers, body: Reply(   # 410: not retried, so dead-lettered
        410 if headers.get("Idempotency-Key") == refused else 200)
    settings = load_settings({"LEADFLOW_WEBHOOK_URL": webhook_receiver.url, "LEADFLOW_APP_ID": topics.app_id})
    relay = relay_for(settings, bootstrap, topics, lookup=bundled_schemas(), tansu=True)
    assert relay is not None
    assert relay.sources == (topics.alerts,)   # only alerts are webhook material
    assert relay.describe().startswith(f"sinks: webhook {webhook_receiver.url}")
    publish(bootstrap, topics, records)
    publish(bootstrap, topics, alerts[:2])     # repeats: the receiver sees their key again
    relay.start()
    try:
        eventually(lambda: relay.relayed == len(alerts) + 2, what="alerts relayed and committed")
        delivered = webhook_receiver.delivered()
        assert {r.headers["Idempotency-Key"] for r in delivered} == {a.alert_id for a in alerts} - {refused}
        for r in delivered:
            assert verify(WEBHOOK_SECRET.encode(), r.body, r.headers["X-Leadflow-Signature"])
        assert {json.loads(r.body)["alert_id"] for r in delivered} == {a.alert_id for a in alerts} - {refused}
    finally:
        relay.stop()
    # flushed before the commit: the dead letter is on the DLQ topic, with the alert as its bytes
    dead = [d for d in decode_json(consume_all(bootstrap, topics.dlq, idle=1.0))
            if d["error"] == "webhook_failed"]
    assert len(dead) == 1 and dead[0]["source_topic"] == topics.alerts
    assert "HTTP 410" in dead[0]["detail"]


def test_a_webhook_that_is_down_holds_the_relay_back_and_stop_dead_letters_what_it_held(
    bootstrap: str, kafka_topics: Callable[..., Topics], webhook_receiver: WebhookReceiver,
    webhook_secret: str,
) -> None:
    """Connection refused is the store's fault: no commit, no dead letter while the relay runs. On
    stop, the alerts the webhook still holds go to the DLQ topic as webhook_failed; they were not
    committed, so the next relay delivers them once the receiver is back."""
    from sinks.kafka import KafkaSink
    from sinks.webhook import RetryPolicy, WebhookSink

    topics = kafka_topics(partitions=1)
    alerts = [r for r in journey("H1") + journey("H2") if isinstance(r, AlertRecord)]
    publish(bootstrap, topics, alerts)
    fast = RetryPolicy(max_retries=1, base_delay=0.01, timeout=1)

    def relay() -> SinkRelay:
        return SinkRelay(bootstrap, topics, WebhookSink(webhook_receiver.url, retry=fast, alerts_topic=topics.alerts),
                         sources=(topics.alerts,), tansu=True,
                         dead_letters=KafkaSink(bootstrap, {DlqRecord: topics.dlq})).start()

    webhook_receiver.stop()                                   # connection refused from now on
    first = relay()
    try:
        eventually(lambda: first.failures >= 3, what="flushes failing while the receiver is down")
        assert first.refused == 0 and first.relayed == 0
        assert committed(bootstrap, first.group, topics) == {}
    finally:
        first.stop(timeout=30)
    assert not first.running
    dead = [d for d in decode_json(consume_all(bootstrap, topics.dlq, idle=1.0)) if d["error"] == "webhook_failed"]
    assert sorted(json.loads(base64.b64decode(d["original"]))["alert_id"] for d in dead) == \
        sorted(a.alert_id for a in alerts)
    assert all(d["source_topic"] == topics.alerts and d["source_offset"] is not None for d in dead)

    webhook_receiver.start()                                  # back, on the same port
    second = relay()
    try:
        eventually(lambda: second.relayed == len(alerts), what="alerts relayed once the receiver is back")
    finally:
        second.stop()
    assert {r.headers["Idempotency-Key"] for r in webhook_receiver.delivered()} == {a.alert_id for a in alerts}
    assert sum(committed(bootstrap, second.group, topics).values()) == len(alerts)


# -- (d) garbage on an output topic ----------------------------------------------------------------

def test_a_value_that_is_no_record_is_counted_stored_as_a_dead_letter_and_the_relay_goes_on(
    bootstrap: str, kafka_topics: Callable[..., Topics], relays: Callable[..., SinkRelay], tmp_path: Path
) -> None:
    topics = kafka_topics(partitions=1)   # one partition: garbage sits between good records
    url = f"sqlite:///{tmp_path / 'relay.db'}"
    good = journey("G")
    lifecycle = [r for r in good if isinstance(r, LifecycleRecord)]
    garbage = [b"not json at all", b"", b"\x00\x00\x00\x03\xe7avro?", b'{"transition_id": "x"}']
    produce(bootstrap, topics.lifecycle, [("G", record_json(lifecycle[0])), *(("G", g) for g in garbage),
                                          ("G", None), *(("G", record_json(r)) for r in lifecycle[1:])])
    publish(bootstrap, topics, [r for r in good if not isinstance(r, LifecycleRecord)])
    relay = relays(topics, SqlSink(url))

    eventually(lambda: relay.relayed == len(good) + len(garbage) + 1, what="every value relayed")
    assert relay.running and relay.undecodable == len(garbage) + 1
    transitions, alerts, dlq = stored(url)
    assert by_id(transitions) == by_id(lifecycle)
    assert len(alerts) == len([r for r in good if isinstance(r, AlertRecord)])
    bad = [d for d in dlq if d.source_topic == topics.lifecycle]
    assert sorted(d.error for d in bad) == sorted(["invalid_json", "empty_message", "empty_message",
                                                   "unknown_schema_id", "missing_field"])
    assert sorted(d.original for d in bad) == sorted([*garbage, b""])
    assert all(d.source_partition == 0 and d.source_offset is not None for d in bad)
    # and records produced after the garbage still arrive
    later = make_transition("G", "recycled", "mql", at=T0 + 2 * DAY)
    publish(bootstrap, topics, [later])
    eventually(lambda: later.transition_id in by_id(stored(url)[0]), what="a record after the garbage")


# -- (e) offsets only after the flush --------------------------------------------------------------

def test_a_restarted_relay_loses_nothing_and_repeats_nothing_committed(
    bootstrap: str, kafka_topics: Callable[..., Topics], relays: Callable[..., SinkRelay], tmp_path: Path
) -> None:
    topics = kafka_topics()
    url = f"sqlite:///{tmp_path / 'relay.db'}"
    first, second = journey("R1") + journey("R2"), journey("R3") + journey("R4")
    publish(bootstrap, topics, first)
    relay = relays(topics, SqlSink(url))
    eventually(lambda: relay.relayed == len(first), what="first batch relayed")
    relay.stop()
    assert not relay.running

    publish(bootstrap, topics, second)     # while no relay runs
    again = relays(topics, SqlSink(url))
    eventually(lambda: again.relayed >= len(second), what="second batch relayed")
    assert again.relayed == len(second)    # what was committed is not delivered again
    transitions, alerts, dlq = stored(url)
    assert by_id([*transitions, *alerts, *dlq]) == by_id(first + second)
    assert sum(committed(bootstrap, group_id(topics), topics).values()) == len(first) + len(second)


class GatedSink(ListSink):
    """An in-memory sink whose flush fails until ``gate`` is set: a store that is down."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.failed_flushes = 0

    def flush(self) -> None:
        if not self.gate.is_set():
            self.failed_flushes += 1
            raise StoreUnavailable("store unavailable")
        super().flush()


def test_offsets_are_committed_only_once_the_sink_flushed(
    bootstrap: str, kafka_topics: Callable[..., Topics], relays: Callable[..., SinkRelay]
) -> None:
    topics = kafka_topics()
    records = journey("F1")
    publish(bootstrap, topics, records)
    down = GatedSink()
    relay = relays(topics, down)
    eventually(lambda: len(down.records) >= len(records) and down.failed_flushes >= 1, what="records added")
    assert committed(bootstrap, relay.group, topics) == {}     # added but never flushed: nothing committed
    relay.stop()                                       # gives up while the store is down
    assert relay.relayed == 0 and committed(bootstrap, relay.group, topics) == {}

    up = GatedSink()
    up.gate.set()
    again = relays(topics, up)                         # the same group: everything comes again
    eventually(lambda: again.relayed == len(records), what="records relayed after the store is back")
    assert by_id(up.flushed) == by_id(records)
    assert sum(committed(bootstrap, again.group, topics).values()) == len(records)


class FailsOnce(ListSink):
    """A sink whose first add raises an error no retry rule covers (``SinkClosed``, as a bug would)."""

    def __init__(self) -> None:
        super().__init__()
        self.raised = False

    def add(self, record: Record, position: Position | None = None) -> None:
        if not self.raised:
            self.raised = True
            raise SinkClosed("a sink closed under the relay's feet")
        super().add(record, position)


def test_an_unexpected_error_neither_ends_the_relay_nor_skips_the_batch(
    bootstrap: str, kafka_topics: Callable[..., Topics], relays: Callable[..., SinkRelay]
) -> None:
    topics = kafka_topics()
    records = journey("X1")
    publish(bootstrap, topics, records)
    sink = FailsOnce()
    relay = relays(topics, sink)
    eventually(lambda: relay.relayed >= len(records), what="every record relayed after the error")
    assert sink.raised and relay.failures >= 1 and relay.running
    assert by_id(sink.flushed) == by_id(records)
    assert sum(committed(bootstrap, relay.group, topics).values()) == len(records)


# -- (f) a batch that fails part way; a broker that cannot be reached ------------------------------

def test_a_batch_that_fails_part_way_is_rewound_and_relayed_in_full(
    bootstrap: str, kafka_topics: Callable[..., Topics], relays: Callable[..., SinkRelay], fake_registry: Any
) -> None:
    """The schema registry is down while a batch is decoded: poll has moved past the batch, so the
    relay must seek back before it polls again, or a later commit would cover the lost records."""
    topics = kafka_topics(partitions=1)
    output = AvroOutput.register(RegistryClient(fake_registry.url), topics)
    first, then = journey("J1"), [r for r in journey("J2") if not isinstance(r, DlqRecord)]
    publish(bootstrap, topics, first)
    produce(bootstrap, topics.lifecycle, [(r.lead_id, output.lifecycle(record_json(r).decode()))
                                          for r in then if isinstance(r, LifecycleRecord)])
    produce(bootstrap, topics.alerts, [(r.lead_id, output.alert(record_json(r).decode()))
                                       for r in then if isinstance(r, AlertRecord)])
    fake_registry.delay = 5.0                                  # every lookup times out
    sink = ListSink()
    relay = relays(topics, sink, lookup=RegistryClient(fake_registry.url, timeout=0.2))

    eventually(lambda: relay.failures >= 2, what="batches failing while the registry is down")
    assert relay.relayed <= len(first) and relay.undecodable == 0
    assert sum(committed(bootstrap, relay.group, topics).values()) <= len(first)
    fake_registry.delay = 0.0
    eventually(lambda: relay.relayed >= len(first) + len(then), what="every record relayed once the registry is back")
    assert relay.relayed == len(first) + len(then)
    assert by_id(sink.flushed) == by_id(first + then)
    assert sum(committed(bootstrap, relay.group, topics).values()) == len(first) + len(then)


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker for this test alone, so it may pause it (SIGSTOP): unreachable, its state kept."""
    broker = EmbeddedBroker(log_dir=tmp_path / "tansu").start()
    try:
        yield broker
    finally:
        if broker.pid is not None:
            signal_group(broker.pid, signal.SIGCONT)
        broker.stop()


class PausingSink(ListSink):
    """A sink whose ``at``-th add pauses ``broker``; every add fails while the broker is paused."""

    def __init__(self, broker: EmbeddedBroker, at: int) -> None:
        super().__init__()
        self.broker, self.at, self.adds = broker, at, 0
        self.paused = threading.Event()

    def add(self, record: Record, position: Position | None = None) -> None:
        self.adds += 1
        if self.adds == self.at:
            signal_group(self.broker.pid, signal.SIGSTOP)
            self.paused.set()
        if self.paused.is_set():
            raise StoreUnavailable("store unavailable")
        super().add(record, position)

    def resume(self) -> None:
        signal_group(self.broker.pid, signal.SIGCONT)
        self.paused.clear()


def test_a_failure_while_the_broker_cannot_be_reached_skips_nothing_and_stop_still_works(
    own_broker: EmbeddedBroker, unique_name: Callable[..., str]
) -> None:
    """After a failed batch the relay must not poll past it, and must not hang on a broker it
    cannot reach either (kafka-python waits for ever for committed offsets)."""
    broker = own_broker.bootstrap
    topics = Topics.prefixed(unique_name("lf"), partitions=1)
    ensure_topics(broker, topics)
    records = journey("U1") + journey("U2")
    publish(broker, topics, records)
    sink = PausingSink(own_broker, at=3)
    relay = SinkRelay(broker, topics, sink, tansu=True).start()
    try:
        eventually(lambda: sink.paused.is_set() and relay.failures >= 1, what="a failure with the broker paused")
        relay.stop(timeout=30)
        assert not relay.running, "the relay hangs on a broker it cannot reach"
    finally:
        sink.resume()
        relay.stop()

    again_sink = ListSink()
    again = SinkRelay(broker, topics, again_sink, tansu=True).start()   # the same group
    try:
        eventually(lambda: relay.relayed + again.relayed >= len(records), timeout=60,
                   what="every record relayed by one of the two")
    finally:
        again.stop()
    assert relay.relayed + again.relayed == len(records)
    assert by_id(sink.flushed + again_sink.flushed) == by_id(records)
    assert sum(committed(broker, again.group, topics).values()) == len(records)


# -- (g) a record the database refuses -------------------------------------------------------------

def test_records_the_database_refuses_become_dead_letters_and_the_relay_goes_on(
    bootstrap: str, kafka_topics: Callable[..., Topics], postgres_url: str
) -> None:
    """PostgreSQL takes no NUL in text (the decoder accepts "L\\u0000") and no score beyond INTEGER.
    Such a record would fail every flush of its batch, and so every later record, for ever."""
    topics = kafka_topics(partitions=1)                # one partition: the refused sit between good ones
    before, after = journey("P1"), journey("P2")
    nul = make_transition("L\x00", None, "new", transition_id="tr-nul")
    huge = make_transition("P3", None, "new", score=2**40, transition_id="tr-huge")
    records = [*before, nul, huge, *after]
    assert b'"lead_id":"L\\u0000"' in record_json(nul)
    publish(bootstrap, topics, records)
    settings = load_settings({"LEADFLOW_SQL_URL": postgres_url, "LEADFLOW_APP_ID": topics.app_id})
    relay = relay_for(settings, bootstrap, topics, lookup=bundled_schemas(), tansu=True)
    assert relay is not None
    relay.start()
    try:
        eventually(lambda: relay.relayed >= len(records), timeout=60, what="every record relayed")
        assert relay.relayed == len(records) and relay.refused == 2 and relay.undecodable == 0
        assert relay.running
    finally:
        relay.stop()

    transitions, alerts, dlq = stored(postgres_url)
    refused = [d for d in dlq if d.error == SINK_REFUSED]
    assert by_id([*transitions, *alerts, *(d for d in dlq if d.error != SINK_REFUSED)]) == \
        by_id(r for r in records if r not in (nul, huge))
    assert sorted(d.original for d in refused) == sorted([record_json(nul), record_json(huge)])
    assert all(d.source_topic == topics.lifecycle and d.source_partition == 0 for d in refused)
    assert sorted(d.key for d in refused) == sorted([b"L\x00", b"P3"])
    assert all("\x00" not in d.detail for d in refused)
    assert sum(committed(bootstrap, group_id(topics), topics).values()) == len(records)


def test_a_database_that_takes_no_writes_is_retried_and_nothing_is_skipped(
    bootstrap: str, kafka_topics: Callable[..., Topics], postgres_url: str
) -> None:
    """While every table is locked, each write fails (lock_timeout): PostgreSQL's LockNotAvailable
    is the store's fault (StoreUnavailable), so the relay retries, dead-letters nothing, commits
    nothing, and stores everything once the lock is gone."""
    import psycopg

    topics = kafka_topics()
    url = f"{postgres_url}%20-clock_timeout%3D200"      # a locked table fails a write in 0.2 s
    settings = load_settings({"LEADFLOW_SQL_URL": url, "LEADFLOW_APP_ID": topics.app_id})
    relay = relay_for(settings, bootstrap, topics, lookup=bundled_schemas(), tansu=True)  # migrates
    assert relay is not None
    records = journey("D1") + journey("D2")
    try:
        with psycopg.connect(postgres_url) as locker:
            locker.execute("LOCK TABLE lead_transitions, lead_alerts, leads, dlq_records IN ACCESS EXCLUSIVE MODE")
            publish(bootstrap, topics, records)
            relay.start()
            eventually(lambda: relay.failures >= 3, timeout=60, what="the batch retried, and failing")
            assert relay.refused == 0 and relay.relayed == 0
            assert committed(bootstrap, relay.group, topics) == {}
            locker.rollback()                              # the store takes writes again
        eventually(lambda: relay.relayed >= len(records), timeout=60, what="every record relayed")
        assert relay.refused == 0
    finally:
        relay.stop()
    transitions, alerts, dlq = stored(postgres_url)
    assert by_id([*transitions, *alerts, *dlq]) == by_id(records)


# -- (h) leadflow worker with LEADFLOW_SQL_URL -----------------------------------------------------

def test_worker_with_an_sql_url_writes_its_outputs_to_the_database(
    deployment: Callable[..., Any], bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "worker.db"
    monkeypatch.setenv("LEADFLOW_SQL_URL", f"sqlite:///{db}")
    topics, policy, make_worker = deployment(QUICK_POLICY)
    worker = make_worker("w1")
    worker.wait_ready()
    assert f"sinks: SQL sqlite:///{db} (consumer group {topics.app_id}.sinks" in worker.tail(1_000_000)
    feed = Feed(bootstrap, topics)
    feed.send("A", "form_fill", form_type="demo_request", form_id="f1")     # handoff_broken at +2 s
    feed.send("B", "form_fill", form_type="pricing", form_id="f2")
    feed.send("B", "lead_assigned", owner_id="rep-1", team="na")
    feed.send("B", "sales_touch", rep_id="rep-1", channel="call", outcome="connected")
    feed.raw(topics.form_fills, b"{broken", key=b"Z")
    feed.close()
    expected_t, expected_a, stages, _ = replay(policy, feed.events)

    def rows() -> tuple[set[str], set[str], dict[str, str], list[str]] | None:
        if not db.exists():
            return None
        with sqlite3.connect(db) as conn:
            t = {r for (r,) in conn.execute("SELECT transition_id FROM lead_transitions")}
            a = {r for (r,) in conn.execute("SELECT alert_id FROM lead_alerts")}
            s = dict(conn.execute("SELECT lead_id, stage FROM leads"))
            d = [r for (r,) in conn.execute("SELECT error FROM dlq_records")]
        return (t, a, s, d) if expected_t <= t and expected_a <= a and d else None

    transitions, alerts, leads, dlq = eventually(rows, timeout=40, what="worker outputs in the database")
    assert transitions == expected_t and alerts == expected_a
    assert leads == stages and dlq == ["invalid_json"]
    worker.stop()
    assert worker.proc is not None and worker.proc.returncode == 0, worker.tail()
    assert "Traceback" not in worker.tail(1_000_000)
