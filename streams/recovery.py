"""Table recovery at the speed of a plain read of the changelog, inside faust's own recovery.

faust recovers an active table partition by resuming its changelog partition on the worker's
consumer and handing every record through a queue to ``Recovery._slurp_changelogs``, which awaits a
table hook and scans every partition's remaining count (``need_recovery()``) per record: ~5k
records/s with the event loop half idle, where a plain aiokafka consumer reads the same changelog at
~100-200k records/s (bench/worker_bench.py, part ``recovery``). 100k leads took ~20 s to recover.

:class:`BulkRecovery` keeps faust's recovery as it is (its offsets, its exact end offsets, its
standby replicas, its hand-over to the streams) and adds one step: once faust has decided where each
active changelog partition starts (its persisted offset, else the earliest) and where it ends (the
exact end: ``faust_patches.exact_end_offsets`` on Tansu), and before it seeks its consumer there,
each active partition is read with a plain aiokafka consumer of its own from that start up to that
end, and every batch is applied with ``table.apply_changelog_batch`` (the lead table keeps the
highest row version per lead, ``streams.ownership.newest_rows``; a tombstone deletes; a RocksDB
store records the offset it applied to). faust's own offsets then say the partition is recovered, so
``need_recovery()`` is false and faust goes straight on to complete the recovery: the partition is
served only once its rows are complete, as before.

What stays faust's: standby partitions (read by faust's consumer after the actives, as before);
whatever the bulk read did not reach within ``BULK_BUDGET`` seconds (it runs under faust's request
timeout, and a rebalance cancels it; the offsets say how far it applied, faust reads the rest); and
a table with a changelog hook of its own (``on_changelog_event``) gets it called per record here too.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

log = logging.getLogger("leadflow.worker")

#: Seconds the bulk read may take (at most half of ``broker_request_timeout``: faust runs this step
#: under that timeout, whose expiry would stop its recovery); the rest is left to faust's own path.
BULK_BUDGET = 45.0
#: Per partition and fetch: larger than aiokafka's 1 MiB default, fewer round trips.
FETCH_BYTES = 8 * 1024 * 1024


class BulkRecovery(Recovery):
    """faust's ``Recovery``, reading active changelog partitions in bulk before faust would."""

    bulk_budget: float = BULK_BUDGET

    async def _seek_offsets(self, consumer: Any, tps: Any, offsets: Any, title: str) -> None:
        if title == "active" and tps:
            await self.bulk_load(set(tps), offsets, self.active_highwaters)
        await super()._seek_offsets(consumer, tps, offsets, title)

    async def bulk_load(self, tps: set[TP], offsets: Any, highwaters: Any) -> int:
        """Apply each partition of ``tps`` from ``offsets[tp] + 1`` to ``highwaters[tp]`` (faust's
        "last offset applied" and "last offset there is", both inclusive), moving ``offsets`` as
        batches are applied. Returns the records applied."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        todo = {tp: (offsets[tp] + 1, highwaters[tp] + 1) for tp in tps
                if highwaters.get(tp) is not None and offsets.get(tp) is not None
                and highwaters[tp] > offsets[tp] and tp in self.tp_to_table}
        if not todo:
            return 0
        app = self.app
        conf = app.conf
        started = time.monotonic()
        auth = faust_aiokafka.credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context)
        reader = AIOKafkaConsumer(
            bootstrap_servers=faust_aiokafka.server_list(conf.broker, 9092), group_id=None,
            enable_auto_commit=False, fetch_max_wait_ms=50, max_partition_fetch_bytes=FETCH_BYTES,
            isolation_level="read_committed" if app.in_transaction else "read_uncommitted", **auth)
        to_message = app.consumer._to_message
        applied = 0
        try:
            await reader.start()
            keyed = {TopicPartition(tp.topic, tp.partition): tp for tp in todo}
            reader.assign(list(keyed))
            for ktp, tp in keyed.items():
                reader.seek(ktp, todo[tp][0])
            waiting = set(keyed)
            budget = min(self.bulk_budget, float(conf.broker_request_timeout) / 2)
            deadline = started + budget
            while waiting and time.monotonic() < deadline:
                batches = await reader.getmany(*waiting, timeout_ms=200)
                by_table: dict[Any, list[Any]] = defaultdict(list)
                for ktp, records in batches.items():
                    if not records:
                        continue
                    tp = keyed[ktp]
                    table = self.tp_to_table[tp]
                    decode = table.changelog_topic.decode
                    events = by_table[table]
                    for record in records:
                        event = await decode(to_message(tp, record), propagate=True)
                        await table.on_changelog_event(event)
                        events.append(event)
                for table, events in by_table.items():
                    table.apply_changelog_batch(events)
                    applied += len(events)
                for ktp, records in batches.items():
                    if records:  # faust's offsets: the last one applied (what its seek and
                        tp = keyed[ktp]  # need_recovery() read)
                        offsets[tp] = max(offsets[tp], records[-1].offset)
                for ktp in list(waiting):
                    # the position passes offsets that hold no record (transaction markers) too
                    if await reader.position(ktp) >= todo[keyed[ktp]][1]:
                        waiting.discard(ktp)
                        reader.pause(ktp)
            if waiting:
                log.warning("changelog bulk read stopped after %.0f s short of the end of %s: faust "
                            "reads the rest", budget, sorted(f"{k.topic}/{k.partition}" for k in waiting))
        finally:
            await reader.stop()
        log.info("changelog bulk read: %d records of %d partitions applied in %.2f s", applied, len(todo),
                 time.monotonic() - started)
        return applied


class LeadflowTableManager(TableManager):
    """faust's table manager with :class:`BulkRecovery` (faust setting ``TableManager``)."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = BulkRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
