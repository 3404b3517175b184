"""Kafka sink: each record as its ``record_json`` value, keyed by ``record_key``, to its type's topic.

kafka-python producer with ``acks="all"`` (a record counts as written once every in-sync replica has
it; ``acks=0`` is refused). ``add`` is asynchronous; when the producer's buffer is full ``send`` would
block, so ``max_block_ms`` is short and the timeout becomes ``SinkFull``. ``flush`` waits for every
send and raises ``SinkError`` for the first one that failed, keeping the failed records for the next
``flush``. Record types absent from ``topics`` are
skipped (an alerts-only sink maps only ``AlertRecord``). ``encode`` turns a record into its value
(default: the JSON wire form; the worker passes its ``LEADFLOW_FORMAT`` encoder).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lifecycle.records import AlertRecord, DlqRecord, LifecycleRecord, Record, RecordType, record_key
from schemas.wire import record_json
from sinks.base import Sink, SinkClosed, SinkError, SinkFull

DEFAULT_TOPICS: Mapping[RecordType, str] = {
    LifecycleRecord: "lead.lifecycle",
    AlertRecord: "lead.alerts",
    DlqRecord: "lead.dlq",
}


def topics_of(topics: Any) -> dict[RecordType, str]:
    """The mapping for a ``streams.topics.Topics`` settings object."""
    return {LifecycleRecord: topics.lifecycle, AlertRecord: topics.alerts, DlqRecord: topics.dlq}


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
        self._futures: list[tuple[Record, Any]] = []
        #: records a failed flush did not write; the next flush sends them again
        self._unsent: list[Record] = []
        self.closed = False

    def _connect(self) -> Any:
        from kafka import KafkaProducer

        try:
            return KafkaProducer(**self._config)
        except Exception as exc:
            raise SinkError(f"cannot connect a producer to {self.bootstrap}: {exc}") from exc

    def add(self, record: Record) -> None:
        if self.closed:
            raise SinkClosed("add on a closed KafkaSink")
        topic = self.topics.get(type(record))
        if topic is None:
            return
        key = record_key(record)
        from kafka.errors import KafkaTimeoutError

        if self._producer is None:
            self._producer = self._connect()
        try:
            future = self._producer.send(topic, key=key.encode() if key is not None else None,
                                         value=self.encode(record))
        except KafkaTimeoutError as exc:
            raise SinkFull(self.max_block_ms / 1000, f"producer buffer full or no metadata for {topic}") from exc
        self._futures.append((record, future))

    def flush(self) -> None:
        """Wait for every record added; ``SinkError`` if some were not written. Those are kept and
        sent again by the next ``flush``, so a caller that retries a failed flush loses nothing."""
        if self.closed:
            raise SinkClosed("flush on a closed KafkaSink")
        while self._unsent:
            self.add(self._unsent[0])   # SinkFull leaves the rest queued for the next try
            del self._unsent[0]
        if self._producer is None:
            return
        self._producer.flush()
        futures, self._futures = self._futures, []
        failed = [(record, f) for record, f in futures if f.failed()]
        if failed:
            self._unsent = [record for record, _ in failed]
            exc = failed[0][1].exception
            # kafka-python can leave a partition muted for good after it expired a batch in flight
            # (seen against a broker that came back): the retry goes through a new producer, made
            # when next needed (the broker may still be away now).
            self._producer.close(timeout=0)
            self._producer = None
            raise SinkError(f"{len(failed)} of {len(futures)} records not written (kept for the next "
                            f"flush): {exc}") from exc

    def _release(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)

    def __repr__(self) -> str:
        names = ", ".join(f"{t.__name__}->{n}" for t, n in self.topics.items())
        return f"KafkaSink({self.bootstrap!r}, {{{names}}})"
