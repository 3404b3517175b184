"""``leadflow produce FILE``: publish JSON-lines events to their input topics, keyed by ``lead_id``.

The topic follows ``event_type`` (SPEC section 3); a line that does not parse, or has no known
``event_type``, still goes out (to the form-fills topic, raw) so that the worker dead-letters it.
Topic names follow the worker's environment (``LEADFLOW_TOPIC_PREFIX``).

Lines are read one at a time, at most ``leadflow.jsonlines.MAX_LINE_BYTES`` each: a longer one is
not sent (no broker takes a message that size by default) and is counted in the final line.

A broker that stops answering fails the command a few seconds later (``GIVE_UP_SECONDS``: the
producer's blocking and delivery timeouts) saying how many events it acknowledged, "sent N of M
events"; a re-run sends them all again, and the worker drops the repeats by ``event_id``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import IO, Any

from leadflow import jsonlines
from lifecycle.errors import LeadflowError, excerpt
from leadflow.broker import resolve_broker
from streams.topics import Topics, deployment_topics, ensure_topics

PROGRESS_ABOVE_BYTES = 5_000_000
#: A send waits at most this long for the broker (a full buffer, unknown metadata), and a record is
#: given up this long after it was sent: a broker that went away fails the command within seconds.
GIVE_UP_SECONDS = 6.0
#: Events handed to the producer and not yet acknowledged, at most (~200 bytes each).
MAX_PENDING = 20_000
RETRY_NOTE = "re-running is safe: repeats are dropped by event_id"


class ProduceError(LeadflowError):
    """Records could not be delivered."""


@dataclass
class Sent:
    """What ``publish`` did: lines read, events handed to the producer and acknowledged by the broker,
    sends per topic, the line numbers of lines too long to send, and the failures."""

    read: int = 0
    handed: int = 0
    acknowledged: int = 0
    per_topic: dict[str, int] = field(default_factory=dict)
    too_long: list[int] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)
    #: when the broker last acknowledged something, or when it was last given work while idle
    progress_at: float = field(default_factory=time.monotonic)

    @property
    def pending(self) -> int:
        return self.handed - self.acknowledged - len(self.failures)

    def hand(self, topic: str) -> None:
        if self.pending <= 0:
            self.progress_at = time.monotonic()
        self.handed += 1
        self.per_topic[topic] = self.per_topic.get(topic, 0) + 1

    def acknowledge(self, _metadata: Any) -> None:  # on the producer's thread
        self.acknowledged += 1
        self.progress_at = time.monotonic()

    def stalled(self, seconds: float) -> bool:
        """Events are waiting and the broker acknowledged none of them for ``seconds``."""
        return self.pending > 0 and time.monotonic() - self.progress_at > seconds


def topic_for(event_type: Any, topics: Topics) -> str:
    return {
        "form_fill": topics.form_fills,
        "email_engagement": topics.email_engagement,
        "sales_touch": topics.sales_activity,
        "lead_assigned": topics.sales_activity,
        "sales_disposition": topics.sales_activity,
        "deal_stage_change": topics.deal_stages,
    }.get(event_type, topics.form_fills)


def route(line: bytes, topics: Topics) -> tuple[str, bytes | None]:
    """``(topic, key)`` of one JSON line; unparseable lines go to the form-fills topic without key."""
    try:
        obj = json.loads(line)
    except ValueError:
        return topics.form_fills, None
    if not isinstance(obj, dict):
        return topics.form_fills, None
    lead_id = obj.get("lead_id")
    key = lead_id.encode() if isinstance(lead_id, str) and lead_id else None
    return topic_for(obj.get("event_type"), topics), key


def _lines(stream: IO[bytes], sent: Sent) -> Iterator[bytes]:
    for number, line, _ in jsonlines.read_lines(stream):
        if isinstance(line, jsonlines.LongLine):
            sent.too_long.append(number)
            continue
        yield line


def publish(bootstrap: str, lines: Iterable[bytes], topics: Topics, *, on_sent: Any = None,
            sent: Sent | None = None, give_up: float = GIVE_UP_SECONDS,
            client_kwargs: dict[str, Any] | None = None) -> dict[str, int]:
    """Send every line (acks=all); return ``{topic: count}``. Raises ProduceError when a send fails
    or the broker acknowledges nothing for ``give_up`` seconds; ``sent`` then says how far it got.
    ``client_kwargs``: the deployment's security settings (``streams.config.kafka_python_kwargs``)."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError, KafkaTimeoutError

    sent = Sent() if sent is None else sent
    wait_ms = int(give_up * 1000)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                             batch_size=256 * 1024, client_id="leadflow-produce",
                             max_block_ms=wait_ms, request_timeout_ms=wait_ms // 2,
                             delivery_timeout_ms=wait_ms, reconnect_backoff_max_ms=1000,
                             **(client_kwargs or {}))

    def drain() -> None:
        """Wait until the broker acknowledged everything handed over, failed, or stalled."""
        while sent.pending > 0 and not sent.failures and not sent.stalled(give_up):
            try:
                producer.flush(timeout=0.5)
            except KafkaTimeoutError:
                pass

    try:
        for line in lines:
            sent.read += 1
            if sent.pending >= MAX_PENDING:
                drain()  # kafka-python's buffer is unbounded: a big file must not sit in memory
            if sent.failures or sent.stalled(give_up):
                break
            topic, key = route(line, topics)
            future = producer.send(topic, key=key, value=line)
            sent.hand(topic)
            future.add_callback(sent.acknowledge)
            future.add_errback(sent.failures.append)
            if on_sent is not None:
                on_sent(len(line) + 1)
        drain()
    except KafkaError as exc:  # a send that waited max_block_ms for a full buffer or for metadata
        sent.failures.append(exc)
    finally:
        _close(producer, 0 if sent.failures or sent.pending > 0 else 2)
    if sent.failures:
        raise ProduceError(_failure(sent.failures[0], bootstrap))
    if sent.pending > 0:
        raise ProduceError(f"{bootstrap} stopped answering (nothing acknowledged for {give_up:g} s)")
    return dict(sent.per_topic)


def _failure(exc: BaseException, bootstrap: str) -> str:
    from kafka import errors

    gone = (errors.KafkaTimeoutError, errors.KafkaConnectionError, errors.BrokerNotAvailableError,
            errors.NodeNotReadyError, errors.RequestTimedOutError)
    if isinstance(exc, gone):
        return f"{bootstrap} stopped answering ({type(exc).__name__})"
    return f"{bootstrap} refused an event ({type(exc).__name__}: {excerpt(str(exc))})"


def _close(producer: Any, timeout: float) -> None:
    """``producer.close``, also when records are still pending: kafka-python's ``close`` flushes
    first and raises there when the flush times out, before its force-close (and ``__del__`` then
    tries again with a traceback); past a failure the flush is skipped."""
    from kafka.errors import KafkaTimeoutError

    try:
        producer.close(timeout=timeout)
    except KafkaTimeoutError:
        producer.flush = lambda timeout=None: None
        producer.close(timeout=0)


def run(file: str, broker: str | None = None) -> dict[str, int]:
    from streams.config import kafka_python_kwargs, load_settings

    settings = load_settings()
    topics = deployment_topics(settings)
    bootstrap, embedded = resolve_broker(broker)
    # the deployment's TLS/SASL settings are for the user's cluster, never the embedded broker
    client = kafka_python_kwargs(settings) if embedded is None else None
    try:
        ensure_topics(bootstrap, topics, client_kwargs=client)
        started = time.monotonic()
        sent = Sent()
        source = sys.stdin.buffer if file == "-" else open(file, "rb")
        with (nullcontext(source) if file == "-" else source) as stream:
            size = _size(file)
            try:
                if size and size > PROGRESS_ABOVE_BYTES and sys.stderr.isatty():
                    from rich.console import Console
                    from rich.progress import Progress

                    with Progress(console=Console(stderr=True), transient=True) as progress:
                        task = progress.add_task("producing", total=size)
                        counts = publish(bootstrap, _lines(stream, sent), topics, sent=sent,
                                         on_sent=lambda n: progress.advance(task, n), client_kwargs=client)
                else:
                    counts = publish(bootstrap, _lines(stream, sent), topics, sent=sent, client_kwargs=client)
            except ProduceError as exc:
                total = None if file == "-" else sent.read + sum(1 for _ in _lines(stream, Sent()))
                of = f" of {total:,}" if total is not None else f" ({sent.read:,} read)"
                raise ProduceError(f"{exc}: sent {sent.acknowledged:,}{of} events; {RETRY_NOTE}") from None
        total = sum(counts.values())
        seconds = time.monotonic() - started
        per_topic = ", ".join(f"{t} {n}" for t, n in sorted(counts.items()))
        print(f"produced {total} events to {bootstrap} in {seconds:.1f} s"
              + (f" ({per_topic})" if per_topic else ""))
        if sent.too_long:
            lines = ", ".join(str(n) for n in sent.too_long[:5]) + (", …" if len(sent.too_long) > 5 else "")
            count = len(sent.too_long)
            raise ProduceError(f"{count:,} line{'s' if count > 1 else ''} over {jsonlines.MAX_LINE_BYTES:,} bytes "
                               f"not sent (line {lines})")
        return counts
    finally:
        if embedded is not None:
            embedded.stop()


def _size(file: str) -> int | None:
    if file == "-":
        return None
    import os

    try:
        return os.path.getsize(file)
    except OSError:
        return None
