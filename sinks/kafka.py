"""Kafka sink: each record as its ``record_json`` value, keyed by ``record_key``, to its type's topic.

kafka-python producer with ``acks="all"`` (a record counts as written once every in-sync replica has
it; ``acks=0`` is refused). ``add`` is asynchronous; when the producer's buffer is full ``send`` would
block, so ``max_block_ms`` is short and the timeout becomes ``SinkFull``. ``flush`` waits for every
send. A record Kafka refuses for what it is (larger than ``max_request_size`` or the broker's limit,
an invalid or corrupt record) is raised as ``RecordRejected``; any other failure (broker down or
unreachable, timeouts, leadership changes) as ``StoreUnavailable``, keeping the failed records:
the next ``flush`` sends them again. Record types absent from ``topics`` are skipped (an
alerts-only sink maps only ``AlertRecord``). ``encode`` turns a record into its value (default: the
JSON wire form; the worker passes its ``LEADFLOW_FORMAT`` encoder).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lifecycle.records import AlertRecord, DlqRecord, LifecycleRecord, Record, RecordType, record_key
from schemas.wire import record_json
from sinks.base import Position, RecordRejected, Rejection, Sink, SinkClosed, SinkFull, StoreUnavailable

DEFAULT_TOPICS: Mapping[RecordType, str] = {
    LifecycleRecord: "lead.lifecycle",
    AlertRecord: "lead.alerts",
    DlqRecord: "lead.dlq",
}


def record_fault(exc: BaseException) -> bool:
    """True when Kafka refuses the record itself (too large, invalid, corrupt): sending it again
    can never work. Everything else is the broker's or the network's: retry."""
    from kafka import errors

    return isinstance(exc, (errors.MessageSizeTooLargeError, errors.InvalidRecordError,
                            errors.CorruptRecordError, errors.RecordListTooLargeError))


class KafkaSink(Sink):
    def __init__(self, bootstrap: str, topics: Mapping[RecordType, str] = DEFAULT_TOPICS, *,
                 acks: str | int = "all", linger_ms: int = 5, max_block_ms: int = 200,
                 client_id: str = "leadflow-sink", encode: Callable[[Record], bytes] = record_json,
                 **producer_config: Any) -> None:
        if acks in (0, "0"):
            raise ValueError("acks=0 loses records silently; use acks='all'")
        self.bootstrap = bootstrap
        self.topics = dict(topics)
        self.max_block_ms = max_block_ms
        self.encode = encode
        self._config = dict(bootstrap_servers=bootstrap, acks=acks, linger_ms=linger_ms,
                            max_block_ms=max_block_ms, client_id=client_id, **producer_config)
        self._producer: Any = self._connect()
        self._futures: list[tuple[Record, Position | None, Any]] = []
        #: records a failed flush did not write; the next flush sends them again
        self._unsent: list[tuple[Record, Position | None]] = []
        self._rejected: list[Rejection] = []
        self.closed = False

    def _connect(self) -> Any:
        from kafka import KafkaProducer

        try:
            return KafkaProducer(**self._config)
        except Exception as exc:
            raise StoreUnavailable(f"cannot connect a producer to {self.bootstrap}: {exc}") from exc

    def add(self, record: Record, position: Position | None = None) -> None:
        if self.closed:
            raise SinkClosed("add on a closed KafkaSink")
        topic = self.topics.get(type(record))
        if topic is None:
            return
        key = record_key(record)
        from kafka.errors import KafkaTimeoutError

        if self._producer is None:
            try:
                self._producer = self._connect()
            except StoreUnavailable:
                self._unsent.append((record, position))   # the next flush says so
                return
        try:
            future = self._producer.send(topic, key=key.encode() if key is not None else None,
                                         value=self.encode(record))
        except KafkaTimeoutError as exc:
            raise SinkFull(self.max_block_ms / 1000, f"producer buffer full or no metadata for {topic}") from exc
        except Exception as exc:  # noqa: BLE001 - classified: the record's fault, or kept for the flush
            if record_fault(exc):
                self._rejected.append(Rejection(record, position, f"{type(exc).__name__}: {exc}"))
            else:
                self._unsent.append((record, position))
            return
        self._futures.append((record, position, future))

    def flush(self) -> None:
        """Wait for every record added: ``RecordRejected`` for those Kafka refuses,
        ``StoreUnavailable`` if others were not written. Those are kept and sent again by the next
        ``flush``, so a caller that retries a failed flush loses nothing."""
        if self.closed:
            raise SinkClosed("flush on a closed KafkaSink")
        if self._producer is None and (self._unsent or self._futures):
            self._producer = self._connect()     # StoreUnavailable: everything stays queued
        while self._unsent:
            record, position = self._unsent[0]
            self.add(record, position)   # SinkFull leaves the rest queued for the next try
            del self._unsent[0]
        if self._producer is not None:
            self._producer.flush()
        futures, self._futures = self._futures, []
        failed = []
        for record, position, future in futures:
            if not future.failed():
                continue
            if record_fault(future.exception):
                self._rejected.append(Rejection(record, position, f"{type(future.exception).__name__}: "
                                                                 f"{future.exception}"))
            else:
                failed.append((record, position, future.exception))
        if failed:
            self._unsent.extend((record, position) for record, position, _ in failed)
            exc = failed[0][2]
            # kafka-python can leave a partition muted for good after it expired a batch in flight
            # (seen against a broker that came back): the retry goes through a new producer, made
            # when next needed (the broker may still be away now).
            self._producer.close(timeout=0)
            self._producer = None
            raise StoreUnavailable(f"{len(failed)} of {len(futures)} records not written to {self.bootstrap} "
                                   f"(kept for the next flush): {exc}") from exc
        if self._rejected:
            rejected, self._rejected = self._rejected, []
            raise RecordRejected(rejected)

    def _release(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)

    def __repr__(self) -> str:
        names = ", ".join(f"{t.__name__}->{n}" for t, n in self.topics.items())
        return f"KafkaSink({self.bootstrap!r}, {{{names}}})"
