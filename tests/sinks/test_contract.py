"""ONE contract, run against every adapter: what any ``Sink`` promises its caller.

Each adapter class provides ``sink`` (a fresh sink) and ``read_back()``: the records as the downstream
consumer sees them (wire dicts, in any order), plus ``stores_each_id_once``: whether the store itself
never holds a repeat (SQL tables do; a topic or a list keeps repeats, consumers drop them by id).

Adapters with a real store also keep ``FailureContract``: how they map their driver's errors, shown
with REAL failures — ``refused``, a record the store refuses for what it is, and ``outage``, which
makes the store unavailable and brings it back (a full file system, a locked table, a stopped
receiver, a paused broker).
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lifecycle.records import AlertRecord
from schemas.wire import wire_dict
from sinks.base import (
    SINK_REFUSED,
    FanOut,
    ListSink,
    Position,
    RecordRejected,
    Sink,
    SinkClosed,
    SinkFull,
    StoreUnavailable,
)
from sinks.sql import SqlSink
from sinks.webhook import RetryPolicy, WebhookSink
from tests.sinks.conftest import Reply, Tmpfs, WebhookReceiver
from tests.sinks.sample_records import T0, alerts, make_alert


def _ids(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(r["alert_id"] for r in rows)


def at(offset: int) -> Position:
    return Position("lead.alerts", 0, offset)


def stored_alerts(url: str) -> list[dict[str, Any]]:
    with SqlSink(url) as reader:
        return [wire_dict(a) for a in reader.alerts()]


class SinkContract:
    stores_each_id_once = False

    @pytest.fixture
    def sink(self) -> Iterator[Sink]:
        raise NotImplementedError

    @pytest.fixture
    def read_back(self) -> Callable[[], list[dict[str, Any]]]:
        raise NotImplementedError

    def test_flush_delivers_every_added_record_unchanged(self, sink: Sink, read_back: Callable) -> None:
        records = alerts(5)
        for offset, r in enumerate(records):
            sink.add(r, at(offset))
        sink.flush()
        got = sorted(read_back(), key=lambda d: d["alert_id"])
        assert got == sorted((wire_dict(r) for r in records), key=lambda d: d["alert_id"])

    def test_flush_with_nothing_added_is_a_no_op(self, sink: Sink, read_back: Callable) -> None:
        sink.flush()
        sink.flush()
        assert read_back() == []

    def test_close_flushes_what_is_pending(self, sink: Sink, read_back: Callable) -> None:
        records = alerts(3)
        for r in records:
            sink.add(r)
        sink.close()
        assert _ids(read_back()) == sorted(r.alert_id for r in records)

    def test_add_after_close_raises_sink_closed(self, sink: Sink) -> None:
        sink.close()
        sink.close()  # idempotent
        with pytest.raises(SinkClosed):
            sink.add(alerts(1)[0])

    def test_re_adding_a_record_is_safe(self, sink: Sink, read_back: Callable) -> None:
        records = alerts(4)
        for r in records + records[:2]:
            sink.add(r)
        sink.flush()
        sink.add(records[0])  # again, after a flush: the at-least-once replay case
        sink.flush()
        rows = read_back()
        assert sorted(set(_ids(rows))) == sorted(r.alert_id for r in records)
        if self.stores_each_id_once:
            assert len(rows) == len(records)

    def test_is_a_context_manager_that_closes(self, sink: Sink, read_back: Callable) -> None:
        record: AlertRecord = alerts(1)[0]
        with sink as s:
            s.add(record)
        assert _ids(read_back()) == [record.alert_id]
        with pytest.raises(SinkClosed):
            sink.add(record)


@dataclass
class Outage:
    """Makes a store unavailable for real (``begin``) and brings it back (``end``)."""

    begin: Callable[[], None]
    end: Callable[[], None]


class FailureContract(SinkContract):
    #: the DLQ code the adapter gives what it refuses
    refusal_code = SINK_REFUSED

    @pytest.fixture
    def refused(self) -> AlertRecord:
        """An alert this store refuses for what it is."""
        raise NotImplementedError

    @pytest.fixture
    def outage(self) -> Outage:
        raise NotImplementedError

    def test_a_refused_record_is_rejected_with_its_position_and_the_rest_is_stored(
        self, sink: Sink, read_back: Callable, refused: AlertRecord
    ) -> None:
        good = alerts(3)
        for offset, record in enumerate([good[0], refused, good[1], good[2]], start=10):
            sink.add(record, at(offset))
        with pytest.raises(RecordRejected) as raised:
            sink.flush()
        (rejection,) = raised.value.rejections
        assert rejection.record == refused and rejection.position == at(11)
        assert rejection.code == self.refusal_code and rejection.reason
        assert _ids(read_back()) == sorted(r.alert_id for r in good)
        sink.flush()   # said once: the refused record is no longer held
        assert _ids(read_back()) == sorted(r.alert_id for r in good)

    def test_an_unavailable_store_keeps_every_record_until_it_is_back(
        self, sink: Sink, read_back: Callable, outage: Outage
    ) -> None:
        before, during = alerts(2, "B"), alerts(3, "D")
        for offset, record in enumerate(before):
            sink.add(record, at(offset))
        sink.flush()
        waiting = list(enumerate(during, start=2))
        outage.begin()
        try:
            while waiting:
                offset, record = waiting[0]
                try:
                    sink.add(record, at(offset))
                except SinkFull:      # back-pressure is allowed while the store is away
                    break
                waiting.pop(0)
            with pytest.raises(StoreUnavailable):
                sink.flush()
        finally:
            outage.end()
        sink.flush()                  # the records it kept
        for offset, record in waiting:
            sink.add(record, at(offset))
        sink.flush()
        assert sorted(set(_ids(read_back()))) == sorted(r.alert_id for r in before + during)


# -- in memory ------------------------------------------------------------------------------------

class TestListSink(SinkContract):
    @pytest.fixture
    def sink(self) -> ListSink:
        return ListSink()

    @pytest.fixture
    def read_back(self, sink: ListSink) -> Callable[[], list[dict[str, Any]]]:
        return lambda: [wire_dict(r) for r in sink.flushed]

    def test_keeps_the_position_of_each_record(self, sink: ListSink) -> None:
        records = alerts(2)
        sink.add(records[0], at(7))
        sink.add(records[1])
        assert sink.positions == [at(7), None]


class TestFanOut(SinkContract):
    @pytest.fixture
    def targets(self) -> tuple[ListSink, ListSink]:
        return ListSink(), ListSink()

    @pytest.fixture
    def sink(self, targets: tuple[ListSink, ListSink]) -> FanOut:
        return FanOut(*targets)

    @pytest.fixture
    def read_back(self, targets: tuple[ListSink, ListSink]) -> Callable[[], list[dict[str, Any]]]:
        def read() -> list[dict[str, Any]]:
            a, b = ([wire_dict(r) for r in t.flushed] for t in targets)
            assert a == b  # every sink got the same records
            return a
        return read

    def test_every_sink_gets_the_position(self, sink: FanOut, targets: tuple[ListSink, ListSink]) -> None:
        sink.add(alerts(1)[0], at(3))
        assert [t.positions for t in targets] == [[at(3)], [at(3)]]


# -- SQL ------------------------------------------------------------------------------------------

class _SqlContract(FailureContract):
    stores_each_id_once = True

    @pytest.fixture
    def sink(self, sql_url: str) -> Iterator[SqlSink]:
        sink = SqlSink(sql_url, batch_size=2)  # small: auto-flush happens inside the tests too
        yield sink
        sink.close()

    @pytest.fixture
    def read_back(self, sql_url: str) -> Callable[[], list[dict[str, Any]]]:
        return lambda: stored_alerts(sql_url)


class TestSqlSinkSqlite(_SqlContract):
    """On a 1 MiB tmpfs, so the outage is a real full disk."""

    @pytest.fixture
    def sql_url(self, tmpfs: Tmpfs) -> str:
        return f"sqlite:///{tmpfs.path / 'leadflow.db'}"

    @pytest.fixture
    def refused(self) -> AlertRecord:
        return make_alert("R", level=2**70)          # no 64-bit integer holds it

    @pytest.fixture
    def outage(self, tmpfs: Tmpfs) -> Outage:
        return Outage(tmpfs.fill, tmpfs.free)

    def test_a_read_only_database_is_unavailable(self, tmpfs: Tmpfs, sql_url: str) -> None:
        SqlSink(sql_url).close()                     # created and migrated
        tmpfs.remount("ro")
        try:
            with pytest.raises(StoreUnavailable, match="unable to open"):
                SqlSink(sql_url)
        finally:
            tmpfs.remount("rw")
        with SqlSink(sql_url) as sink:
            sink.add(alerts(1)[0])


class TestSqlSinkPostgres(_SqlContract):
    """A table locked by another session is the outage (``lock_timeout`` 200 ms)."""

    @pytest.fixture
    def sql_url(self, postgres_url: str) -> str:
        return f"{postgres_url}%20-clock_timeout%3D200"

    @pytest.fixture
    def refused(self) -> AlertRecord:
        return make_alert("R", owner_id="rep\x00-1")   # PostgreSQL text takes no NUL

    @pytest.fixture
    def outage(self, postgres_url: str, sink: SqlSink) -> Iterator[Outage]:
        import psycopg

        locker = psycopg.connect(postgres_url)

        def begin() -> None:
            locker.execute("LOCK TABLE lead_alerts IN ACCESS EXCLUSIVE MODE")

        yield Outage(begin, locker.rollback)
        locker.close()

    def test_an_integer_out_of_range_is_rejected(self, sink: SqlSink, read_back: Callable) -> None:
        good, huge = alerts(1)[0], make_alert("H", level=2**40)
        sink.add(good, at(1))
        sink.add(huge, at(2))
        with pytest.raises(RecordRejected, match="out of range") as raised:
            sink.flush()
        assert [r.position for r in raised.value.rejections] == [at(2)]
        assert _ids(read_back()) == [good.alert_id]

    def test_a_stopped_connection_is_unavailable_and_the_next_flush_reconnects(
        self, sink: SqlSink, read_back: Callable, postgres_url: str
    ) -> None:
        import psycopg

        first, second = alerts(2)
        sink.add(first)
        sink.flush()
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (sink._conn.info.backend_pid,))
        sink.add(second)
        with pytest.raises(StoreUnavailable):
            sink.flush()
        sink.flush()
        assert _ids(read_back()) == sorted([first.alert_id, second.alert_id])

    def test_a_server_that_cannot_be_reached_is_unavailable(self) -> None:
        from tests.sinks.sample_records import PG_BASE

        with pytest.raises(StoreUnavailable, match="cannot connect"):
            SqlSink(PG_BASE.replace(":5432/", ":1/"))


class TestFanOutOfSqlAndList(FailureContract):
    """A FanOut says what its sinks say: here SQLite on a small tmpfs next to a list."""

    stores_each_id_once = True

    @pytest.fixture
    def sql_url(self, tmpfs: Tmpfs) -> str:
        return f"sqlite:///{tmpfs.path / 'leadflow.db'}"

    @pytest.fixture
    def listed(self) -> ListSink:
        return ListSink()

    @pytest.fixture
    def sink(self, sql_url: str, listed: ListSink) -> Iterator[FanOut]:
        sink = FanOut(SqlSink(sql_url), listed)
        yield sink
        sink.close()

    @pytest.fixture
    def read_back(self, sql_url: str) -> Callable[[], list[dict[str, Any]]]:
        return lambda: stored_alerts(sql_url)

    @pytest.fixture
    def refused(self) -> AlertRecord:
        return make_alert("R", level=2**70)

    @pytest.fixture
    def outage(self, tmpfs: Tmpfs) -> Outage:
        return Outage(tmpfs.fill, tmpfs.free)

    def test_a_rejection_seen_while_another_sink_is_unavailable_is_raised_once_it_is_back(
        self, tmpfs: Tmpfs, tmp_path: Path
    ) -> None:
        full_url, other_url = f"sqlite:///{tmpfs.path / 'full.db'}", f"sqlite:///{tmp_path / 'other.db'}"
        refused, good = make_alert("R", level=2**70), alerts(1)[0]
        sink = FanOut(SqlSink(full_url), SqlSink(other_url))
        try:
            tmpfs.fill()
            sink.add(good, at(1))
            sink.add(refused, at(2))
            with pytest.raises(StoreUnavailable):
                sink.flush()
            tmpfs.free()
            with pytest.raises(RecordRejected) as raised:
                sink.flush()
            assert [(r.record, r.position) for r in raised.value.rejections] == [(refused, at(2))] * 2
            sink.flush()
        finally:
            sink.close()
        for url in (full_url, other_url):
            with SqlSink(url) as db:
                assert [a.alert_id for a in db.alerts()] == [good.alert_id]


# -- webhook --------------------------------------------------------------------------------------

class TestWebhookSink(FailureContract):
    """A receiver answering 400 refuses; a receiver that stopped listening is unavailable."""

    refusal_code = "webhook_failed"

    @pytest.fixture
    def sink(self, webhook_receiver: WebhookReceiver, webhook_secret: str) -> Iterator[WebhookSink]:
        sink = WebhookSink(webhook_receiver.url, retry=RetryPolicy(max_retries=2, base_delay=0.01, timeout=2))
        yield sink
        sink.close()

    @pytest.fixture
    def read_back(self, webhook_receiver: WebhookReceiver) -> Callable[[], list[dict[str, Any]]]:
        return webhook_receiver.delivered_json

    @pytest.fixture
    def refused(self, webhook_receiver: WebhookReceiver) -> AlertRecord:
        alert = make_alert("R", started_at=T0 - 1)
        webhook_receiver.script = lambda n, headers, body: Reply(
            400 if headers.get("Idempotency-Key") == alert.alert_id else 200)
        return alert

    @pytest.fixture
    def outage(self, webhook_receiver: WebhookReceiver) -> Outage:
        return Outage(webhook_receiver.stop, webhook_receiver.start)   # refused, then back on its port


# -- Kafka ----------------------------------------------------------------------------------------

class TestKafkaSink(FailureContract):
    """Each test on a broker of its own, so the outage can pause it (SIGSTOP: unreachable, state kept)."""

    @pytest.fixture
    def broker(self, private_broker: Any) -> Any:
        return private_broker

    @pytest.fixture
    def topic(self, broker: Any) -> str:
        from streams.topics import ensure_topics

        ensure_topics(broker.bootstrap, ["alerts"], partitions=2)
        return "alerts"

    @pytest.fixture
    def sink(self, broker: Any, topic: str) -> Iterator[Sink]:
        from sinks.kafka import KafkaSink

        sink = KafkaSink(broker.bootstrap, {AlertRecord: topic}, request_timeout_ms=500,
                         delivery_timeout_ms=1500, retry_backoff_ms=100)
        yield sink
        sink.close()

    @pytest.fixture
    def read_back(self, broker: Any, topic: str) -> Callable[[], list[dict[str, Any]]]:
        from tests.kafka_helpers import consume_all

        def read() -> list[dict[str, Any]]:
            return [json.loads(r.value) for r in consume_all(broker.bootstrap, topic, idle=1.0, timeout=20)]
        return read

    @pytest.fixture
    def refused(self) -> AlertRecord:
        return make_alert("R", owner_id="x" * 2_000_000)   # beyond the producer's max_request_size (1 MiB)

    @pytest.fixture
    def outage(self, broker: Any) -> Outage:
        from leadflow.broker import signal_group

        return Outage(lambda: signal_group(broker.pid, signal.SIGSTOP),
                      lambda: signal_group(broker.pid, signal.SIGCONT))

    def test_a_broker_that_cannot_be_reached_is_unavailable(self) -> None:
        from leadflow.broker import free_port
        from sinks.kafka import KafkaSink

        with pytest.raises(StoreUnavailable, match="cannot connect"):
            KafkaSink(f"127.0.0.1:{free_port()}", bootstrap_timeout_ms=500)

