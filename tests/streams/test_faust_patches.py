"""faust, adjusted (``streams.faust_patches``): a commit never overtakes the table writes it covers,
uncommitted partitions start at their beginning, and recovery reads Tansu's changelogs to their
true end.

faust commits a source offset right after ``producer.flush()``. faust's own buffer flush returns
once a message takes longer than 0.1 s to hand over, so a slow broker let an offset be committed
while the changelog write of the state it produced was still buffered; a SIGKILL then lost it.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import faust
from faust.exceptions import ProducerSendError
from faust.types.tuples import FutureMessage, PendingMessage

from streams.faust_patches import DurableBuffer
from streams.topics import ensure_topics
from tests.kafka_helpers import produce


class _Channel:
    """Where the buffer hands a message over; the test plays the broker and acknowledges later."""

    async def publish_message(self, fut: FutureMessage, wait: bool = False) -> None:
        return None


def _message() -> FutureMessage:
    pending = PendingMessage(channel=_Channel(), key=b"k", value=b"v", partition=0, timestamp=None,
                             headers=None, key_serializer=None, value_serializer=None,
                             callback=None)
    return FutureMessage(pending)


#: Bound on every scenario: a regression must fail, never hang the suite.
DEADLINE = 10.0


async def _started(name: str) -> DurableBuffer:
    buffer = DurableBuffer()
    buffer.app = faust.App(name, autodiscover=False)
    await buffer.start()
    return buffer


def test_flush_returns_only_after_every_buffered_write_is_acknowledged() -> None:
    async def scenario() -> list[str]:
        buffer = await _started("durable-flush-1")
        slow, fast = _message(), _message()
        buffer.put(slow)
        buffer.put(fast)
        order: list[str] = []
        loop = asyncio.get_running_loop()
        # the "broker" acknowledges well after faust's 0.1 s give-up point
        loop.call_later(0.05, lambda: (order.append("ack fast"), fast.set_result(None)))
        loop.call_later(0.35, lambda: (order.append("ack slow"), slow.set_result(None)))
        await buffer.flush()
        order.append("flushed")
        assert not buffer.unacked
        await buffer.stop()
        return order

    assert asyncio.run(asyncio.wait_for(scenario(), DEADLINE)) == ["ack fast", "ack slow", "flushed"]


def test_writes_put_after_the_flush_began_belong_to_a_later_commit() -> None:
    """Under steady load a flush that waited for every later write too might never return."""
    async def scenario() -> tuple[bool, bool]:
        buffer = await _started("durable-flush-2")
        before = _message()
        buffer.put(before)
        later = _message()
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, buffer.put, later)            # arrives while the flush waits
        loop.call_later(0.2, before.set_result, None)
        await buffer.flush()
        outcome = before.done(), later.done()
        later.set_result(None)
        await buffer.stop()
        return outcome

    assert asyncio.run(asyncio.wait_for(scenario(), DEADLINE)) == (True, False)


def test_a_failed_write_fails_the_flush_so_nothing_is_committed() -> None:
    """faust commits right after a successful flush; a lost table write must stop that commit."""
    async def scenario() -> str:
        buffer = await _started("durable-flush-3")
        ok, lost = _message(), _message()
        buffer.put(ok)
        buffer.put(lost)
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, ok.set_result, None)
        loop.call_later(0.2, lost.set_exception, RuntimeError("broker down"))
        try:
            await buffer.flush()
        except ProducerSendError as error:
            message = str(error)
        else:
            message = "flush returned"
        assert not buffer.unacked
        await buffer.stop()
        return message

    message = asyncio.run(asyncio.wait_for(scenario(), DEADLINE))
    assert message.startswith("1 of 2 table writes failed") and "broker down" in message


def test_exact_end_offsets_correct_tansus_listoffsets(bootstrap: str, unique_name) -> None:
    """Tansu answers ListOffsets(latest) with the last batch's first offset + 1; faust's changelog
    recovery trusts that end, so the worker reads the last batch to get the true one."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from faust.types import TP

    from streams.faust_patches import exact_end_offsets

    name = unique_name("ends")
    ensure_topics(bootstrap, [name], 2)

    async def scenario() -> tuple[dict, dict]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=50, acks="all")
        await producer.start()
        try:  # partition 0: one batch of 25 records; partition 1: nothing
            sent = [await producer.send(name, b"x%d" % i, partition=0) for i in range(25)]
            await asyncio.gather(*sent)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            listed = await consumer.end_offsets([TopicPartition(name, 0), TopicPartition(name, 1)])
        finally:
            await consumer.stop()
        reported = {TP(tp.topic, tp.partition): end for tp, end in listed.items()}
        exact = await exact_end_offsets([bootstrap], reported)
        return reported, exact

    reported, exact = asyncio.run(scenario())
    # the quirk itself (if a Tansu release fixes ListOffsets, this line says the correction can go)
    assert reported[TP(name, 0)] < 25          # one batch: the reported end is 1
    assert exact == {TP(name, 0): 25, TP(name, 1): 0}


def test_seek_to_committed_sends_uncommitted_partitions_back_to_the_beginning(
    bootstrap: str, unique_name
) -> None:
    """faust re-positions a new owner's partitions with this after recovery; aiokafka alone leaves a
    partition without a committed offset wherever its fetcher already read to."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.structs import OffsetAndMetadata

    from streams.faust_patches import seek_to_committed

    source, changelog = unique_name("src"), unique_name("changelog")
    ensure_topics(bootstrap, [source, changelog], 2)
    for topic in (source, changelog):
        produce(bootstrap, topic, [(None, {"i": i}) for i in range(10)], partition=0)
        produce(bootstrap, topic, [(None, {"i": i}) for i in range(10)], partition=1)
    fresh, done, log0 = TopicPartition(source, 0), TopicPartition(source, 1), TopicPartition(changelog, 0)

    async def scenario() -> dict:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=unique_name("g"),
                                    enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        try:
            consumer.assign([fresh, done, log0])
            await consumer.commit({done: OffsetAndMetadata(4, "")})
            read = 0   # the fetcher reads all it can (10 + 6 after the commit + 10), nothing processed
            deadline = asyncio.get_running_loop().time() + 20
            while read < 26:
                assert asyncio.get_running_loop().time() < deadline, f"read {read} of 26"
                batches = await consumer.getmany(timeout_ms=500)
                read += sum(len(records) for records in batches.values())
            committed = await seek_to_committed(consumer, skip={changelog})
            return {"committed": committed, "fresh": await consumer.position(fresh),
                    "done": await consumer.position(done), "changelog": await consumer.position(log0)}
        finally:
            await consumer.stop()

    got = asyncio.run(scenario())
    assert got["committed"][done] == 4 and got["committed"][fresh] is None
    assert (got["fresh"], got["done"], got["changelog"]) == (0, 4, 10)


def test_the_end_offset_correction_is_for_tansu_only() -> None:
    """Real Kafka's ListOffsets is exact: no extra reads at recovery there."""
    from streams.app import build_app
    from streams.topics import Topics

    topics = Topics.prefixed("ends")
    kafka = build_app("ends-kafka", "127.0.0.1:9", False, None, topics)
    tansu = build_app("ends-tansu", "127.0.0.1:9", True, None, topics)
    assert kafka.app.transport.exact_ends is False and tansu.app.transport.exact_ends is True


# -- log order: the consumer's side of streams.ownership.Frontier -------------------------------------

def _consumer_with_acks(acked: list[int], committed: int | None) -> Any:
    """A bare ``_FastFetchConsumer`` holding faust's commit bookkeeping for one source partition."""
    from collections import defaultdict

    from faust.types import TP
    from intervaltree import IntervalTree

    from streams.faust_patches import _FastFetchConsumer
    from streams.ownership import Frontier

    consumer = object.__new__(_FastFetchConsumer)
    tp = TP("lead.sales_activity", 0)
    consumer.transport = SimpleNamespace(frontier_topics=frozenset({tp.topic}))
    consumer.frontier = Frontier()
    consumer._acked = defaultdict(list, {tp: list(acked)})
    consumer._acked_index = defaultdict(set, {tp: set(acked)})
    consumer._gap = defaultdict(IntervalTree)
    consumer._committed_offset = defaultdict(lambda: None, {tp: committed})
    consumer.tp = tp
    return consumer


def test_faust_alone_commits_past_a_record_never_acknowledged_right_after_the_committed_offset() -> None:
    """The faust rule the frontier guards against: 847 never acknowledged, 848 and 849 were."""
    from faust.transport.consumer import Consumer

    consumer = _consumer_with_acks([848, 849], committed=847)
    assert Consumer._new_offset(consumer, consumer.tp) == 850


def test_a_commit_is_capped_at_the_frontier_and_the_acknowledgements_above_it_are_kept() -> None:
    consumer = _consumer_with_acks([848, 849], committed=847)
    tp = consumer.tp
    consumer.frontier.start(tp, 847)
    consumer.frontier.fetched(tp, [847, 848, 849])
    assert consumer._new_offset(tp) is None                # 847 not applied: nothing to commit
    assert consumer._acked[tp] == [847, 848, 849]          # kept for later (847: the cap holds it)
    consumer.frontier.applied(tp, 847)
    consumer.frontier.applied(tp, 848)
    assert consumer._new_offset(tp) == 849                 # up to the frontier (849 not applied)
    consumer._committed_offset[tp] = 849
    consumer.frontier.applied(tp, 849)
    assert consumer._new_offset(tp) == 850


def test_an_unstarted_partition_commits_nothing() -> None:
    consumer = _consumer_with_acks([0, 1, 2], committed=None)
    assert consumer._new_offset(consumer.tp) is None


def test_the_read_offset_does_not_climb_above_a_floor_until_the_record_there_is_applied() -> None:
    from streams.faust_patches import ReadOffsets
    from streams.ownership import Frontier

    frontier = Frontier()
    offsets = ReadOffsets(frontier.floor)
    assert offsets["t"] is None                            # faust's defaultdict(lambda: None)
    offsets["t"] = 2796
    frontier.start("t", 847)
    frontier.fetched("t", [847, 848, 900])
    assert frontier.rewind("t", now=0.0) == 847            # read again from 847: the floor
    offsets["t"] = 847                                     # the seek back
    offsets["t"] = 2797                                    # a record of the batch in hand
    assert offsets["t"] == 847
    assert frontier.rewind("t", now=0.5) is None           # not again so soon, for the same position
    assert frontier.rewind("t", now=0.5, again=True) == 847
    frontier.applied("t", 900)                             # not the record at the floor: it stays
    offsets["t"] = 2798
    assert offsets["t"] == 847
    frontier.applied("t", 847)                             # the record at the floor: the floor goes
    offsets["t"] = 848
    assert offsets["t"] == 848
