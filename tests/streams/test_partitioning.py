"""streams.partitioning: a producer that partitions unlike Kafka's Java client is named once."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from kafka import KafkaProducer

from streams.app import partition_for
from streams.partitioning import OTHERS, PlacementWatch
from tests.streams.test_worker import QUICK_POLICY, deployment  # noqa: F401 - a fixture


def crc32_partition(lead_id: str, partitions: int) -> int:
    """librdkafka's default (``consistent_random``): CRC32 of the key."""
    import zlib

    return zlib.crc32(lead_id.encode()) % partitions


def test_a_crc32_producer_is_named_once_and_a_murmur2_producer_never() -> None:
    watch = PlacementWatch()
    notes = []
    for i in range(1000):
        lead = f"lead-{i}"
        for source, partition in (("go-crm", crc32_partition(lead, 12)), ("java-forms", partition_for(lead, 12))):
            note = watch.observe(source, partition != partition_for(lead, 12))
            if note is not None:
                notes.append(note)
    assert len(notes) == 1
    assert notes[0].startswith("source 'go-crm': ") and "murmur2_random" in notes[0]
    seen, misplaced = watch.counts["go-crm"]
    assert seen == 1000 and 0.85 < misplaced / seen < 0.95       # (N-1)/N of them, N = 12
    assert watch.counts["java-forms"] == [1000, 0]


def test_a_few_misplaced_events_are_no_warning() -> None:
    watch = PlacementWatch(min_events=100)
    assert all(watch.observe("crm", True) is None for _ in range(99))          # too few to judge
    assert watch.observe("crm", True) is not None
    calm = PlacementWatch()
    assert all(calm.observe("mixed", i % 3 == 0) is None for i in range(10_000))  # a third: not most


def test_sources_from_the_data_are_bounded() -> None:
    watch = PlacementWatch(min_events=1, max_sources=3)
    notes = [watch.observe(f"s{i}\x1b[31m", True) for i in range(10)]
    assert len(watch.counts) == 4 and watch.counts[OTHERS] == [7, 7]
    assert sum(note is not None for note in notes) == 4
    assert all("\x1b" not in note for note in notes if note)                   # shown with repr()


@pytest.mark.kafka
def test_the_worker_names_a_misplacing_producer_once_in_its_log(
        deployment: Callable[..., Any], bootstrap: str) -> None:
    topics, _, make_worker = deployment(QUICK_POLICY)
    worker = make_worker("w1")
    worker.wait_ready()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
    for i in range(150):
        lead = f"P{i}"
        body = {"event_id": f"e{i}", "event_type": "email_engagement", "lead_id": lead, "occurred_at": now,
                "action": "open", "source": "go-crm"}
        producer.send(topics.email_engagement, key=lead.encode(), value=json.dumps(body).encode(),
                      partition=crc32_partition(lead, 4))
    producer.flush(10)
    producer.close(5)
    deadline = time.monotonic() + 30
    while "source 'go-crm'" not in worker.tail(100_000) and time.monotonic() < deadline:
        time.sleep(0.3)
    log = worker.tail(100_000)
    assert log.count("source 'go-crm'") == 1, log[-2000:]
