"""The worker's bulk changelog read (``streams.recovery.BulkRecovery``) keeps recovery's guarantees.

Rows are written straight into the lead table's changelog, in an order a stalled worker could leave
them (a late, older version after a newer one; tombstones; a row after a tombstone), then a fresh
worker recovers them: through the bulk read (its log says so), the highest version of each lead wins,
a tombstone deletes, and every row up to the exact end is in before ``/health`` says ok. With a
RocksDB store (``--data-dir``) a restarted worker reads only what was written after its persisted
offset, and applies it by the same rules.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from lifecycle.application import Application, Row
from lifecycle.engine import Engine
from lifecycle.policy import Policy
from schemas import codec
from streams import rows
from streams.app import partition_for
from streams.topics import Topics, ensure_topics
from tests.streams.test_worker import QUICK_POLICY, deployment  # noqa: F401

FILLER = 3000  # other leads: the odd rows above are among thousands, as in a real changelog


def lead_row(lead_id: str, version: int) -> bytes:
    """A real row of a lead an email open created (no deadline: nothing fires), at ``version``."""
    app = Application(Engine(Policy()), consumes_rows=True)
    line = orjson.dumps({"event_id": f"{lead_id}-open", "event_type": "email_engagement", "lead_id": lead_id,
                         "occurred_at": "2026-01-05T10:00:00Z", "action": "open", "campaign_id": "c"})
    row: Row = app.on_event(rows.EMPTY, codec.decode(line), 1_767_607_200_000).row
    assert row.lead is not None and row.wake_at is None
    return rows.encode(dataclasses.replace(row, version=version))


def write(bootstrap: str, topic: str, records: list[tuple[str, bytes | None]]) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            futures = [await producer.send(topic, key=lead.encode(), value=value, partition=partition_for(lead, 4))
                       for lead, value in records]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()
    asyncio.run(run())


def version(worker: Any, lead_id: str) -> int | None:
    status, doc = worker.get(f"/leads/{lead_id}", timeout=5)
    if status == 404:
        return None
    assert status == 200, (status, doc)
    return doc["version"]


def bulk_reads(worker: Any) -> list[int]:
    return [int(n) for n in re.findall(r"changelog bulk read: (\d+) records", worker.tail(200_000))]


def test_a_bulk_recovery_keeps_the_newest_version_applies_tombstones_and_reads_to_the_end(
    deployment: Callable[..., Any], bootstrap: str, tmp_path: Any  # noqa: F811
) -> None:
    topics_, policy, make_worker = deployment(QUICK_POLICY)
    topics: Topics = topics_.with_tables("leads")
    ensure_topics(bootstrap, topics, 4)
    changelog = f"{topics.app_id}-leads-changelog"
    assert changelog in topics.changelogs
    first = [("A", lead_row("A", 1)), ("A", lead_row("A", 3)), ("A", lead_row("A", 2)),   # late, older
             ("B", lead_row("B", 2)), ("B", None),                                        # deleted
             ("C", lead_row("C", 4)), ("C", None), ("C", lead_row("C", 1)),               # re-created
             ("D", lead_row("D", 5))]
    filler = [(f"F{i}", lead_row(f"F{i}", 1 + i % 3)) for i in range(FILLER)]
    last = [("D", lead_row("D", 4)), ("Z", lead_row("Z", 7))]                             # at the very end
    write(bootstrap, changelog, first + filler + last)
    expected = {"A": 3, "B": None, "C": 1, "D": 5, "Z": 7, "F0": 1, "F1": 2, f"F{FILLER - 1}": 1 + (FILLER - 1) % 3}

    memory = make_worker("memory")
    memory.wait_ready(partitions=4)
    assert {lead: version(memory, lead) for lead in expected} == expected
    assert bulk_reads(memory) == [len(first) + len(filler) + len(last)], memory.tail()
    memory.stop()

    state = tmp_path / "state"
    rocks = make_worker("rocks", "--data-dir", str(state))
    rocks.wait_ready(partitions=4)
    assert {lead: version(rocks, lead) for lead in expected} == expected
    assert bulk_reads(rocks) == [len(first) + len(filler) + len(last)], rocks.tail()
    rocks.stop()

    later = [("A", lead_row("A", 2)), ("A", lead_row("A", 9)), ("D", None), ("E", lead_row("E", 1))]
    write(bootstrap, changelog, later)
    again = make_worker("rocks-again", "--data-dir", str(state))
    again.wait_ready(partitions=4)
    assert {lead: version(again, lead) for lead in expected | {"E": 1}} == expected | {"A": 9, "D": None, "E": 1}
    # from the persisted offsets on: the store records the last row it applied, so a stale row at
    # the end of a partition (D's version 4) is read once more
    reads = bulk_reads(again)
    assert len(reads) == 1 and len(later) <= reads[0] <= len(later) + 1, again.tail()
