"""ONE contract, run against every adapter: what any ``Sink`` promises its caller.

Each adapter class provides ``sink`` (a fresh sink) and ``read_back()``: the records as the downstream
consumer sees them (wire dicts, in any order), plus ``stores_each_id_once``: whether the store itself
never holds a repeat (SQL tables do; a topic or a list keeps repeats, consumers drop them by id).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lifecycle.records import AlertRecord
from schemas.wire import wire_dict
from sinks.base import FanOut, ListSink, Sink, SinkClosed
from sinks.sql import SqlSink
from sinks.webhook import RetryPolicy, WebhookSink
from tests.sinks.sample_records import alerts


def _ids(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(r["alert_id"] for r in rows)


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
        for r in records:
            sink.add(r)
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


class TestListSink(SinkContract):
    @pytest.fixture
    def sink(self) -> ListSink:
        return ListSink()

    @pytest.fixture
    def read_back(self, sink: ListSink) -> Callable[[], list[dict[str, Any]]]:
        return lambda: [wire_dict(r) for r in sink.flushed]


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


class _SqlContract(SinkContract):
    stores_each_id_once = True
    url: str

    @pytest.fixture
    def sink(self, sql_url: str) -> Iterator[SqlSink]:
        sink = SqlSink(sql_url, batch_size=2)  # small: auto-flush happens inside the tests too
        yield sink
        sink.close()

    @pytest.fixture
    def read_back(self, sql_url: str) -> Callable[[], list[dict[str, Any]]]:
        def read() -> list[dict[str, Any]]:
            reader = SqlSink(sql_url)
            try:
                return [wire_dict(a) for a in reader.alerts()]
            finally:
                reader.close()
        return read


class TestSqlSinkSqlite(_SqlContract):
    @pytest.fixture
    def sql_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'leadflow.db'}"


class TestSqlSinkPostgres(_SqlContract):
    @pytest.fixture
    def sql_url(self, postgres_url: str) -> str:
        return postgres_url


class TestWebhookSink(SinkContract):
    @pytest.fixture
    def sink(self, webhook_receiver: Any, webhook_secret: str) -> Iterator[WebhookSink]:
        sink = WebhookSink(webhook_receiver.url, retry=RetryPolicy(max_retries=2, base_delay=0.01, timeout=2))
        yield sink
        sink.close()

    @pytest.fixture
    def read_back(self, webhook_receiver: Any) -> Callable[[], list[dict[str, Any]]]:
        return webhook_receiver.delivered_json


class TestKafkaSink(SinkContract):
    @pytest.fixture
    def topic(self, bootstrap: str, unique_name: Callable[..., str]) -> str:
        from streams.topics import ensure_topics

        name = unique_name("alerts")
        ensure_topics(bootstrap, [name], partitions=2)
        return name

    @pytest.fixture
    def sink(self, bootstrap: str, topic: str) -> Iterator[Sink]:
        from sinks.kafka import KafkaSink

        sink = KafkaSink(bootstrap, {AlertRecord: topic})
        yield sink
        sink.close()

    @pytest.fixture
    def read_back(self, bootstrap: str, topic: str) -> Callable[[], list[dict[str, Any]]]:
        from tests.kafka_helpers import consume_all

        return lambda: [json.loads(r.value) for r in consume_all(bootstrap, topic, idle=1.0, timeout=10)]
