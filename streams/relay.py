"""The sink relay: the worker's output topics into the configured SQL and webhook sinks.

It works like a Kafka Connect sink connector. A kafka-python consumer in its own group
(``<app_id>.sinks``) reads ``lead.lifecycle``, ``lead.alerts`` and ``lead.dlq`` on a daemon thread.
It decodes each value back into a record and hands it to the sink, waiting out ``SinkFull``. After
each polled batch it calls ``sink.flush()``, and only then commits the batch's offsets. Every worker
of a deployment runs one relay, and the group shares the output partitions among them.

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

**Failures.**

- A failed flush or add (for example, the database is down) is retried with back-off. The batch
  stays in the sink's buffer and nothing is committed meanwhile.
- **A record the store refuses** (PostgreSQL takes no NUL character in text, nor a score beyond
  INTEGER) fails every flush of its batch. After ``ISOLATE_AFTER`` failed flushes the relay takes
  the batch apart on a freshly opened sink (``SinkRelay(reopen=...)``; without one, the batch is
  retried as above): one record per flush. The rule that tells a refused record from a store that
  is down: a record is refused when it fails alone twice, each time on a fresh sink, **and** a
  dead letter for it (``sink_refused``: the message's bytes, key, topic, partition and offset, and
  the store's error) is stored right after. A store that takes that write is up, so the record was
  at fault. If the dead letter fails too, or no sink can be opened, it is the store: nothing is
  skipped, and the batch is tried again after the back-off. Refused records are logged and counted
  (``refused``); a sink without a DLQ table (the webhook) keeps only the log line. Limits: a store
  that takes some tables' writes and not others (a table dropped) looks like one refusing those
  records; they are kept in ``dlq_records`` byte for byte, to be replayed. Taking a batch apart
  hands its alerts to the webhook again (repeats, which ``Idempotency-Key`` drops).
- Any other error (a schema registry that is down while values are decoded, a failed poll) rewinds
  the consumer to the first record of the batch in each of its partitions and retries after a
  back-off. The rewind needs no broker (the offsets are the batch's own), and the relay never
  polls past a batch it did not rewind; should seeking fail, the consumer is replaced, and a new
  member starts at the committed offsets.
- A value that cannot be decoded does not stop the relay. It is logged, counted
  (``undecodable``) and handed to the sink as a ``DlqRecord`` with the codec's stable error code
  (``invalid_json``, ``missing_field``, ...), naming its topic, partition and offset. The SQL sink
  stores it in ``dlq_records``. It is not produced to the DLQ topic: garbage on that topic would
  come back forever.
- **Webhook dead letters** (an alert the webhook gave up on, ``webhook_failed``) are logged and
  produced to the deployment's DLQ topic. They are flushed before the commit, so they reach the
  other DLQ consumers, and through this relay the SQL sink's ``dlq_records``.
- Broker calls that could wait forever are bounded (the commit, closing the consumer), so
  ``stop()`` is honoured while the broker is unreachable.

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
from sinks.base import Sink, SinkError, deliver
from streams.topics import Topics

__all__ = ["SINK_REFUSED", "SinkRelay", "describe_sinks", "group_id", "record_types", "relay_for"]

log = logging.getLogger("leadflow.relay")

#: back-off after a failed flush or batch: doubles from the first value up to the second (seconds)
RETRY_BACKOFF = (0.5, 30.0)
#: failed flushes of one batch after which the relay takes it apart, one record at a time
ISOLATE_AFTER: Final = 3
#: DLQ error code of a record the store refused (see the module docstring)
SINK_REFUSED: Final = "sink_refused"
#: bounds of broker calls that kafka-python would otherwise retry for ever
COMMIT_TIMEOUT_MS: Final = 30_000
CLOSE_TIMEOUT_MS: Final = 5_000


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


class _Stopped(Exception):
    """``stop()`` was called while the relay waited for the sink."""


Message = Any
"""A kafka-python ``ConsumerRecord``: ``topic``, ``partition``, ``offset``, ``key``, ``value``."""


class SinkRelay:
    """Output topics -> ``sink``, at least once; see the module docstring.

    The relay owns ``sink`` and ``dead_letters``: ``stop()`` closes both. ``dead_letters`` is
    where the sink sends what it gives up on (the webhook's DLQ producer). It is flushed after
    ``sink`` and before the commit, so the commit also covers the dead letters.

    ``reopen`` opens a fresh sink like ``sink``. A sink whose flush failed still holds the whole
    batch, so only a fresh one can take the batch apart to find a record the store refuses; the old
    one is closed. Without ``reopen`` a refused batch is retried until the sink takes it.
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
        reopen: Callable[[], Sink] | None = None,
        max_records: int = 500,
        poll_timeout_ms: int = 200,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.sink = sink
        self.dead_letters = dead_letters
        self.reopen = reopen
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
        # counters (written by the relay thread only)
        self.relayed = 0        # records handed to the sink, flushed and committed (repeats included)
        self.undecodable = 0    # values that did not decode: logged, handed on as DlqRecords
        self.refused = 0        # records the store refused: logged, stored as sink_refused dead letters
        self.commits = 0        # successful offset commits
        self.failures = 0       # failed flushes, batches, rewinds and commits (each logged)

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
        """Finish the batch in hand (flush, commit), close the sinks and the consumer, and join the thread.

        Anything not committed when this returns is delivered again by the next relay of the group.
        """
        self._stopping.set()
        if self._thread is None:
            self._close_sinks()
            return
        self._thread.join(timeout)
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
        delay = RETRY_BACKOFF[0]
        try:
            while not self._stopping.is_set():
                batch: Mapping[Any, Sequence[Message]] = {}
                try:
                    batch = self._consumer.poll(timeout_ms=self.poll_timeout_ms, max_records=self.max_records)
                    if batch:
                        self._relay(batch)
                    delay = RETRY_BACKOFF[0]
                except Exception as exc:  # noqa: BLE001 - the relay outlives any one failure
                    self.failures += 1
                    log.error("sink relay %s: %s: %s; the batch again in %.1f s",
                              self.group, type(exc).__name__, exc, delay)
                    if self._stopping.wait(delay) or not self._rewind(batch):
                        break
                    delay = min(delay * 2, RETRY_BACKOFF[1])
        finally:
            self._close_sinks()
            self._close_consumer()

    def _relay(self, batch: Mapping[Any, Sequence[Message]]) -> None:
        records = [(message, self._record(message)) for messages in batch.values() for message in messages]
        if not self._store(records):
            return  # stopping before the sink took the batch: commit nothing
        try:
            self._consumer.commit(timeout_ms=COMMIT_TIMEOUT_MS)
        except Exception as exc:  # noqa: BLE001 - e.g. a rebalance meanwhile: the batch comes again
            self.failures += 1
            log.warning("sink relay %s: commit failed (%s); %d records will be relayed again",
                        self.group, exc, len(records))
            return
        self.commits += 1
        self.relayed += len(records)

    def _record(self, message: Message) -> Record:
        try:
            return decode_record(self._kinds[message.topic], message.value, self.lookup)
        except EventError as error:
            self.undecodable += 1
            log.warning("sink relay %s: %s[%d]@%d is not a record (%s: %s); handed on as a dead letter",
                        self.group, message.topic, message.partition, message.offset, error.code, error.detail)
            return dlq_record(message.value, message.key, error, message.topic, message.partition, message.offset)

    def _store(self, records: Sequence[tuple[Message, Record]]) -> bool:
        """Hand ``records`` to the sink and flush it, then the dead letters; retried with back-off
        until done. True once done, False if stopped first. After ``ISOLATE_AFTER`` failures the
        batch is taken apart (``_take_apart``)."""
        delay = RETRY_BACKOFF[0]
        added = 0
        failed = 0
        stored = False  # the sink has the batch: a retry is for the dead letters only
        while True:
            try:
                if stored:
                    pass
                elif failed >= ISOLATE_AFTER and self.reopen is not None:
                    self._take_apart(records)
                else:
                    while added < len(records):  # after a failed add, from that record on
                        if not deliver(self.sink, records[added][1], self._stopping):
                            return False
                        added += 1
                    self.sink.flush()
                stored = True
                if self.dead_letters is not None:
                    self.dead_letters.flush()
                return True
            except _Stopped:
                return False
            except Exception as exc:  # noqa: BLE001 - SinkError, or a driver error
                failed += 1
                self.failures += 1
                log.error("sink relay %s: storing %d records failed (%s); nothing committed, retrying in %.1f s",
                          self.group, len(records), exc, delay)
                if failed == ISOLATE_AFTER and self.reopen is None:
                    log.error("sink relay %s: no way to reopen %s, so a record it refuses cannot be told "
                              "apart from the batch; retrying the batch", self.group, describe_sinks(self.sink))
                if self._stopping.wait(delay):
                    return False
                delay = min(delay * 2, RETRY_BACKOFF[1])

    def _take_apart(self, records: Sequence[tuple[Message, Record]]) -> None:
        """Store ``records`` one per flush, with a ``sink_refused`` dead letter instead of each one
        the store refuses (the rule: module docstring). Raises when the store itself fails, having
        skipped nothing, and ``_Stopped`` when stopped first."""
        self._fresh_sink()
        for message, record in records:
            problem = self._store_alone(record)
            if problem is not None:
                problem = self._store_alone(record)
            if problem is None:
                continue
            detail = f"{type(problem).__name__}: {problem}".replace("\x00", "\\x00")[:1000]
            dead = DlqRecord(error=SINK_REFUSED, detail=detail, source_topic=message.topic,
                             source_partition=message.partition, source_offset=message.offset,
                             key=None if message.key is None else bytes(message.key),
                             original=b"" if message.value is None else bytes(message.value))
            failure = self._store_alone(dead)
            if failure is not None:
                raise SinkError(f"the store refused a record, and then a dead letter too ({failure}): "
                                "it is the store; nothing skipped") from failure
            self.refused += 1
            log.error("sink relay %s: %s[%d]@%d refused by the store (%s); stored as a %s dead letter",
                      self.group, message.topic, message.partition, message.offset, detail, SINK_REFUSED)

    def _store_alone(self, record: Record) -> Exception | None:
        """Add ``record`` and flush; None once stored, else the error. A sink whose flush failed is
        closed at once (one more flush: None if that one goes through) and a fresh one opened, so
        nothing it held is written later. Raises if the store cannot be opened."""
        if self._stopping.is_set():
            raise _Stopped
        try:
            if not deliver(self.sink, record, self._stopping):
                raise _Stopped
            self.sink.flush()
            return None
        except _Stopped:
            raise
        except Exception as exc:  # noqa: BLE001 - the record, or the store: the caller tells
            problem: Exception | None = exc
        try:
            self.sink.close()
            problem = None
        except Exception:  # noqa: BLE001 - expected: it still holds what failed
            pass
        self._fresh_sink()
        return problem

    def _fresh_sink(self) -> None:
        """Close the sink (its last flush may fail: it holds what the store refused) and open a new
        one with ``reopen``. Raises if that cannot be opened; the relay then has no sink (None)."""
        assert self.reopen is not None
        old, self.sink = self.sink, None
        if old is not None:
            try:
                old.close()
            except Exception:  # noqa: BLE001 - expected, see above; its resources are released
                pass
        self.sink = self.reopen()

    def _rewind(self, batch: Mapping[Any, Sequence[Message]]) -> bool:
        """Put the consumer back on the first record of ``batch`` in each of its partitions, so the
        next poll returns the batch again; True once done, False if stopped first.

        The offsets are the batch's own, so the rewind needs no broker: one that cannot be reached
        neither fails it nor holds up ``stop()``. A partition no longer assigned is skipped: its next
        owner starts at the committed offset, never past the batch (offsets are committed only
        after a flush). Should seeking fail, the consumer is replaced: a new member starts at the
        committed offsets. Retried with back-off until one of the two works; nothing is polled before.
        """
        starts = {tp: messages[0].offset for tp, messages in batch.items() if messages}
        delay = RETRY_BACKOFF[0]
        while True:
            try:
                assigned = self._consumer.assignment()
                for tp, offset in starts.items():
                    if tp in assigned:
                        self._consumer.seek(tp, offset)
                return True
            except Exception as exc:  # noqa: BLE001
                self.failures += 1
                log.error("sink relay %s: cannot rewind (%s); reconnecting the consumer", self.group, exc)
            try:
                self._close_consumer()
                self._consumer = self._connect()
                return True
            except Exception as exc:  # noqa: BLE001
                self.failures += 1
                log.error("sink relay %s: cannot reconnect to %s (%s); again in %.1f s, polling nothing meanwhile",
                          self.group, self.bootstrap, exc, delay)
                if self._stopping.wait(delay):
                    return False
                delay = min(delay * 2, RETRY_BACKOFF[1])

    def _close_sinks(self) -> None:
        for sink in (self.sink, self.dead_letters):
            if sink is None:
                continue
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001 - close every sink; say what was not stored
                log.error("sink relay %s: closing %r failed (%s); uncommitted records are relayed again "
                          "on the next start", self.group, sink, exc)


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

    The SQL sink gets all three output topics. The webhook gets the alerts, and its dead letters
    are produced to the DLQ topic (``_dead_letter_producer``), encoded by ``encode_dlq`` (the
    worker's output format; default JSON). With only a webhook, only the
    alerts topic is read. Sinks are opened here (the database migrated, the webhook secret read),
    so a bad database or a missing secret stops the worker before it starts; the relay may open
    them again to take apart a batch the store refuses.
    """
    if not settings.sql_url and not settings.webhook_url:
        return None
    dead_letters: Sink | None = None
    forward: Callable[[DlqRecord], None] | None = None
    if settings.webhook_url:
        dead_letters, forward = _dead_letter_producer(bootstrap, topics, group_id(topics), client_kwargs,
                                                      encode_dlq)

    def open_sinks() -> Sink:
        """The configured sinks, opened; also the relay's ``reopen``."""
        from sinks.base import FanOut

        chosen: list[Sink] = []
        try:
            if settings.sql_url:
                from sinks.sql import SqlSink

                chosen.append(SqlSink(settings.sql_url))
            if settings.webhook_url:
                from sinks.webhook import WebhookSink

                chosen.append(WebhookSink(settings.webhook_url, dead_letters=forward, alerts_topic=topics.alerts))
        except BaseException:
            for one in chosen:
                one.close()
            raise
        return chosen[0] if len(chosen) == 1 else FanOut(*chosen)

    try:
        sink = open_sinks()
    except BaseException:
        if dead_letters is not None:
            dead_letters.close()
        raise
    sources = topics.outputs if settings.sql_url else (topics.alerts,)
    return SinkRelay(bootstrap, topics, sink, sources=sources, lookup=lookup, tansu=tansu,
                     client_kwargs=client_kwargs, dead_letters=dead_letters, reopen=open_sinks)


def _dead_letter_producer(bootstrap: str, topics: Topics, group: str,
                          client_kwargs: Mapping[str, Any] | None,
                          encode: Callable[[DlqRecord], bytes] | None = None,
                          ) -> tuple[Sink, Callable[[DlqRecord], None]]:
    """A Kafka sink for the DLQ topic, and the webhook's ``dead_letters`` callback that logs each
    dead letter and hands it to that sink, waiting out back-pressure."""
    from sinks.kafka import KafkaSink

    extra: dict[str, Any] = dict(client_kwargs or {})
    if encode is not None:
        extra["encode"] = encode
    producer = KafkaSink(bootstrap, {DlqRecord: topics.dlq}, client_id=f"{group}-dead-letters", **extra)

    def forward(record: DlqRecord) -> None:
        log.warning("webhook gave up on an alert of lead %s (%s); dead letter to %s",
                    (record.key or b"").decode("utf-8", "replace"), record.detail, topics.dlq)
        deliver(producer, record)

    return producer, forward
