"""The raw-aiokafka reference: a consumer-group member that consumes, json-decodes and re-produces each
message, committing once per fetched batch. Same environment as ``bench/_faust_app.py``
(BENCH_BROKER, BENCH_SOURCE, BENCH_SINK, BENCH_APP_ID as group id, BENCH_COUNT, BENCH_REPORT).

Run: ``python -m bench._aiokafka_worker``; stops by itself after BENCH_COUNT messages.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def main() -> None:
    env = os.environ
    count = int(env["BENCH_COUNT"])
    consumer = AIOKafkaConsumer(
        env["BENCH_SOURCE"], bootstrap_servers=env["BENCH_BROKER"], group_id=env["BENCH_APP_ID"],
        auto_offset_reset="earliest", enable_auto_commit=False,
        session_timeout_ms=3000, heartbeat_interval_ms=1000, max_poll_records=2000,
    )
    producer = AIOKafkaProducer(bootstrap_servers=env["BENCH_BROKER"], linger_ms=5, acks="all")
    await producer.start()
    await consumer.start()
    sink = env["BENCH_SINK"]
    n = 0
    first = 0.0
    try:
        while n < count:
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            futures = []
            for records in batches.values():
                for r in records:
                    value = json.loads(r.value)
                    futures.append(await producer.send(
                        sink, key=r.key, value=json.dumps(value, separators=(",", ":")).encode()))
            if futures:
                if n == 0:
                    first = time.monotonic()
                await asyncio.gather(*futures)
                await consumer.commit()
                n += len(futures)
        seconds = time.monotonic() - first
        with open(env["BENCH_REPORT"] + ".tmp", "w") as f:
            json.dump({"count": n, "seconds": seconds}, f)
        os.replace(env["BENCH_REPORT"] + ".tmp", env["BENCH_REPORT"])
    finally:
        await consumer.stop()
        await producer.stop()


if __name__ == "__main__":
    asyncio.run(main())
