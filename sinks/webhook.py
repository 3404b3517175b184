"""Webhook sink: POST every alert to an HTTP endpoint, signed, retried, never blocking the stream.

Each alert is one request: the body is ``record_json(alert)``, with headers
``Content-Type: application/json``, ``Idempotency-Key: <alert_id>`` (so the receiver drops repeats —
alerts are emitted at least once) and ``X-Leadflow-Signature: sha256=<hex HMAC-SHA256(secret, body)>``.
Records other than alerts are not alerting material and are skipped. Every alert type is sent:
an ``sla_retracted`` (SPEC 9) names in ``resolves_alert_id`` the alert a pager closes as a false alarm.

Delivery: ``add`` puts the alert on a bounded queue and returns at once; when the queue is full it
raises ``SinkFull(retry_after)`` instead of growing. A few worker threads deliver over persistent
``http.client`` connections with a timeout per request. Failures (connection errors, timeouts, 408,
425, 429, 5xx) are retried with exponential backoff and full jitter; a ``Retry-After`` header (seconds
or an HTTP date) on 429/503 replaces the jittered delay. Other 4xx answers are not retried. An alert
that still is not delivered becomes a ``DlqRecord`` (``error="webhook_failed"``, ``detail`` = the
reason) handed to ``dead_letters`` (a callback or a sink).

Why threads and not asyncio + aiohttp: ``add`` is called from the faust worker's event loop AND from
the synchronous replay path. Worker threads with their own blocking connections work the same under
both, never borrow the caller's loop (no ``run_coroutine_threadsafe`` plumbing, no loop-closed races at
shutdown) and keep slow receivers entirely off the event loop. Alerts are low-volume; a handful of
keep-alive connections deliver thousands per second (see ``bench/sinks_bench.py``).

The secret is read once from the environment variable named by ``secret_env``; it is never logged,
never part of ``repr`` and never put in an exception or a DLQ record.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import http.client
import logging
import os
import queue
import random
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from lifecycle.errors import ConfigError
from lifecycle.records import AlertRecord, DlqRecord, Record
from schemas.secrets import Secret, redact_url
from schemas.wire import record_json
from sinks.base import Sink, SinkClosed, SinkFull

log = logging.getLogger(__name__)

SIGNATURE_HEADER: Final = "X-Leadflow-Signature"
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
DLQ_ERROR: Final = "webhook_failed"
RETRYABLE_STATUS: Final = frozenset({408, 425, 429, 500, 502, 503, 504})
RETRY_AFTER_STATUS: Final = frozenset({429, 503})

DeadLetterTarget = Callable[[DlqRecord], None] | Sink


def sign(secret: bytes, body: bytes) -> str:
    """The ``X-Leadflow-Signature`` value of ``body``: ``sha256=<hex>``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str) -> bool:
    """What a receiver does: constant-time comparison of the header with the expected signature."""
    return hmac.compare_digest(sign(secret, body), header)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment is None:
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n (0-based) waits ``uniform(0, min(cap, base*2**n))``;
    a receiver's ``Retry-After`` wins over the jitter, up to ``max_retry_after``."""

    max_retries: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 300.0
    timeout: float = 10.0  # seconds, per request (connect and read)

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.base_delay < 0 or self.max_delay < 0 or self.timeout <= 0:
            raise ValueError(f"bad retry policy: {self}")

    def backoff(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        return rng.uniform(0.0, min(self.max_delay, self.base_delay * (2 ** attempt)))


@dataclass(frozen=True)
class DeliveryOutcome:
    """The end of one alert's delivery: delivered, or why not."""

    alert_id: str
    delivered: bool
    attempts: int
    reason: str | None = None


class _Attempt:
    """The result of one POST."""

    __slots__ = ("status", "retry_after", "error")

    def __init__(self, status: int | None, retry_after: float | None = None, error: str | None = None):
        self.status = status
        self.retry_after = retry_after
        self.error = error


class WebhookSink(Sink):
    """Alerts to a webhook; see the module docstring for the wire contract and the delivery rules."""

    def __init__(
        self,
        url: str,
        secret_env: str = "LEADFLOW_WEBHOOK_SECRET",
        *,
        dead_letters: DeadLetterTarget | None = None,
        retry: RetryPolicy = RetryPolicy(),
        max_queue: int = 1000,
        workers: int = 4,
        alerts_topic: str = "lead.alerts",
        on_outcome: Callable[[DeliveryOutcome], None] | None = None,
        seed: int | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"webhook URL must be http(s)://host[:port]/path, got {redact_url(url)!r}")
        secret = os.environ.get(secret_env, "")
        if not secret:
            raise ConfigError(f"webhook secret: environment variable {secret_env} is not set")
        if max_queue < 1 or workers < 1:
            raise ValueError("max_queue and workers must be >= 1")
        self.url = url
        self.secret_env = secret_env
        self._secret = Secret(secret.encode())
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.retry = retry
        self.dead_letters = dead_letters
        self.alerts_topic = alerts_topic
        self.on_outcome = on_outcome
        self._rng = random.Random(seed)
        self._queue: queue.Queue[AlertRecord | None] = queue.Queue(maxsize=max_queue)
        self._pending = 0  # queued + in flight
        self._idle = threading.Condition()
        self._stopping = threading.Event()
        self.closed = False
        self.delivered = 0
        self.failed = 0
        self._seconds_per_delivery = 0.01  # moving estimate, feeds SinkFull.retry_after
        self._workers = [
            threading.Thread(target=self._run, name=f"leadflow-webhook-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._workers:
            thread.start()

    # -- the contract --------------------------------------------------------------------------
    def add(self, record: Record) -> None:
        if self.closed:
            raise SinkClosed("add on a closed WebhookSink")
        if not isinstance(record, AlertRecord):
            return
        with self._idle:
            self._pending += 1
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            with self._idle:
                self._pending -= 1
            # long enough for about a quarter of the queue to drain at the recent delivery rate
            wait = self._queue.maxsize * self._seconds_per_delivery / len(self._workers) / 4
            raise SinkFull(min(max(wait, 0.001), 5.0), "webhook queue full") from None

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued alert is delivered or dead-lettered; False if ``timeout`` ran out."""
        if self.closed:
            raise SinkClosed("flush on a closed WebhookSink")
        return self._wait_idle(timeout)

    def close(self, timeout: float | None = 30.0) -> None:
        """Deliver what is queued (up to ``timeout`` s), dead-letter what remains, stop the workers."""
        if self.closed:
            return
        self.closed = True
        self._wait_idle(timeout)
        self._stopping.set()
        while True:  # whatever is still queued did not make it: dead-letter it, never drop it
            try:
                alert = self._queue.get_nowait()
            except queue.Empty:
                break
            if alert is not None:
                self._give_up(alert, 0, "sink closed before delivery")
                with self._idle:
                    self._pending -= 1
        for _ in self._workers:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                break
        for thread in self._workers:
            thread.join(timeout=self.retry.timeout + 1)

    def _wait_idle(self, timeout: float | None) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    # -- delivery ------------------------------------------------------------------------------
    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self._stopping.is_set():
            try:
                alert = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if alert is None:
                break
            started = time.monotonic()
            try:
                conn = self._deliver(alert, conn)
            except Exception as exc:  # noqa: BLE001 - a worker must survive anything
                self._give_up(alert, 0, f"internal error: {type(exc).__name__}: {exc}")
            finally:
                self._seconds_per_delivery = 0.9 * self._seconds_per_delivery + 0.1 * (time.monotonic() - started)
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()
        if conn is not None:
            conn.close()

    def _deliver(self, alert: AlertRecord, conn: http.client.HTTPConnection | None) -> http.client.HTTPConnection | None:
        body = record_json(alert)
        headers = {
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: alert.alert_id,
            SIGNATURE_HEADER: sign(self._secret.reveal(), body),
            "User-Agent": "leadflow-webhook/1",
        }
        reason = "no attempt"
        attempts = 0
        for attempt in range(self.retry.max_retries + 1):
            if self._stopping.is_set():
                reason = f"sink closed after {attempts} attempts; last: {reason}"
                break
            attempts += 1
            conn, result = self._post(conn, body, headers)
            if result.status is not None and 200 <= result.status < 300:
                self.delivered += 1
                if self.on_outcome:
                    self.on_outcome(DeliveryOutcome(alert.alert_id, True, attempts))
                return conn
            reason = result.error or f"HTTP {result.status}"
            retryable = result.status is None or result.status in RETRYABLE_STATUS
            if not retryable:
                break
            if attempt == self.retry.max_retries:
                reason = f"{reason} after {attempts} attempts"
                break
            retry_after = result.retry_after if result.status in RETRY_AFTER_STATUS else None
            if self._stopping.wait(self.retry.backoff(attempt, retry_after, self._rng)):
                reason = f"sink closed after {attempts} attempts; last: {reason}"
                break
        self._give_up(alert, attempts, reason)
        return conn

    def _connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=self.retry.timeout)

    def _post(self, conn: http.client.HTTPConnection | None, body: bytes,
              headers: dict[str, str]) -> tuple[http.client.HTTPConnection | None, _Attempt]:
        for fresh in (False, True):  # a kept-alive connection the server closed: one silent reconnect
            if conn is None:
                conn, fresh = self._connection(), True
            try:
                conn.request("POST", self._path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                retry_after = parse_retry_after(response.getheader("Retry-After"))
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
                return conn, _Attempt(response.status, retry_after)
            except (TimeoutError, OSError) as exc:  # socket.timeout is TimeoutError
                conn.close()
                conn = None
                stale = isinstance(exc, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError))
                if fresh or not stale:
                    kind = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
                    return None, _Attempt(None, error=f"{kind}: {exc}")
            except http.client.HTTPException as exc:
                conn.close()
                conn = None
                if fresh:
                    return None, _Attempt(None, error=f"{type(exc).__name__}: {exc}")
        return None, _Attempt(None, error="unreachable")  # pragma: no cover

    def _give_up(self, alert: AlertRecord, attempts: int, reason: str) -> None:
        self.failed += 1
        record = DlqRecord(
            error=DLQ_ERROR,
            detail=f"{reason} (POST {self._redacted_url()})",
            source_topic=self.alerts_topic,
            source_partition=None,
            source_offset=None,
            key=alert.lead_id.encode(),
            original=record_json(alert),
        )
        if self.on_outcome:
            self.on_outcome(DeliveryOutcome(alert.alert_id, False, attempts, reason))
        target = self.dead_letters
        try:
            if target is None:
                log.warning("webhook alert %s dead-lettered with nowhere to go: %s", alert.alert_id, reason)
            elif isinstance(target, Sink):
                target.add(record)
            else:
                target(record)
        except Exception:  # noqa: BLE001 - a broken DLQ target must not kill the worker
            log.exception("webhook alert %s: dead-letter target failed", alert.alert_id)

    def _redacted_url(self) -> str:
        return redact_url(self.url)

    def __repr__(self) -> str:
        return (f"WebhookSink({self._redacted_url()!r}, secret_env={self.secret_env!r}, "
                f"queued={self._queue.qsize()}, delivered={self.delivered}, failed={self.failed})")
