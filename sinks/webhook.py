"""Webhook sink: POST every alert to an HTTP endpoint, signed, retried, never blocking the stream.

Each alert is one request: the body is ``record_json(alert)``, with headers
``Content-Type: application/json``, ``Idempotency-Key: <alert_id>`` (so the receiver drops repeats —
alerts are emitted at least once) and ``X-Leadflow-Signature: sha256=<hex HMAC-SHA256(secret, body)>``.
Records other than alerts are not alerting material and are skipped. Every alert type is sent:
an ``sla_retracted`` (SPEC 9) names in ``resolves_alert_id`` the alert a pager closes as a false alarm.

Delivery: ``add`` puts the alert on a bounded queue and returns at once; when the queue is full it
raises ``SinkFull(retry_after)`` instead of growing. A few worker threads deliver over persistent
``http.client`` connections. Every request has a **total deadline** (``RetryPolicy.timeout``:
connect, send, status line, headers and body together): a watchdog thread shuts the socket of a
request that passes it, so a server that trickles one byte every few seconds cannot hold a request
(or a worker) longer. An alert gets at most ``max_retries + 1`` attempts per flush, with exponential
backoff and full jitter; a ``Retry-After`` header (seconds or an HTTP date) on 429/503 replaces the
jittered delay.

What ``flush`` says (the sink contract, ``sinks.base``):

- 2xx: delivered.
- Another 4xx (400, 410, 413, 422, ...): the receiver will never take this alert: ``RecordRejected``
  with code ``webhook_failed`` (the checkpoint turns it into a dead letter).
- Connection errors, deadline, 408, 425, 429, 5xx after the attempts: the endpoint is unavailable.
  The alert is kept, the other workers stop taking alerts (no point hammering a dead endpoint), and
  ``flush`` raises ``StoreUnavailable``; the next ``flush`` tries again.
- With ``RetryPolicy.give_up_after``, once the endpoint has failed for that long without a single
  success, the sink stops holding alerts: each one queued or added later is rejected as
  ``webhook_failed`` right away. ``leadflow replay`` sets it, so a replay ends in bounded time; the
  worker's relay does not, so it never commits past an alert it did not deliver.

``close`` (and ``abort``, for Ctrl-C: in-flight requests are cut at once) dead-letters every alert
it could not deliver: to ``dead_letters`` (a callback or a sink) if given, else it raises them as
``RecordRejected`` (``webhook_failed``), which ``sinks.checkpoint.Checkpoint`` dead-letters. Nothing
queued is ever dropped silently.

Why threads and not asyncio + aiohttp: ``add`` is called from the relay's thread AND from the
synchronous replay path. Worker threads with their own blocking connections work the same under
both, never borrow the caller's loop and keep slow receivers entirely off the event loop. Alerts are
low-volume; a handful of keep-alive connections deliver thousands per second (see
``bench/sinks_bench.py``).

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
import random
import socket
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from lifecycle.errors import ConfigError
from lifecycle.records import AlertRecord, DlqRecord, Record
from schemas.secrets import Secret, redact_url
from schemas.wire import record_json
from sinks.base import Position, RecordRejected, Rejection, Sink, SinkClosed, SinkFull, StoreUnavailable

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
    a receiver's ``Retry-After`` wins over the jitter, up to ``max_retry_after``.

    ``timeout`` is the total deadline of one request (connect + send + headers + body), in seconds.
    ``give_up_after``: seconds of failures without a success after which every alert is rejected at
    once (None: hold alerts for as long as it takes).
    """

    max_retries: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 300.0
    timeout: float = 10.0
    give_up_after: float | None = None

    def __post_init__(self) -> None:
        if (self.max_retries < 0 or self.base_delay < 0 or self.max_delay < 0 or self.timeout <= 0
                or (self.give_up_after is not None and self.give_up_after < 0)):
            raise ValueError(f"bad retry policy: {self}")

    def backoff(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        return rng.uniform(0.0, min(self.max_delay, self.base_delay * (2 ** attempt)))


class _Attempt:
    """The result of one POST."""

    __slots__ = ("status", "retry_after", "error")

    def __init__(self, status: int | None, retry_after: float | None = None, error: str | None = None):
        self.status = status
        self.retry_after = retry_after
        self.error = error


#: what became of one alert's attempts
_DELIVERED: Final = "delivered"
_REJECTED: Final = "rejected"
_UNAVAILABLE: Final = "unavailable"


class _Watchdog:
    """Cuts every request that passes its deadline: one thread per sink shuts the request's socket
    down, which wakes a worker blocked in ``recv`` at once. A socket timeout alone would not do: it
    bounds each read, and a server that sends a byte every few seconds resets it with every byte."""

    _RECHECK = 0.05  # s: a request cut while still connecting is cut again once it has a socket

    def __init__(self, name: str) -> None:
        self._cond = threading.Condition()
        self._armed: dict[int, list[Any]] = {}   # token -> [deadline, connection, socket cut or None]
        self._next_token = 0
        self._cut_everything = False
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def arm(self, conn: http.client.HTTPConnection, deadline: float) -> int:
        with self._cond:
            self._next_token += 1
            self._armed[self._next_token] = [float("-inf") if self._cut_everything else deadline, conn, None]
            self._cond.notify()
            return self._next_token

    def disarm(self, token: int) -> bool:
        """Forget the request; True if it was cut (its deadline passed, or everything was cut)."""
        with self._cond:
            entry = self._armed.pop(token, None)
        return entry is not None and (entry[2] is not None or time.monotonic() >= entry[0])

    def cut_all(self) -> None:
        """Cut every request now and every request armed from now on (abort, close)."""
        with self._cond:
            self._cut_everything = True
            for entry in self._armed.values():
                entry[0] = float("-inf")
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                wait: float | None = None
                for entry in self._armed.values():
                    deadline, conn, cut = entry
                    if now < deadline:
                        wait = deadline - now if wait is None else min(wait, deadline - now)
                        continue
                    sock = conn.sock
                    if sock is None:                 # still connecting: look again shortly
                        wait = self._RECHECK if wait is None else min(wait, self._RECHECK)
                    elif sock is not cut:
                        try:
                            sock.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                        entry[2] = sock
                self._cond.wait(wait)


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
        self._rng = random.Random(seed)
        self._max_queue = max_queue
        # shared state, guarded by _cond
        self._cond = threading.Condition()
        self._queue: deque[tuple[AlertRecord, Position | None]] = deque()
        self._in_flight: dict[int, tuple[AlertRecord, Position | None]] = {}   # worker -> its alert
        self._down: str | None = None            # the endpoint failed: workers wait for the next flush
        self._failing_since: float | None = None  # first failed attempt since the last success
        self._given_up: str | None = None        # give_up_after passed: every alert is rejected
        self._rejected: list[Rejection] = []     # raised by the next flush
        self._stopping = threading.Event()
        self.closed = False
        self.delivered = 0
        self.failed = 0
        self._seconds_per_delivery = 0.01  # moving estimate, feeds SinkFull.retry_after
        self._watchdog = _Watchdog("leadflow-webhook-deadline")
        self._workers = [
            threading.Thread(target=self._run, args=(i,), name=f"leadflow-webhook-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._workers:
            thread.start()

    # -- the contract --------------------------------------------------------------------------
    def add(self, record: Record, position: Position | None = None) -> None:
        if self.closed:
            raise SinkClosed("add on a closed WebhookSink")
        if not isinstance(record, AlertRecord):
            return
        with self._cond:
            if self._given_up is not None:
                self._reject((record, position), self._given_up)
                return
            if len(self._queue) >= self._max_queue:
                # long enough for about a quarter of the queue to drain at the recent delivery rate
                wait = self._max_queue * self._seconds_per_delivery / len(self._workers) / 4
                raise SinkFull(min(max(wait, 0.001), 5.0), "webhook queue full")
            self._queue.append((record, position))
            self._cond.notify()

    def flush(self) -> None:
        """Wait until every queued alert is delivered, rejected, or the endpoint is found unavailable;
        then raise ``StoreUnavailable`` (alerts kept) or ``RecordRejected`` (module docstring)."""
        if self.closed:
            raise SinkClosed("flush on a closed WebhookSink")
        with self._cond:
            if self._down is not None and not self._stopping.is_set():
                self._down = None                   # a new flush: try the endpoint again
                self._cond.notify_all()
            self._cond.wait_for(self._settled)
            if self._down is not None or (self._stopping.is_set() and self._queue):
                reason = self._down or "sink stopped"
                raise StoreUnavailable(f"webhook {self._redacted_url()} unavailable ({reason}); "
                                       f"{len(self._queue)} alerts kept")
            rejected, self._rejected = self._rejected, []
        if rejected:
            raise RecordRejected(rejected)

    def abort(self) -> None:
        """Stop now: no new attempt, requests in flight cut; ``close`` dead-letters what is left."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        self._watchdog.cut_all()

    def close(self, timeout: float | None = 30.0) -> None:
        """Deliver what is queued (up to ``timeout`` s, not at all if the endpoint is down), stop the
        workers, and dead-letter every alert not delivered (module docstring)."""
        if self.closed:
            return
        self.closed = True
        with self._cond:
            if self._down is None and not self._stopping.is_set():
                self._cond.wait_for(self._settled, timeout)
        self.abort()
        for thread in self._workers:
            thread.join(timeout=self.retry.timeout + 1)
        self._watchdog.stop()
        with self._cond:
            reason = f"not delivered before the sink closed (last: {self._down})" if self._down else \
                "not delivered before the sink closed"
            for item in [*self._in_flight.values(), *self._queue]:
                self._reject(item, reason)
            self._in_flight.clear()
            self._queue.clear()
            rejected, self._rejected = self._rejected, []
        if not rejected:
            return
        target = self.dead_letters
        if target is None:
            raise RecordRejected(rejected)
        for rejection in rejected:
            record = rejection.dead_letter(self.alerts_topic)
            try:
                if isinstance(target, Sink):
                    target.add(record)
                else:
                    target(record)
            except Exception:  # noqa: BLE001 - one broken dead letter must not hide the others
                log.exception("webhook alert %s: the dead-letter target failed", rejection.record.alert_id)  # type: ignore[union-attr]

    def _settled(self) -> bool:
        """Nothing in flight, and nothing queued that a worker would take now."""
        return not self._in_flight and (not self._queue or self._down is not None or self._stopping.is_set())

    def _reject(self, item: tuple[AlertRecord, Position | None], reason: str) -> None:
        """Under ``_cond``: the alert will not be delivered; the next flush (or close) says so."""
        alert, position = item
        self.failed += 1
        self._rejected.append(Rejection(alert, position, f"{reason} (POST {self._redacted_url()})", DLQ_ERROR))

    # -- delivery ------------------------------------------------------------------------------
    def _run(self, index: int) -> None:
        conn: http.client.HTTPConnection | None = None
        while True:
            with self._cond:
                while not self._stopping.is_set() and (not self._queue or self._down is not None):
                    self._cond.wait()
                if self._stopping.is_set():
                    break
                item = self._queue.popleft()
                self._in_flight[index] = item
                given_up = self._given_up
            started = time.monotonic()
            if given_up is not None:
                outcome, reason = _REJECTED, given_up
            else:
                try:
                    conn, outcome, reason = self._deliver(item[0], conn)
                except Exception as exc:  # noqa: BLE001 - a worker must survive anything
                    outcome, reason = _REJECTED, f"internal error: {type(exc).__name__}: {exc}"
            self._seconds_per_delivery = 0.9 * self._seconds_per_delivery + 0.1 * (time.monotonic() - started)
            with self._cond:
                if self._in_flight.pop(index, None) is not None:   # else close() accounted for it
                    self._settle(item, outcome, reason)
                self._cond.notify_all()
        if conn is not None:
            conn.close()

    def _settle(self, item: tuple[AlertRecord, Position | None], outcome: str, reason: str) -> None:
        """Under ``_cond``: record what became of one alert."""
        if outcome == _DELIVERED:
            self.delivered += 1
            self._failing_since = None
        elif outcome == _REJECTED:
            self._reject(item, reason)
        elif self._given_up is not None:
            self._reject(item, f"{self._given_up}; this alert: {reason}")
        else:
            self._queue.appendleft(item)            # kept, first in line for the next flush
            if not self._stopping.is_set():
                self._down = reason

    def _deliver(self, alert: AlertRecord,
                 conn: http.client.HTTPConnection | None) -> tuple[http.client.HTTPConnection | None, str, str]:
        """Up to ``max_retries + 1`` attempts: (connection, outcome, reason)."""
        body = record_json(alert)
        headers = {
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: alert.alert_id,
            SIGNATURE_HEADER: sign(self._secret.reveal(), body),
            "User-Agent": "leadflow-webhook/1",
        }
        reason = "no attempt"
        attempts = 0
        while True:
            if self._stopping.is_set():
                return conn, _UNAVAILABLE, f"sink stopped after {attempts} attempts; last: {reason}"
            if attempts and self._give_up(reason):
                return conn, _UNAVAILABLE, f"{reason} after {attempts} attempts"
            attempts += 1
            started = time.monotonic()
            conn, result = self._post(conn, body, headers)
            if result.status is not None and 200 <= result.status < 300:
                return conn, _DELIVERED, ""
            reason = result.error or f"HTTP {result.status}"
            if result.status is not None and result.status not in RETRYABLE_STATUS:
                with self._cond:
                    self._failing_since = None       # the endpoint answers; this alert is the problem
                return conn, _REJECTED, reason
            with self._cond:
                if self._failing_since is None:
                    self._failing_since = started
            if attempts > self.retry.max_retries:
                self._give_up(reason)
                return conn, _UNAVAILABLE, f"{reason} after {attempts} attempts"
            retry_after = result.retry_after if result.status in RETRY_AFTER_STATUS else None
            delay = self.retry.backoff(attempts - 1, retry_after, self._rng)
            if self.retry.give_up_after is not None:
                with self._cond:
                    since = self._failing_since if self._failing_since is not None else started
                delay = min(delay, max(0.0, since + self.retry.give_up_after - time.monotonic()))
            self._stopping.wait(delay)

    def _give_up(self, reason: str) -> bool:
        """True (and from now on every alert is rejected) once the endpoint has failed for
        ``give_up_after`` seconds without a success."""
        limit = self.retry.give_up_after
        with self._cond:
            if self._given_up is not None:
                return True
            if limit is None or self._failing_since is None:
                return False
            failing = time.monotonic() - self._failing_since
            if failing < limit:
                return False
            self._given_up = f"endpoint failing for {failing:.1f} s without a success, gave up; last: {reason}"
            self._down = None
            self._cond.notify_all()
            log.error("webhook %s: %s; every alert from now on is dead-lettered", self._redacted_url(),
                      self._given_up)
            return True

    def _connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=self.retry.timeout)

    def _post(self, conn: http.client.HTTPConnection | None, body: bytes,
              headers: dict[str, str]) -> tuple[http.client.HTTPConnection | None, _Attempt]:
        """One POST within the total deadline (``RetryPolicy.timeout``), the watchdog's to enforce."""
        deadline = time.monotonic() + self.retry.timeout
        for fresh in (False, True):  # a kept-alive connection the server closed: one silent reconnect
            if conn is None:
                conn, fresh = self._connection(), True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            conn.timeout = remaining                  # bounds the connect
            if conn.sock is not None:
                conn.sock.settimeout(remaining)
            token = self._watchdog.arm(conn, deadline)
            try:
                conn.request("POST", self._path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException, ValueError) as exc:  # socket.timeout is TimeoutError
                cut = self._watchdog.disarm(token)
                conn.close()
                conn = None
                if cut:
                    break
                stale = isinstance(exc, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError))
                if fresh or not stale:
                    kind = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
                    return None, _Attempt(None, error=f"{kind}: {exc}")
                continue
            if self._watchdog.disarm(token):         # cut: what was parsed is not a whole answer
                conn.close()
                conn = None
                break
            if response.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
            return conn, _Attempt(response.status, parse_retry_after(response.getheader("Retry-After")))
        if conn is not None:
            conn.close()
        return None, _Attempt(None, error=f"timeout: no complete answer within the {self.retry.timeout:g} s deadline")

    def _redacted_url(self) -> str:
        return redact_url(self.url)

    def __repr__(self) -> str:
        return (f"WebhookSink({self._redacted_url()!r}, secret_env={self.secret_env!r}, "
                f"queued={len(self._queue)}, delivered={self.delivered}, failed={self.failed})")
