"""WebhookSink against a real local HTTP server: signature, retries with backoff, Retry-After (seconds
and HTTP date), timeouts, dead letters, back-pressure, and a secret that never leaks."""

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
from sinks.base import ListSink, SinkFull
from sinks.webhook import RetryPolicy, WebhookSink, parse_retry_after, verify
from tests.sinks.conftest import Reply, WebhookReceiver
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


def test_timeouts_are_retried_then_dead_lettered(webhook_receiver: WebhookReceiver, webhook_secret: str) -> None:
    webhook_receiver.script = lambda n, h, b: Reply(200, delay=1.0)
    dead = ListSink()
    alert = alerts(1)[0]
    policy = RetryPolicy(max_retries=1, base_delay=0.01, timeout=0.2)
    started = time.monotonic()
    with sink_for(webhook_receiver, retry=policy, dead_letters=dead) as sink:
        sink.add(alert)
        assert sink.flush(timeout=10)
    assert time.monotonic() - started < 3
    (record,) = dead.records
    assert isinstance(record, DlqRecord)
    assert record.error == "webhook_failed"
    assert "timeout" in record.detail and "after 2 attempts" in record.detail
    assert record.original == record_json(alert)
    assert record.key == alert.lead_id.encode()
    assert record.source_topic == "lead.alerts"


def test_server_errors_exhaust_the_retries_into_the_dlq_callback(webhook_receiver: WebhookReceiver,
                                                                   webhook_secret: str) -> None:
    webhook_receiver.script = lambda n, h, b: Reply(500)
    dead: list[DlqRecord] = []
    with sink_for(webhook_receiver, dead_letters=dead.append) as sink:
        sink.add_all(alerts(2))
    assert len(webhook_receiver.requests) == 2 * (FAST.max_retries + 1)
    assert sorted(d.detail.split(" (")[0] for d in dead) == ["HTTP 500 after 4 attempts"] * 2


def test_client_errors_are_not_retried(webhook_receiver: WebhookReceiver, webhook_secret: str) -> None:
    webhook_receiver.script = lambda n, h, b: Reply(400)
    dead = ListSink()
    with sink_for(webhook_receiver, dead_letters=dead) as sink:
        sink.add(alerts(1)[0])
    assert len(webhook_receiver.requests) == 1
    assert dead.records[0].detail.startswith("HTTP 400")


def test_unreachable_endpoint_is_dead_lettered(webhook_receiver: WebhookReceiver, webhook_secret: str) -> None:
    url = webhook_receiver.url
    webhook_receiver.stop()  # nothing listens on that port any more
    dead = ListSink()
    with WebhookSink(url, retry=FAST, dead_letters=dead) as sink:
        sink.add(alerts(1)[0])
    assert "ConnectionRefusedError" in dead.records[0].detail


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
        sink.flush()
        text = repr(sink) + str(vars(sink))
    without_sink = WebhookSink(webhook_receiver.url, retry=FAST)  # nowhere to dead-letter: it logs
    without_sink.add(alerts(1)[0])
    without_sink.close()
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
