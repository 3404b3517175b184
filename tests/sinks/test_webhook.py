"""WebhookSink against a real local HTTP server: signature, retries with backoff, Retry-After (seconds
and HTTP date), the total deadline per request (against a raw-socket server that trickles or never
answers), an unavailable endpoint, giving up, dead letters at close and abort, back-pressure, and a
secret that never leaks."""

from __future__ import annotations

import dataclasses
import email.utils
import json
import hashlib
import hmac
import logging
import time
from typing import Any

import pytest

from lifecycle.errors import ConfigError
from lifecycle.records import DlqRecord
from schemas.wire import record_json
from sinks.base import ListSink, Position, RecordRejected, SinkFull, StoreUnavailable
from sinks.webhook import RetryPolicy, WebhookSink, parse_retry_after, verify
from tests.sinks.conftest import RawServer, Reply, WebhookReceiver
from tests.sinks.sample_records import alerts, fair_clock_alerts, make_alert, make_transition

FAST = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.05, timeout=2)


def sink_for(receiver: WebhookReceiver, **kwargs: Any) -> WebhookSink:
    kwargs.setdefault("retry", FAST)
    return WebhookSink(receiver.url, **kwargs)


def test_each_alert_is_posted_signed_with_its_idempotency_key(webhook_receiver: WebhookReceiver,
                                                               webhook_secret: str) -> None:
    alert = make_alert(reason="unassigned", type_="handoff_broken", sla="assignment", owner_id=None)
    with sink_for(webhook_receiver) as sink:
        sink.add(alert)
    (request,) = webhook_receiver.requests
    assert request.path == "/hooks/alerts"
    assert request.body == record_json(alert)
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Idempotency-Key"] == alert.alert_id
    expected = "sha256=" + hmac.new(webhook_secret.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Leadflow-Signature"] == expected
    assert verify(webhook_secret.encode(), request.body, request.headers["X-Leadflow-Signature"])
    assert not verify(b"another secret", request.body, request.headers["X-Leadflow-Signature"])


def test_retries_503_then_delivers_the_same_body(webhook_receiver: WebhookReceiver, webhook_secret: str) -> None:
    webhook_receiver.script = lambda n, h, b: Reply(503 if n < 2 else 200)
    dead = ListSink()
    with sink_for(webhook_receiver, dead_letters=dead) as sink:
        sink.add(alerts(1)[0])
    assert [r.status for r in webhook_receiver.requests] == [503, 503, 200]
    assert len({r.body for r in webhook_receiver.requests}) == 1
    assert len({r.headers["X-Leadflow-Signature"] for r in webhook_receiver.requests}) == 1
    assert dead.records == []


def test_429_retry_after_seconds_is_honoured(webhook_receiver: WebhookReceiver, webhook_secret: str) -> None:
    webhook_receiver.script = lambda n, h, b: Reply(429, {"Retry-After": "1"}) if n == 0 else Reply(200)
    with sink_for(webhook_receiver) as sink:
        sink.add(alerts(1)[0])
    first, second = webhook_receiver.requests
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 0.95  # the jittered backoff alone would be <= 0.05 s


def test_503_retry_after_http_date_is_honoured(webhook_receiver: WebhookReceiver, webhook_secret: str) -> None:
    def script(n: int, h: dict, b: bytes) -> Reply:
        if n == 0:
            return Reply(503, {"Retry-After": email.utils.formatdate(time.time() + 2, usegmt=True)})
        return Reply(200)

    webhook_receiver.script = script
    with sink_for(webhook_receiver) as sink:
        sink.add(alerts(1)[0])
    first, second = webhook_receiver.requests
    assert second.status == 200
    assert second.at - first.at >= 0.95  # HTTP dates have 1 s resolution: now+2 s is >= 1 s away


def test_timeouts_are_retried_then_the_endpoint_is_unavailable_and_close_dead_letters_the_alert(
    webhook_receiver: WebhookReceiver, webhook_secret: str
) -> None:
    webhook_receiver.script = lambda n, h, b: Reply(200, delay=1.0)
    dead = ListSink()
    alert = alerts(1)[0]
    policy = RetryPolicy(max_retries=1, base_delay=0.01, timeout=0.2)
    started = time.monotonic()
    sink = sink_for(webhook_receiver, retry=policy, dead_letters=dead)
    sink.add(alert, Position("lead.alerts", 3, 41))
    with pytest.raises(StoreUnavailable, match="timeout.*after 2 attempts"):
        sink.flush()
    assert dead.records == []            # unavailable: kept, never dead-lettered by a flush
    sink.close(timeout=0)
    assert time.monotonic() - started < 3
    (record,) = dead.records
    assert isinstance(record, DlqRecord)
    assert record.error == "webhook_failed"
    assert "not delivered before the sink closed" in record.detail and "timeout" in record.detail
    assert record.original == record_json(alert)
    assert record.key == alert.lead_id.encode()
    assert (record.source_topic, record.source_partition, record.source_offset) == ("lead.alerts", 3, 41)


def test_server_errors_exhaust_the_attempts_and_the_next_flush_tries_again(
    webhook_receiver: WebhookReceiver, webhook_secret: str
) -> None:
    answer = {"status": 500}
    webhook_receiver.script = lambda n, h, b: Reply(answer["status"])
    with sink_for(webhook_receiver) as sink:
        sink.add_all(alerts(2))
        with pytest.raises(StoreUnavailable, match="HTTP 500 after 4 attempts"):
            sink.flush()
        answer["status"] = 200
        sink.flush()
    assert len(webhook_receiver.delivered()) == 2


def test_an_unavailable_endpoint_is_not_hammered_alert_after_alert(
    webhook_receiver: WebhookReceiver, webhook_secret: str
) -> None:
    """Once an alert used its attempts, the workers stop taking alerts until the next flush."""
    webhook_receiver.script = lambda n, h, b: Reply(503)
    sink = sink_for(webhook_receiver, workers=2, dead_letters=ListSink())
    sink.add_all(alerts(30))
    with pytest.raises(StoreUnavailable, match="30 alerts kept"):
        sink.flush()
    assert len(webhook_receiver.requests) <= 2 * (FAST.max_retries + 1)   # not 30 * 4
    sink.close(timeout=0)


def test_client_errors_are_not_retried_and_are_rejected_with_their_position(
    webhook_receiver: WebhookReceiver, webhook_secret: str
) -> None:
    webhook_receiver.script = lambda n, h, b: Reply(400)
    alert = alerts(1)[0]
    with sink_for(webhook_receiver) as sink:
        sink.add(alert, Position("lead.alerts", 0, 9))
        with pytest.raises(RecordRejected) as raised:
            sink.flush()
    assert len(webhook_receiver.requests) == 1
    (rejection,) = raised.value.rejections
    assert rejection.record == alert and rejection.position == Position("lead.alerts", 0, 9)
    assert rejection.code == "webhook_failed" and rejection.reason.startswith("HTTP 400")


def test_an_unreachable_endpoint_is_unavailable(webhook_receiver: WebhookReceiver, webhook_secret: str) -> None:
    url = webhook_receiver.url
    webhook_receiver.stop()  # nothing listens on that port any more
    dead = ListSink()
    with WebhookSink(url, retry=FAST, dead_letters=dead) as sink:
        sink.add(alerts(1)[0])
        with pytest.raises(StoreUnavailable, match="ConnectionRefusedError"):
            sink.flush()
    assert "ConnectionRefusedError" in dead.records[0].detail


def test_a_server_that_trickles_its_answer_cannot_hold_a_request_past_the_deadline(
    raw_server: Any, webhook_secret: str
) -> None:
    """Status line, then a byte every 0.2 s: each read succeeds, so only a total deadline ends it."""
    server: RawServer = raw_server("trickle", interval=0.2)
    policy = RetryPolicy(max_retries=1, base_delay=0.01, max_delay=0.01, timeout=1.0)
    sink = WebhookSink(server.url, retry=policy, workers=1, dead_letters=ListSink())
    sink.add(alerts(1)[0])
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="deadline"):
        sink.flush()
    took = time.monotonic() - started
    assert 2.0 <= took < 3.0, took           # two attempts of 1 s each, not one byte more
    assert server.requests == 2
    sink.close(timeout=0)


def test_with_give_up_after_a_silent_endpoint_gets_every_alert_rejected_in_bounded_time(
    raw_server: Any, webhook_secret: str
) -> None:
    server: RawServer = raw_server("silent")
    policy = RetryPolicy(max_retries=5, base_delay=0.01, timeout=0.5, give_up_after=1.0)
    sink = WebhookSink(server.url, retry=policy, workers=4, dead_letters=ListSink())
    sent = alerts(50)
    sink.add_all(sent)
    started = time.monotonic()
    rejected = []
    for _ in range(20):                      # what a checkpoint does: flush again until it gets through
        try:
            sink.flush()
            break
        except StoreUnavailable:
            continue
        except RecordRejected as exc:
            rejected.extend(exc.rejections)
    took = time.monotonic() - started
    assert took < policy.give_up_after + policy.timeout + 0.5, took
    assert sorted(r.record.alert_id for r in rejected) == sorted(a.alert_id for a in sent)
    assert all(r.code == "webhook_failed" and "gave up" in r.reason for r in rejected)
    later = alerts(1, "later")[0]
    sink.add(later)                          # after giving up: rejected at once
    with pytest.raises(RecordRejected):
        sink.flush()
    sink.close(timeout=0)


def test_abort_cuts_requests_in_flight_and_close_dead_letters_everything_queued(
    raw_server: Any, webhook_secret: str
) -> None:
    """Ctrl-C: no waiting for a 30 s deadline; every alert queued or in flight becomes a dead letter."""
    server: RawServer = raw_server("silent")
    dead = ListSink()
    sink = WebhookSink(server.url, retry=RetryPolicy(timeout=30.0), workers=2, dead_letters=dead)
    sent = alerts(5)
    sink.add_all(sent)
    deadline = time.monotonic() + 5
    while server.requests < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    sink.abort()
    sink.close()
    assert time.monotonic() - started < 1.5
    assert sorted(d.original for d in dead.records) == sorted(record_json(a) for a in sent)
    assert all(d.error == "webhook_failed" for d in dead.records)


def test_close_without_a_dead_letter_target_raises_what_it_did_not_deliver(
    webhook_receiver: WebhookReceiver, webhook_secret: str
) -> None:
    webhook_receiver.script = lambda n, h, b: Reply(503, {"Retry-After": "60"})
    sink = sink_for(webhook_receiver, workers=1)
    sent = alerts(3)
    sink.add_all(sent)
    with pytest.raises(RecordRejected) as raised:
        sink.close(timeout=0.3)
    assert sorted(r.record.alert_id for r in raised.value.rejections) == sorted(a.alert_id for a in sent)


def test_add_never_blocks_and_a_full_queue_raises_sink_full(webhook_receiver: WebhookReceiver,
                                                             webhook_secret: str) -> None:
    webhook_receiver.script = lambda n, h, b: Reply(200, delay=0.3)
    sink = sink_for(webhook_receiver, max_queue=3, workers=1)
    added, full = 0, None
    for alert in alerts(10):
        started = time.monotonic()
        try:
            sink.add(alert)
            added += 1
        except SinkFull as exc:
            full = exc
        assert time.monotonic() - started < 0.05
    assert full is not None and 0 < full.retry_after <= 5
    assert added <= 4  # queue of 3 + at most one in flight: bounded memory
    sink.close()
    assert len(webhook_receiver.delivered()) == added


def test_close_dead_letters_what_it_could_not_deliver(webhook_receiver: WebhookReceiver, webhook_secret: str) -> None:
    webhook_receiver.script = lambda n, h, b: Reply(503, {"Retry-After": "60"})
    dead = ListSink()
    sink = sink_for(webhook_receiver, dead_letters=dead, workers=1)
    sink.add_all(alerts(3))
    started = time.monotonic()
    sink.close(timeout=0.3)
    assert time.monotonic() - started < 3
    assert len(dead.records) == 3
    assert all("closed" in d.detail for d in dead.records)


def test_retractions_and_holds_are_sent_so_a_pager_can_close_a_false_alarm(
        webhook_receiver: WebhookReceiver, webhook_secret: str) -> None:
    """SPEC 9: every alert type goes out; an sla_retracted names the alert it proves false and the
    late event that proves it, sla_held / sla_resumed say a clock stopped and started again."""
    breach, retracted, resumed = fair_clock_alerts()
    held = dataclasses.replace(make_alert(type_="sla_held", level=0, reason="on holiday", alert_id="al-held"),
                               overdue_by_ms=0)
    with sink_for(webhook_receiver) as sink:
        sink.add_all([breach, held, resumed, retracted])
    got = {r.headers["Idempotency-Key"]: json.loads(r.body) for r in webhook_receiver.requests}
    assert set(got) == {breach.alert_id, "al-held", "al-resumed", "al-retracted"}
    assert got["al-retracted"]["type"] == "sla_retracted"
    assert got["al-retracted"]["resolves_alert_id"] == breach.alert_id
    assert (got["al-retracted"]["reason"], got["al-retracted"]["evidence_event_id"]) == ("late_event", "touch-1350")
    assert got["al-resumed"]["held_ms"] == 2 * 3_600_000
    assert got["al-held"]["type"] == "sla_held"


def test_lifecycle_records_are_not_alerting_material(webhook_receiver: WebhookReceiver, webhook_secret: str) -> None:
    with sink_for(webhook_receiver) as sink:
        sink.add(make_transition())
    assert webhook_receiver.requests == []


def test_the_secret_never_leaks(webhook_receiver: WebhookReceiver, webhook_secret: str,
                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    webhook_receiver.script = lambda n, h, b: Reply(500)
    dead = ListSink()
    with sink_for(webhook_receiver, dead_letters=dead) as sink:
        sink.add(alerts(1)[0])
        with pytest.raises(StoreUnavailable) as unavailable:
            sink.flush()
        text = repr(sink) + str(vars(sink)) + str(unavailable.value)
    without_sink = WebhookSink(webhook_receiver.url, retry=FAST)  # nowhere to dead-letter: it raises
    without_sink.add(alerts(1)[0])
    with pytest.raises(RecordRejected) as rejected:
        without_sink.close(timeout=5)
    text += str(rejected.value) + "".join(r.reason for r in rejected.value.rejections)
    assert webhook_secret not in text
    assert webhook_secret not in caplog.text
    assert all(webhook_secret not in d.detail and webhook_secret.encode() not in d.original for d in dead.records)
    assert "LEADFLOW_WEBHOOK_SECRET" in repr(sink)


def test_a_missing_secret_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEADFLOW_WEBHOOK_SECRET", raising=False)
    with pytest.raises(ConfigError, match="LEADFLOW_WEBHOOK_SECRET"):
        WebhookSink("http://127.0.0.1:9/x")


def test_parse_retry_after() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now) == pytest.approx(30, abs=1)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_backoff_is_full_jitter_capped() -> None:
    import random

    policy = RetryPolicy(base_delay=1, max_delay=8)
    rng = random.Random(1)
    delays = [policy.backoff(10, None, rng) for _ in range(200)]
    assert all(0 <= d <= 8 for d in delays) and max(delays) > 6 and min(delays) < 2
    assert policy.backoff(0, 12.0, rng) == 12.0
    assert policy.backoff(0, 10_000.0, rng) == policy.max_retry_after
