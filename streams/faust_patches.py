"""faust, adjusted for leadflow's guarantees: every subclass and private attribute we rely on, in one place.

- ``Transport`` makes the worker's consumer fetch with short waits (timer commands must not wait
  faust's hard-coded 1.5 s), positions partitions nobody committed at their beginning
  (``seek_to_committed``), reads exact end offsets from a broker whose ListOffsets is a batch short
  (``exact_end_offsets``, Tansu), and gives its producer a buffer whose ``flush()`` returns only once
  every table write before it is acknowledged (``DurableBuffer``), so a commit never covers a lost
  write.
- The same transport tells the worker's ``streams.ownership.Ownership`` (``Transport.ownership``)
  about its group membership: every heartbeat or SyncGroup that succeeds (``watch_membership``),
  every revocation and assignment (``GuardedRebalanceListener``); ``forget`` gives up a message
  without acknowledging it.
- Its consumer applies each source partition in log order and commits only what was applied
  (``streams.ownership.Frontier``: the fetched offsets, ``ReadOffsets``, the capped ``_new_offset``).
- ``committed_offset`` / ``paused_partitions`` read faust's private consumer state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from faust.exceptions import ProducerSendError
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.producer import ProducerBuffer
from faust.types import TP

from streams.ownership import EARLY, NEXT, Frontier, Ownership

log = logging.getLogger("leadflow.worker")

#: Consumer fetch long-poll, ms. faust hard-codes 1500 ms; a timer command must not wait that long.
FETCH_MAX_WAIT_MS = 100


def committed_offset(consumer: Any, topic: str, partition: int) -> int | None:
    """The next offset to consume of ``topic/partition`` as committed by this worker, or None.

    faust keeps it in the private ``Consumer._committed_offset``; the one place that reads it.
    """
    try:
        return consumer._committed_offset.get(TP(topic, partition))
    except Exception:  # noqa: BLE001 - no consumer yet, or faust changed: keep the entry
        return None


def forget(consumer: Any, message: Any) -> None:
    """Give ``message`` up without acknowledging its offset to ``consumer`` (faust's).

    faust acknowledges a stream's event when the agent asks for the next one, and an acknowledged
    offset may be committed later, even after this worker got the partition back. A message this
    worker did not process must never be committed by it: it is marked acked here (faust's own ack
    is then a no-op) and taken off the consumer's messages in flight (private
    ``Consumer._unacked_messages``, which a revocation waits to empty).
    """
    message.acked = True
    try:
        consumer._unacked_messages.discard(message)
    except Exception:  # noqa: BLE001 - no consumer, or faust changed: cleaned up as acked anyway
        pass


def paused_partitions(consumer: Any) -> set[TP]:
    """Partitions faust holds paused (private ``Consumer._paused_partitions``), for /health."""
    try:
        return set(consumer._paused_partitions)
    except Exception:  # noqa: BLE001
        return set()


# -- faust plumbing: shorter fetch waits, recovery hooks -------------------------------------------

class _FastFetchThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS   # read by AIOKafkaConsumer.start()
        return consumer

    async def on_start(self) -> None:
        await super().on_start()
        ownership = getattr(self.transport, "ownership", None)
        if ownership is not None:
            watch_membership(self._consumer, ownership)

    async def seek_to_committed(self) -> Any:
        return await self.call_thread(self._seek_to_committed)

    async def _seek_to_committed(self) -> Any:
        return await seek_to_committed(self._ensure_consumer(), skip=self.app.tables.changelog_topics)

    async def _highwaters(self, partitions: list[TP]) -> Any:
        """End offsets; exact ones on a broker whose ListOffsets is not (``Transport.exact_ends``)."""
        ends = await super()._highwaters(partitions)
        if not getattr(self.transport, "exact_ends", False):
            return ends
        conf = self.app.conf
        auth = faust_aiokafka.credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context)
        return await exact_end_offsets(faust_aiokafka.server_list(conf.broker, 9092), ends, **auth)


async def seek_to_committed(consumer: Any, skip: Iterable[str] = ()) -> dict[Any, int | None]:
    """Every assigned partition to its committed offset, and to the beginning when it has none
    (topics in ``skip`` excepted: table changelogs, which faust positions itself).

    aiokafka's ``seek_to_committed`` leaves a partition without a committed offset (or with 0)
    where its fetcher happens to be. faust calls it after a recovery, and during that recovery the
    fetcher may already have read (and faust dropped) records of the newly assigned partitions: a
    partition its previous owner never committed then skipped them for good (seen when a worker
    died within its first commit interval). ``consumer_auto_offset_reset`` is ``earliest``, so the
    beginning is where such a partition starts.
    """
    committed = await consumer.seek_to_committed()
    skipped = set(skip)
    fresh = [tp for tp, offset in committed.items() if not offset and tp.topic not in skipped]
    if fresh:
        await consumer.seek_to_beginning(*fresh)
    return committed


async def exact_end_offsets(servers: list[str], ends: dict[TP, int], **client: Any) -> dict[TP, int]:
    """Correct end offsets from a broker that answers ListOffsets(latest) with the first offset of
    the partition's last *batch* + 1 (Tansu, BROKER.md), by reading that last batch.

    faust recovers a table by reading its changelog up to these offsets: taken as they come, a
    crashed worker's successor stopped short of the last updates. Fetching from ``end - 1`` returns
    the whole last batch, whose last record gives the true end. One fetch per non-empty partition,
    at recovery only, so faust's producer keeps batching (no ``producer_max_batch_size=1``).
    ``servers``: ``host:port`` strings; ``client``: the worker's own security settings (aiokafka
    keyword arguments), so a Tansu behind TLS is read the same way.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    todo = {tp: end for tp, end in ends.items() if end}
    if not todo:
        return dict(ends)
    reader = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False, group_id=None,
                              fetch_max_wait_ms=50, **client)
    exact = dict(ends)
    try:
        await reader.start()
        keyed = {TopicPartition(tp.topic, tp.partition): tp for tp in todo}
        reader.assign(list(keyed))
        for ktp, tp in keyed.items():
            reader.seek(ktp, todo[tp] - 1)
        waiting = set(keyed)
        deadline = time.monotonic() + 10.0
        while waiting and time.monotonic() < deadline:
            batches = await reader.getmany(*waiting, timeout_ms=200)
            for ktp, records in batches.items():
                if records:
                    tp = keyed[ktp]
                    exact[tp] = max(exact[tp], records[-1].offset + 1)
                    waiting.discard(ktp)
                    reader.pause(ktp)
        if waiting:  # nothing readable there (deleted meanwhile?): keep what the broker said
            log.warning("cannot read the last batch of %s; using the broker's end offsets",
                        sorted(map(str, waiting)))
    finally:
        await reader.stop()
    return exact


#: Kafka API keys of the requests whose success proves the membership when they were sent.
HEARTBEAT, SYNC_GROUP = 12, 14


def watch_membership(consumer: Any, ownership: Ownership) -> None:
    """Renew ``ownership``'s lease whenever a heartbeat or a SyncGroup of ``consumer`` (an
    AIOKafkaConsumer) succeeds, from the moment the request was sent.

    A broker restarts a member's session timer when it receives either, so a lease counted from the
    send ends before the broker's timer does. REBALANCE_IN_PROGRESS (which aiokafka's heartbeat
    treats as success) and every other error renew nothing. Wraps the private
    ``GroupCoordinator._send_req`` of this consumer only.
    """
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is None or getattr(coordinator, "_leadflow_watched", False):
        return
    send = coordinator._send_req

    async def send_req(request: Any) -> Any:
        if getattr(request, "API_KEY", None) not in (HEARTBEAT, SYNC_GROUP):
            return await send(request)
        generation, sent_at = coordinator.generation, time.monotonic()
        response = await send(request)
        if getattr(response, "error_code", None) == 0:
            ownership.renew(generation, sent_at)
        return response

    coordinator._send_req = send_req
    coordinator._leadflow_watched = True


class GuardedRebalanceListener(faust_aiokafka.ConsumerRebalanceListener):
    """faust's rebalance listener, telling ``Transport.ownership`` first: a revocation stops every
    write before faust starts its own revocation work; an assignment names its generation."""

    def _ownership(self) -> Ownership | None:
        return getattr(self._thread.transport, "ownership", None)

    def on_partitions_revoked(self, revoked: Any) -> Any:
        ownership = self._ownership()
        if ownership is not None:
            try:  # aiokafka resets the generation when the broker no longer knows the member
                lost = self._thread._ensure_consumer()._coordinator.generation < 0
            except Exception:  # noqa: BLE001
                lost = False
            ownership.on_revoke(membership_lost=lost)
        return super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        ownership = self._ownership()
        if ownership is not None:
            ownership.on_assign(self._thread._ensure_consumer()._coordinator.generation)
        await super().on_partitions_assigned(assigned)


class ReadOffsets(dict):
    """faust's ``Consumer._read_offset`` (the last offset its fetch loop handed on, per partition; it
    drops any fetched record below it), never above a partition's *floor* while that partition is
    read again from an earlier offset (``Frontier.floor``).

    After a seek back, faust's fetch loop still finishes the batch it was handing on, and sets the
    read offset to each of those later records: the re-fetched records then fell below it and were
    dropped unseen. The floor goes once the agent has applied the record at it.
    """

    def __init__(self, floor: Callable[[Any], int | None]) -> None:
        super().__init__()
        self._floor = floor

    def __missing__(self, tp: Any) -> None:  # as faust's defaultdict(lambda: None)
        return None

    def __setitem__(self, tp: Any, offset: int | None) -> None:
        floor = self._floor(tp)
        if floor is not None and offset is not None and offset > floor:
            offset = floor
        super().__setitem__(tp, offset)


class _FastFetchConsumer(faust_aiokafka.Consumer):
    """faust's consumer, applying each source partition in log order and committing only what was
    applied (``streams.ownership.Frontier``; the agent calls :meth:`in_order` and :meth:`applied`).

    faust's own acknowledgements are not enough: its compiled stream iterator acknowledges inline,
    without calling ``Consumer.ack``, and its commit rule accepts a gap of one record after the
    committed offset. So every commit is capped at the frontier (:meth:`_new_offset`)."""

    RebalanceListener = GuardedRebalanceListener

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frontier = Frontier()
        self._read_offset = ReadOffsets(self.frontier.floor)
        #: partitions read again from their frontier so far
        self.rewinds = 0

    @property
    def frontier_topics(self) -> frozenset[str]:
        """The topics whose partitions the frontier follows: the agent's sources (``Transport``)."""
        return getattr(self.transport, "frontier_topics", frozenset())

    async def _getmany(self, active_partitions: Any, timeout: float) -> Any:
        epoch = self.frontier.epoch
        records = await super()._getmany(active_partitions, timeout)
        if records and epoch == self.frontier.epoch:  # else fetched (partly) before a seek: not facts
            fetched = self.frontier.fetched
            for tp, batch in records.items():
                fetched(tp, [record.offset for record in batch])
        return records

    async def perform_seek(self) -> None:
        """faust's seek of every partition to its committed offset (after each rebalance): the
        frontier of each source partition starts there."""
        await super().perform_seek()
        committed = self._committed_offset
        for tp in self.assignment():
            if tp.topic in self.frontier_topics:
                self.frontier.start(tp, committed.get(tp))

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        self.frontier.stop(revoked)
        await super().on_partitions_revoked(revoked)

    def _new_offset(self, tp: TP) -> int | None:
        """faust's next offset to commit for ``tp``, capped at the frontier. The offsets faust would
        have committed above the cap go back on its list, to count once the frontier has passed them."""
        offset = super()._new_offset(tp)
        if offset is None or tp.topic not in self.frontier_topics:
            return offset
        capped = self.frontier.cap(tp, offset)
        if capped == offset:
            return offset
        if capped is None:
            return None
        # faust took them off its list; the frontier's own record counts as one: the cap stops there
        acked, index = self._acked[tp], self._acked_index[tp]
        back = [o for o in range(capped, offset) if o not in index]
        acked.extend(back)
        acked.sort()
        index.update(back)
        committed = self._committed_offset.get(tp)
        return None if committed is not None and capped <= committed else capped

    async def in_order(self, message: Any) -> bool:
        """Whether ``message`` is the next record of its partition to apply. If not, it is given up
        (never acknowledged): applied already, or early, in which case the partition is read again
        from the frontier."""
        tp = message.tp
        verdict = self.frontier.verdict(tp, message.offset)
        if verdict == NEXT:
            return True
        forget(self, message)
        if verdict == EARLY:
            await self.rewind(tp)
        return False

    def applied(self, message: Any) -> None:
        self.frontier.applied(message.tp, message.offset)

    async def rewind(self, tp: TP, again: bool = False) -> bool:
        """Read ``tp`` again from its frontier: at most once per position per
        ``ownership.REWIND_AGAIN`` unless ``again`` (the stall watchdog's call)."""
        position = self.frontier.rewind(tp, time.monotonic(), again)
        if position is None:
            return False
        self.rewinds += 1
        if self.rewinds == 1 or self.rewinds % 100 == 0:
            log.info("%s/%s read again from %s (an earlier record was not applied yet; %d so far)",
                     tp.topic, tp.partition, position, self.rewinds)
        await self.seek(tp, position)  # faust's read offset goes to the floor the frontier now holds
        return True

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _FastFetchThread(self, loop=self.loop, beacon=self.beacon)


class DurableBuffer(ProducerBuffer):
    """faust's producer buffer (table changelog writes go through it), with a ``flush()`` that
    returns only once every message put into it before the call has been acknowledged by the broker.

    faust commits source offsets right after ``producer.flush()``, whose buffer part gives up as
    soon as one message takes longer than 0.1 s to hand over (``ProducerBuffer.flush_atmost``) and
    ignores the message being handed over. Under load the offset of an event was committed while
    the changelog write of the lead it changed was still in this buffer: a SIGKILL then lost that
    state for good (issue 3). Here the commit waits for the writes it covers.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        self.unacked: set[asyncio.Future[Any]] = set()

    def put(self, fut: Any) -> None:
        self.unacked.add(fut)
        fut.add_done_callback(self.unacked.discard)
        super().put(fut)

    async def flush(self) -> None:
        """Wait for the writes put before this call (later ones belong to later commits); raise
        ``ProducerSendError`` if one failed or can no longer be sent, so nothing is committed."""
        pending = set(self.unacked)
        await super().flush()
        while True:
            waiting = {fut for fut in pending if not fut.done()}
            if not waiting:
                break
            if self.should_stop:
                raise ProducerSendError(f"{len(waiting)} table writes unacknowledged at stop")
            await asyncio.wait(waiting, timeout=1.0)
        failed = [fut for fut in pending if fut.cancelled() or fut.exception() is not None]
        if failed:
            first = failed[0]
            reason = "cancelled" if first.cancelled() else repr(first.exception())
            raise ProducerSendError(f"{len(failed)} of {len(pending)} table writes failed: {reason}")


class _DurableProducer(faust_aiokafka.Producer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        threaded = getattr(self.buffer, "threaded_producer", None)
        self.buffer = DurableBuffer(loop=self.loop, beacon=self.beacon)
        self.buffer.app = self.app
        if threaded is not None:
            self.buffer.threaded_producer = threaded


class Transport(faust_aiokafka.Transport):
    Consumer = _FastFetchConsumer
    Producer = _DurableProducer
    #: correct ListOffsets(latest) by reading the last batch (set for Tansu only)
    exact_ends: bool = False
    #: told about heartbeats and rebalances; decides what the worker may write (set by build_app)
    ownership: Ownership | None = None
    #: the topics the agent applies in log order (``_FastFetchConsumer.frontier``; set by build_app)
    frontier_topics: frozenset[str] = frozenset()
