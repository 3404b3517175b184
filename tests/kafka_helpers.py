"""Plain kafka-python helpers for integration tests: write records, read them back by counting.

Reading uses ``assign()`` (no consumer group: no join delay, no shared offsets between tests) and
counts records: Tansu's ListOffsets(latest) is wrong for multi-record batches, so ``end_offsets()``
is never trusted here.

Touching an unknown topic makes Tansu auto-create it with 4 partitions: create topics first
(``streams.topics.ensure_topics``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

__all__ = ["ConsumerRecord", "consume_all", "decode_json", "produce", "to_bytes"]


def to_bytes(value: Any) -> bytes | None:
    """``None`` stays ``None`` (a tombstone / no key); str is UTF-8; dict/list is JSON; bytes pass."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return json.dumps(value, separators=(",", ":")).encode()


def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[Any, Any]],
    *,
    partition: int | None = None,
    linger_ms: int = 5,
) -> int:
    """Send ``(key, value)`` pairs (bytes, str, or JSON-able) with acks=all; return how many were sent.

    Keys are partitioned by kafka-python's murmur2 partitioner, the same as aiokafka's and faust's.
    """
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=linger_ms,
                             client_id="leadflow-test-producer")
    try:
        futures = [producer.send(topic, key=to_bytes(k), value=to_bytes(v), partition=partition)
                   for k, v in records]
        producer.flush(timeout=30)
        for f in futures:
            f.get(timeout=30)          # raise on any failed send
        return len(futures)
    finally:
        producer.close(timeout=5)


def consume_all(
    bootstrap: str,
    topic: str,
    expected_count: int | None = None,
    timeout: float = 15.0,
    *,
    idle: float = 0.5,
    settle: float = 0.0,
) -> list[ConsumerRecord]:
    """Every record of ``topic`` from the beginning of all its partitions.

    Stops as soon as ``expected_count`` records are read (then keeps polling ``settle`` seconds
    more, to catch extras), or at ``timeout``. With ``expected_count=None`` it stops once nothing has
    arrived for ``idle`` seconds. Never raises on a short count: the caller asserts on ``len()``.
    Records come sorted by (partition, offset).
    """
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", client_id="leadflow-test-consumer",
                             fetch_max_wait_ms=100)
    records: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + timeout
        partitions = None
        while partitions is None and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                time.sleep(0.05)
        if not partitions:
            return records
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        last_arrival = time.monotonic()
        settle_until: float | None = None
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            if expected_count is not None and len(records) >= expected_count:
                if settle_until is None:
                    settle_until = now + settle
                if now >= settle_until:
                    break
            if expected_count is None and now - last_arrival >= idle:
                break
            batch = consumer.poll(timeout_ms=100)
            for recs in batch.values():
                records.extend(recs)
            if batch:
                last_arrival = time.monotonic()
        records.sort(key=lambda r: (r.partition, r.offset))
        return records
    finally:
        consumer.close()


def decode_json(records: Iterable[ConsumerRecord]) -> list[Any]:
    """The JSON values of ``records``."""
    return [json.loads(r.value) for r in records]
