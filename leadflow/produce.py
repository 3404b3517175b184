"""``leadflow produce FILE``: publish JSON-lines events to their input topics, keyed by ``lead_id``.

The topic follows ``event_type`` (SPEC section 3); a line that does not parse, or has no known
``event_type``, still goes out (to the form-fills topic, raw) so that the worker dead-letters it:
nothing is dropped here. Topic names follow the worker's environment (``LEADFLOW_TOPIC_PREFIX``).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from typing import IO, Any

from lifecycle.errors import LeadflowError
from leadflow.broker import resolve_broker
from streams.topics import Topics, ensure_topics

PROGRESS_ABOVE_BYTES = 5_000_000


class ProduceError(LeadflowError):
    """Records could not be delivered."""


def topic_for(event_type: Any, topics: Topics) -> str:
    return {
        "form_fill": topics.form_fills,
        "email_engagement": topics.email_engagement,
        "sales_touch": topics.sales_activity,
        "lead_assigned": topics.sales_activity,
        "sales_disposition": topics.sales_activity,
        "deal_stage_change": topics.deal_stages,
    }.get(event_type, topics.form_fills)


def route(line: bytes, topics: Topics) -> tuple[str, bytes | None]:
    """``(topic, key)`` of one JSON line; unparseable lines go to the form-fills topic without key."""
    try:
        obj = json.loads(line)
    except ValueError:
        return topics.form_fills, None
    if not isinstance(obj, dict):
        return topics.form_fills, None
    lead_id = obj.get("lead_id")
    key = lead_id.encode() if isinstance(lead_id, str) and lead_id else None
    return topic_for(obj.get("event_type"), topics), key


def _lines(stream: IO[bytes]) -> Iterator[bytes]:
    for raw in stream:
        line = raw.rstrip(b"\r\n")
        if line.strip():
            yield line


def publish(bootstrap: str, lines: Iterable[bytes], topics: Topics, *, on_sent: Any = None) -> dict[str, int]:
    """Send every line (acks=all); return ``{topic: count}``. Raises ProduceError on a failed send."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                             batch_size=256 * 1024, client_id="leadflow-produce")
    counts: dict[str, int] = {}
    failures: list[BaseException] = []
    try:
        for line in lines:
            topic, key = route(line, topics)
            future = producer.send(topic, key=key, value=line)
            future.add_errback(failures.append)
            counts[topic] = counts.get(topic, 0) + 1
            if on_sent is not None:
                on_sent(len(line) + 1)
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)
    if failures:
        raise ProduceError(f"{len(failures)} records not delivered: {failures[0]}")
    return counts


def run(file: str, broker: str | None = None) -> dict[str, int]:
    from leadflow.worker import topics_from_env

    bootstrap, embedded = resolve_broker(broker)
    try:
        topics = topics_from_env()
        ensure_topics(bootstrap, topics)
        started = time.monotonic()
        source = sys.stdin.buffer if file == "-" else open(file, "rb")
        with (nullcontext(source) if file == "-" else source) as stream:
            size = _size(file)
            if size and size > PROGRESS_ABOVE_BYTES and sys.stderr.isatty():
                from rich.progress import Progress

                with Progress(transient=True) as progress:
                    task = progress.add_task("producing", total=size)
                    counts = publish(bootstrap, _lines(stream), topics,
                                     on_sent=lambda n: progress.advance(task, n))
            else:
                counts = publish(bootstrap, _lines(stream), topics)
        total = sum(counts.values())
        seconds = time.monotonic() - started
        per_topic = ", ".join(f"{t} {n}" for t, n in sorted(counts.items()))
        print(f"produced {total} events to {bootstrap} in {seconds:.1f} s"
              + (f" ({per_topic})" if per_topic else ""))
        return counts
    finally:
        if embedded is not None:
            embedded.stop()


def _size(file: str) -> int | None:
    if file == "-":
        return None
    import os

    try:
        return os.path.getsize(file)
    except OSError:
        return None
