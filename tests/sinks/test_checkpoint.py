"""``sinks.checkpoint.Checkpoint``: flush, then commit — with real stores that refuse a record
(SQLite and an integer beyond 64 bits), that are unavailable (a full tmpfs), and a real webhook."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from lifecycle.records import DlqRecord
from schemas.wire import record_json
from sinks.base import SINK_REFUSED, ListSink, Position, StoreUnavailable
from sinks.checkpoint import Checkpoint, Offsets
from sinks.sql import SqlSink
from sinks.webhook import RetryPolicy, WebhookSink
from tests.sinks.conftest import Reply, Tmpfs, WebhookReceiver
from tests.sinks.sample_records import alerts, make_alert, make_transition

FAST = (0.05, 0.2)


def at(offset: int, partition: int = 0) -> Position:
    return Position("lead.lifecycle", partition, offset)


class Commits:
    """The ``commit`` callback: every offsets mapping it was given."""

    def __init__(self) -> None:
        self.calls: list[dict[tuple[str, int | None], int]] = []

    def __call__(self, offsets: Offsets) -> None:
        self.calls.append(dict(offsets))


def test_a_refused_record_becomes_a_sink_refused_dead_letter_and_the_rest_is_committed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    commits, dead = Commits(), ListSink()
    good, huge = [make_transition(f"L{i}") for i in range(3)], make_transition("H", score=2**70)
    checkpoint = Checkpoint(SqlSink(url), commit=commits, dead_letters=dead, backoff=FAST)
    for offset, record in enumerate([good[0], huge, good[1]]):
        assert checkpoint.add(record, at(offset))
    assert checkpoint.add(good[2], at(0, partition=1))
    assert checkpoint.commit()
    checkpoint.close()

    assert commits.calls == [{("lead.lifecycle", 0): 3, ("lead.lifecycle", 1): 1}]
    (letter,) = dead.records
    assert isinstance(letter, DlqRecord) and letter.error == SINK_REFUSED
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == ("lead.lifecycle", 0, 1)
    assert json.loads(letter.original)["score"] == 2**70 and letter.key == b"H" and "OverflowError" in letter.detail
    assert checkpoint.dead_lettered == {SINK_REFUSED: 1} and checkpoint.failures == 0
    with SqlSink(url) as db:
        assert sorted(t.lead_id for t in db.transitions()) == ["L0", "L1", "L2"]
        assert db.dlq_records() == [letter]          # the SQL sink keeps its dead letter too


def test_an_unavailable_store_is_retried_never_committed_past_and_never_dead_lettered(tmpfs: Tmpfs) -> None:
    url = f"sqlite:///{tmpfs.path / 'db.sqlite'}"
    commits, dead = Commits(), ListSink()
    checkpoint = Checkpoint(SqlSink(url), commit=commits, dead_letters=dead, backoff=FAST)
    records = [make_transition(f"L{i}") for i in range(5)]
    for offset, record in enumerate(records):
        checkpoint.add(record, at(offset))
    tmpfs.fill()
    calls_while_full: list[int] = []

    def back_later() -> None:
        time.sleep(1.0)
        calls_while_full.append(len(commits.calls))
        tmpfs.free()

    thread = threading.Thread(target=back_later)
    thread.start()
    assert checkpoint.commit()
    thread.join()
    checkpoint.close()
    assert calls_while_full == [0] and checkpoint.failures >= 2
    assert commits.calls == [{("lead.lifecycle", 0): 5}]
    assert dead.records == [] and not checkpoint.dead_lettered
    with SqlSink(url) as db:
        assert db.count("lead_transitions") == 5


def test_stop_ends_the_retries_without_committing(tmpfs: Tmpfs) -> None:
    commits, stop = Commits(), threading.Event()
    checkpoint = Checkpoint(SqlSink(f"sqlite:///{tmpfs.path / 'db.sqlite'}"), commit=commits, stop=stop, backoff=FAST)
    checkpoint.add(make_transition(), at(0))
    tmpfs.fill()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    assert checkpoint.commit() is False
    assert time.monotonic() - started < 2 and commits.calls == []
    tmpfs.free()
    checkpoint.close()


def test_give_up_after_raises_store_unavailable_in_bounded_time(tmpfs: Tmpfs) -> None:
    checkpoint = Checkpoint(SqlSink(f"sqlite:///{tmpfs.path / 'db.sqlite'}"), give_up_after=0.5, backoff=FAST)
    checkpoint.add(make_transition(), at(0))
    tmpfs.fill()
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="giving up"):
        checkpoint.commit()
    assert 0.5 <= time.monotonic() - started < 1.5
    tmpfs.free()
    checkpoint.close()


def test_a_full_sink_gets_a_commit_then_the_same_record_again(
    webhook_receiver: WebhookReceiver, webhook_secret: str
) -> None:
    webhook_receiver.script = lambda n, h, b: Reply(200, delay=0.02)
    commits = Commits()
    sink = WebhookSink(webhook_receiver.url, max_queue=2, workers=1, retry=RetryPolicy(timeout=5))
    checkpoint = Checkpoint(sink, commit=commits, backoff=FAST)
    sent = alerts(10)
    for offset, alert in enumerate(sent):
        assert checkpoint.add(alert, Position("lead.alerts", 0, offset))
    assert checkpoint.commit()
    checkpoint.close()
    assert len(commits.calls) >= 3                      # committed part-way whenever the queue was full
    assert commits.calls[-1] == {("lead.alerts", 0): 10}
    offsets = [call[("lead.alerts", 0)] for call in commits.calls]
    assert offsets == sorted(offsets)
    assert sorted(r.headers["Idempotency-Key"] for r in webhook_receiver.delivered()) == \
        sorted(a.alert_id for a in sent)


def test_close_dead_letters_what_the_webhook_still_holds(raw_server: Any, webhook_secret: str) -> None:
    """The webhook raises its undelivered alerts from ``close``; the checkpoint dead-letters them."""
    server = raw_server("silent")
    dead: list[DlqRecord] = []
    sink = WebhookSink(server.url, retry=RetryPolicy(timeout=30), workers=2)
    checkpoint = Checkpoint(sink, dead_letters=dead.append, backoff=FAST, origin="end of input")
    sent = alerts(4)
    checkpoint.add(sent[0], Position("events.jsonl", None, 7))
    for alert in sent[1:]:
        checkpoint.add(alert)
    started = time.monotonic()
    checkpoint.close(abort=True)
    assert time.monotonic() - started < 2
    assert sorted(d.original for d in dead) == sorted(record_json(a) for a in sent)
    assert {d.error for d in dead} == {"webhook_failed"}
    assert {(d.source_topic, d.source_offset) for d in dead} == {("events.jsonl", 7), ("end of input", None)}
    assert checkpoint.dead_lettered == {"webhook_failed": 4}


def test_a_dead_letter_refused_in_turn_is_counted_not_retried_for_ever(
    tmp_path: Path, bootstrap: str, unique_name: Any
) -> None:
    """SQLite refuses the record; the DLQ topic's producer (1 KiB requests) refuses its dead letter."""
    from sinks.kafka import KafkaSink
    from streams.topics import ensure_topics

    topic = unique_name("dlq")
    ensure_topics(bootstrap, [topic], partitions=1)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    dead_letters = KafkaSink(bootstrap, {DlqRecord: topic}, max_request_size=1024)
    checkpoint = Checkpoint(SqlSink(url), dead_letters=dead_letters, backoff=FAST)
    checkpoint.add(make_alert("R", level=2**70, owner_id="o" * 5000), at(0))
    checkpoint.add(make_alert("ok"), at(1))
    started = time.monotonic()
    assert checkpoint.commit()
    checkpoint.close()
    assert time.monotonic() - started < 5
    assert checkpoint.dead_lettered == {SINK_REFUSED: 1} and checkpoint.unstorable == 1
    with SqlSink(url) as db:
        assert [a.lead_id for a in db.alerts()] == ["ok"] and len(db.dlq_records()) == 1
