"""The sink relay: the worker's output topics into the configured SQL and webhook sinks.

It works like a Kafka Connect sink connector. A kafka-python consumer in its own group
(``<app_id>.sinks``) reads ``lead.lifecycle``, ``lead.alerts`` and ``lead.dlq`` on a daemon thread.
It decodes each value back into a record and hands it, with its topic, partition and offset, to a
``sinks.checkpoint.Checkpoint``. After each polled batch the checkpoint flushes the sinks and only
then commits the batch's offsets. Every worker of a deployment runs one relay, and the group shares
the output partitions among them.

Why not write to the sinks from the faust agent? Sink I/O (a database transaction, an HTTP POST
with retries) must never block faust's event loop. Also, an agent's output is final only once
faust has published it (README, *Outbox*). Reading the topics back delivers what every other
consumer sees, repeats included.

**Guarantee: at least once, idempotent by id.** A crash after the flush and before the commit
delivers the batch again. Offsets are never committed for records that did not reach the sink.
Delivering a record again does nothing:

- ``SqlSink`` writes with ``INSERT ... ON CONFLICT (transition_id | alert_id | dlq_id) DO NOTHING``.
  ``leads`` is upserted only by a later ``occurred_at``, or at the same millisecond by the record
  that continues from the stored stage, so a repeat never moves a lead back (``sinks/sql.py``).
- ``WebhookSink`` sends ``Idempotency-Key: <alert_id>``, so the receiver drops repeats.

**Failures** follow the checkpoint's one rule; the adapters say whose fault a failure is:

- **A record the store refuses** (``RecordRejected``: PostgreSQL takes no NUL in text nor a score
  beyond INTEGER; a webhook answers 4xx) becomes a dead letter naming its topic, partition and
  offset (``sink_refused``, or ``webhook_failed`` for the webhook), is logged and counted
  (``refused``); the rest of the batch is stored and committed. Dead letters go to the SQL sink's
  ``dlq_records`` and, with a webhook, to the deployment's DLQ topic (flushed before the commit).
- **A store that is unavailable** (``StoreUnavailable``: database down, locked or full, webhook
  unreachable or timing out) stops the relay's progress: the flush is retried with back-off, the
  sinks keep the records, nothing is committed past them and nothing is dead-lettered. The relay
  never polls past a batch it has not stored, so nothing needs rewinding.
- A value that cannot be decoded does not stop the relay. It is logged, counted (``undecodable``)
  and handed to the sink as a ``DlqRecord`` with the codec's stable error code (``invalid_json``,
  ``missing_field``, ...), naming its topic, partition and offset. The SQL sink stores it in
  ``dlq_records``. It is not produced to the DLQ topic: garbage on that topic would come back
  forever. Any other decoding failure (a schema registry that is down) is retried in place.
- ``stop()`` ends the retries; what was not committed is relayed again by the next relay of the
  group. Alerts the webhook still holds are dead-lettered as ``webhook_failed`` on the way out.
  Broker calls that could wait forever are bounded (the commit, closing the consumer).

Values are JSON (the worker's format) or Confluent-framed Avro (magic byte 0, then a 4-byte schema
id), whose writer schema comes from the worker's ``SchemaLookup`` (the registry, else the bundled
schemas); ``schemas.codec.decode_record`` decodes both, as it does for ``leadflow report``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from lifecycle.errors import EventError
from lifecycle.records import AlertRecord, DlqRecord, LifecycleRecord, Record, RecordType
from schemas.codec import SchemaLookup, decode_record, dlq_record
from sinks.base import SINK_REFUSED, Position, Sink, SinkError
from sinks.checkpoint import BACKOFF, Checkpoint, Offsets
from streams.topics import Topics

__all__ = ["SINK_REFUSED", "SinkRelay", "describe_sinks", "group_id", "record_types", "relay_for"]

log = logging.getLogger("leadflow.relay")

#: bounds of broker calls that kafka-python would otherwise retry for ever
COMMIT_TIMEOUT_MS: Final = 30_000
CLOSE_TIMEOUT_MS: Final = 5_000
#: seconds ``stop()`` lets the batch in hand finish before it cuts the sinks' work in flight
STOP_GRACE: Final = 10.0


def group_id(topics: Topics) -> str:
    """The relay's consumer group: its own, so its offsets never mix with the worker's."""
    return f"{topics.app_id}.sinks"


def record_types(topics: Topics) -> dict[str, RecordType]:
    """Output topic -> the record type its values decode to."""
    return {topics.lifecycle: LifecycleRecord, topics.alerts: AlertRecord, topics.dlq: DlqRecord}


# -- the relay ---------------------------------------------------------------------------------

def _group_settings(tansu: bool) -> dict[str, Any]:
    """kafka-python group timings. On Tansu they are the faust ones of ``streams.settings.EMBEDDED``,
    because Tansu holds a join for half the session timeout (BROKER.md)."""
    if not tansu:
        return {}
    from streams.settings import EMBEDDED

    return {"session_timeout_ms": int(EMBEDDED["broker_session_timeout"] * 1000),
            "heartbeat_interval_ms": int(EMBEDDED["broker_heartbeat_interval"] * 1000)}


Message = Any
"""A kafka-python ``ConsumerRecord``: ``topic``, ``partition``, ``offset``, ``key``, ``value``."""


class SinkRelay:
    """Output topics -> ``sink``, at least once; see the module docstring.

    The relay owns ``sink`` and ``dead_letters``: ``stop()`` closes both. ``dead_letters`` is where
    dead letters go besides the sink itself (the webhook's DLQ producer); it is flushed after
    ``sink`` and before the commit, so the commit also covers the dead letters.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        sink: Sink,
        *,
        sources: Sequence[str] | None = None,
        group: str | None = None,
        lookup: SchemaLookup | None = None,
        tansu: bool = False,
        client_kwargs: Mapping[str, Any] | None = None,
        dead_letters: Sink | None = None,
        max_records: int = 500,
        poll_timeout_ms: int = 200,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.sink = sink
        self.dead_letters = dead_letters
        self.sources = tuple(sources if sources is not None else topics.outputs)
        kinds = record_types(topics)
        unknown = [t for t in self.sources if t not in kinds]
        if unknown:
            raise ValueError(f"not output topics of {topics.app_id}: {unknown}")
        self._kinds = {t: kinds[t] for t in self.sources}
        self.group = group or group_id(topics)
        self.lookup = lookup
        self.max_records = max_records
        self.poll_timeout_ms = poll_timeout_ms
        self._consumer_kwargs = {**_group_settings(tansu), **dict(client_kwargs or {})}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Any = None
        self._checkpoint = Checkpoint(sink, commit=self._commit, dead_letters=dead_letters, stop=self._stopping,
                                      name=f"sink relay {self.group}")
        self._committed = False
        # counters (written by the relay thread only)
        self.relayed = 0        # records handed to the sink, flushed and committed (repeats included)
        self.undecodable = 0    # values that did not decode: logged, handed on as DlqRecords
        self.commits = 0        # successful offset commits
        self._failures = 0      # failed polls, decodes and commits (each logged)

    @property
    def refused(self) -> int:
        """Records a sink refused (``RecordRejected``), stored as dead letters."""
        return sum(self._checkpoint.dead_lettered.values())

    @property
    def failures(self) -> int:
        """Failed tries: of a store (each retried), a poll, a decode, a commit."""
        return self._failures + self._checkpoint.failures

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> "SinkRelay":
        """Connect and subscribe here, so a broker that cannot be reached fails the caller, then
        relay on a daemon thread."""
        if self._thread is not None:
            raise RuntimeError("relay already started")
        try:
            self._consumer = self._connect()
        except Exception as exc:
            self._close_sinks()
            raise SinkError(f"sink relay cannot reach Kafka at {self.bootstrap}: {exc}") from exc
        self._thread = threading.Thread(target=self._run, name=f"leadflow-relay-{self.group}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Finish the batch in hand (flush, commit) for up to ``STOP_GRACE`` s, then cut what the
        sinks still do; close the sinks and the consumer, and join the thread.

        Anything not committed when this returns is delivered again by the next relay of the group.
        """
        self._stopping.set()
        if self._thread is None:
            self._close_sinks()
            return
        self._thread.join(min(timeout, STOP_GRACE))
        if self._thread.is_alive():
            self.sink.abort()
            self._thread.join(max(0.0, timeout - STOP_GRACE))
        if self._thread.is_alive():
            log.warning("sink relay %s still busy after %.0f s; what it did not commit is relayed again "
                        "on the next start", self.group, timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> "SinkRelay":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def describe(self) -> str:
        """One line for the operator: the sinks (no password), the group, the guarantee."""
        return f"{describe_sinks(self.sink)} (consumer group {self.group}, at least once)"

    def _connect(self) -> Any:
        """A consumer of the group, subscribed to the sources; it starts at the committed offsets."""
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=self.group, client_id=f"{self.group}-relay",
            enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=100,
            **self._consumer_kwargs)
        try:
            consumer.subscribe(list(self.sources))
        except BaseException:
            consumer.close(autocommit=False, timeout_ms=CLOSE_TIMEOUT_MS)
            raise
        return consumer

    def _close_consumer(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        try:
            consumer.close(autocommit=False, timeout_ms=CLOSE_TIMEOUT_MS)
        except Exception as exc:  # noqa: BLE001
            log.warning("sink relay %s: closing the consumer: %s", self.group, exc)

    # -- the loop ------------------------------------------------------------------------------

    def _run(self) -> None:
        delay = BACKOFF[0]
        try:
            while not self._stopping.is_set():
                try:
                    if self._consumer is None:
                        self._consumer = self._connect()
                    batch = self._consumer.poll(timeout_ms=self.poll_timeout_ms, max_records=self.max_records)
                    delay = BACKOFF[0]
                except Exception as exc:  # noqa: BLE001 - the relay outlives any one failure
                    self._failures += 1
                    log.error("sink relay %s: polling: %s: %s; a new consumer in %.1f s (it starts at the "
                              "committed offsets)", self.group, type(exc).__name__, exc, delay)
                    self._close_consumer()
                    if self._stopping.wait(delay):
                        break
                    delay = min(delay * 2, BACKOFF[1])
                    continue
                if not batch:
                    continue
                try:
                    self._relay([message for messages in batch.values() for message in messages])
                except Exception as exc:  # noqa: BLE001 - a bug must not end the relay or skip a batch
                    self._failures += 1
                    log.exception("sink relay %s: relaying a batch failed (%s); a new consumer reads it again "
                                  "from the committed offsets in %.1f s", self.group, exc, delay)
                    self._close_consumer()
                    if self._stopping.wait(delay):
                        break
                    delay = min(delay * 2, BACKOFF[1])
        finally:
            self._close_sinks()
            self._close_consumer()

    def _relay(self, messages: Sequence[Message]) -> None:
        """Decode, add with positions, flush, commit (the checkpoint's rule). Returns early, having
        committed nothing, when stopped."""
        records = self._decode(messages)
        if records is None:
            return
        for message, record in zip(messages, records):
            if not self._checkpoint.add(record, Position(message.topic, message.partition, message.offset)):
                return
        self._committed = False
        if self._checkpoint.commit() and self._committed:
            self.commits += 1
            self.relayed += len(messages)

    def _commit(self, offsets: Offsets) -> None:
        """The checkpoint's last step: the offsets of what the sinks stored. A failed commit (a
        rebalance meanwhile) is logged: the records are stored, and come again only if the next
        commit does not cover them."""
        from kafka.structs import OffsetAndMetadata, TopicPartition

        try:
            self._consumer.commit(offsets={TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1)
                                           for (topic, partition), offset in offsets.items()},
                                  timeout_ms=COMMIT_TIMEOUT_MS)
            self._committed = True
        except Exception as exc:  # noqa: BLE001
            self._failures += 1
            log.warning("sink relay %s: commit failed (%s); those records will be relayed again", self.group, exc)

    def _decode(self, messages: Sequence[Message]) -> list[Record] | None:
        """Every message as a record; a value that holds none becomes a dead letter. Any other
        failure (the schema registry is down) is retried in place, with back-off; None if stopped."""
        delay = BACKOFF[0]
        while True:
            try:
                decoded = [self._record(message) for message in messages]
                break
            except Exception as exc:  # noqa: BLE001
                self._failures += 1
                log.error("sink relay %s: decoding %d values: %s: %s; again in %.1f s, polling nothing meanwhile",
                          self.group, len(messages), type(exc).__name__, exc, delay)
                if self._stopping.wait(delay):
                    return None
                delay = min(delay * 2, BACKOFF[1])
        records = []
        for message, (record, error) in zip(messages, decoded):
            if error is not None:
                self.undecodable += 1
                log.warning("sink relay %s: %s[%d]@%d is not a record (%s: %s); handed on as a dead letter",
                            self.group, message.topic, message.partition, message.offset, error.code, error.detail)
            records.append(record)
        return records

    def _record(self, message: Message) -> tuple[Record, EventError | None]:
        try:
            return decode_record(self._kinds[message.topic], message.value, self.lookup), None
        except EventError as error:
            return dlq_record(message.value, message.key, error, message.topic, message.partition,
                              message.offset), error

    def _close_sinks(self) -> None:
        try:
            self._checkpoint.close()   # what is in hand: flushed and committed if the stores take it
        except Exception as exc:  # noqa: BLE001 - say what was not stored
            log.error("sink relay %s: closing the sinks failed (%s); uncommitted records are relayed again "
                      "on the next start", self.group, exc)


# -- from the configuration --------------------------------------------------------------------

def describe_sinks(sink: Sink) -> str:
    """``SQL sqlite:///x.db, webhook https://h/p``: what ``sink`` writes to, passwords hidden."""
    from sinks.base import FanOut
    from schemas.secrets import redact_url
    from sinks.sql import SqlSink
    from sinks.webhook import WebhookSink

    parts = []
    for one in sink.sinks if isinstance(sink, FanOut) else (sink,):
        if isinstance(one, SqlSink):
            parts.append(f"SQL {redact_url(one.url)}")
        elif isinstance(one, WebhookSink):
            parts.append(f"webhook {redact_url(one.url)}")
        else:
            parts.append(type(one).__name__)
    return "sinks: " + ", ".join(parts)


def relay_for(settings: Any, bootstrap: str, topics: Topics, *, lookup: SchemaLookup | None = None,
              tansu: bool = False, client_kwargs: Mapping[str, Any] | None = None,
              encode_dlq: Callable[[DlqRecord], bytes] | None = None) -> SinkRelay | None:
    """The relay for ``LEADFLOW_SQL_URL`` / ``LEADFLOW_WEBHOOK_URL`` (``streams.config.Settings``), or None.

    The SQL sink gets all three output topics. The webhook gets the alerts, and the dead letters
    are also produced to the DLQ topic, encoded by ``encode_dlq`` (the worker's output format;
    default JSON). With only a webhook, only the alerts topic is read. Sinks are opened here (the
    database migrated, the webhook secret read), so a bad database or a missing secret stops the
    worker before it starts.
    """
    if not settings.sql_url and not settings.webhook_url:
        return None
    from sinks.base import FanOut

    dead_letters: Sink | None = None
    chosen: list[Sink] = []
    try:
        if settings.webhook_url:
            from sinks.kafka import KafkaSink

            extra: dict[str, Any] = dict(client_kwargs or {})
            if encode_dlq is not None:
                extra["encode"] = encode_dlq
            dead_letters = KafkaSink(bootstrap, {DlqRecord: topics.dlq},
                                     client_id=f"{group_id(topics)}-dead-letters", **extra)
        if settings.sql_url:
            from sinks.sql import SqlSink

            chosen.append(SqlSink(settings.sql_url))
        if settings.webhook_url:
            from sinks.webhook import WebhookSink

            chosen.append(WebhookSink(settings.webhook_url, alerts_topic=topics.alerts))
    except BaseException:
        for one in [*chosen, *([dead_letters] if dead_letters is not None else [])]:
            try:
                one.close()
            except Exception:  # noqa: BLE001 - the first error is the one to report
                pass
        raise
    sink = chosen[0] if len(chosen) == 1 else FanOut(*chosen)
    sources = topics.outputs if settings.sql_url else (topics.alerts,)
    return SinkRelay(bootstrap, topics, sink, sources=sources, lookup=lookup, tansu=tansu,
                     client_kwargs=client_kwargs, dead_letters=dead_letters)
