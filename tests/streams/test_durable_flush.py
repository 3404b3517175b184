"""The worker's producer buffer: a commit must not overtake the table writes it covers (issue 3).

faust commits a source offset right after ``producer.flush()``. faust's own buffer flush returns
once a message takes longer than 0.1 s to hand over, so a slow broker let an offset be committed
while the changelog write of the state it produced was still buffered; a SIGKILL then lost it.
"""

from __future__ import annotations

import asyncio

import faust
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


def test_flush_returns_only_after_every_buffered_write_is_acknowledged() -> None:
    async def scenario() -> list[str]:
        app = faust.App("durable-flush-test", autodiscover=False)
        buffer = _DurableBuffer()
        buffer.app = app
        await buffer.start()
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

    assert asyncio.run(scenario()) == ["ack fast", "ack slow", "flushed"]


def test_a_failed_write_ends_the_wait_too() -> None:
    async def scenario() -> bool:
        app = faust.App("durable-flush-test-2", autodiscover=False)
        buffer = _DurableBuffer()
        buffer.app = app
        await buffer.start()
        fut = _message()
        buffer.put(fut)
        asyncio.get_running_loop().call_later(0.2, fut.set_exception, RuntimeError("broker down"))
        await buffer.flush()
        fut.exception()  # retrieved: no "exception never retrieved" warning
        done = fut.done() and not buffer.unacked
        await buffer.stop()
        return done

    assert asyncio.run(scenario())
