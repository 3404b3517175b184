"""The worker's producer buffer: a commit must not overtake the table writes it covers (issue 3).

faust commits a source offset right after ``producer.flush()``. faust's own buffer flush returns
once a message takes longer than 0.1 s to hand over, so a slow broker let an offset be committed
while the changelog write of the state it produced was still buffered; a SIGKILL then lost it.
"""

from __future__ import annotations

import asyncio

import faust
from faust.exceptions import ProducerSendError
from faust.types.tuples import FutureMessage, PendingMessage

from streams.app import _DurableBuffer


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


async def _started(name: str) -> _DurableBuffer:
    buffer = _DurableBuffer()
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
