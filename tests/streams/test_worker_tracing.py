"""W3C trace context travels with a lead (issue 9): an input event's ``traceparent``/``tracestate``
headers are on every output record it causes, also when the event took the repartition hop."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from streams.app import partition_for
from tests.streams.test_worker import QUICK_POLICY, Feed, deployment  # noqa: F401

pytestmark = pytest.mark.kafka

PARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _records_with_headers(bootstrap: str, topic: str, want: int, timeout: float = 30) -> list[tuple[dict, dict]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    out: list[tuple[dict, dict]] = []
    deadline = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=300).values():
            out.extend((json.loads(m.value), dict(m.headers or [])) for m in batch)
    consumer.close()
    return out


def test_trace_headers_reach_every_output_of_the_event_also_across_the_repartition_hop(
    deployment: Callable[..., Any], bootstrap: str
) -> None:
    topics, _, make_worker = deployment(QUICK_POLICY)
    make_worker("w1").wait_ready()
    feed = Feed(bootstrap, topics)
    body = {"event_id": "t1", "event_type": "form_fill", "lead_id": "L-trace", "form_type": "demo_request",
            "occurred_at": "2026-03-02T10:00:00Z"}
    right = partition_for("L-trace", topics.partitions)
    wrong = (right + 1) % topics.partitions  # forces the repartition hop
    feed.producer.send(topics.form_fills, key=b"L-trace", value=json.dumps(body).encode(), partition=wrong,
                       headers=[("traceparent", PARENT), ("tracestate", b"vendor=1"), ("other", b"x")]).get(10)
    plain = dict(body, event_id="t2", lead_id="L-plain")
    feed.producer.send(topics.form_fills, key=b"L-plain", value=json.dumps(plain).encode()).get(10)
    feed.close()
    got = _records_with_headers(bootstrap, topics.lifecycle, want=4)
    traced = [headers for record, headers in got if record["lead_id"] == "L-trace"]
    untraced = [headers for record, headers in got if record["lead_id"] == "L-plain"]
    assert len(traced) == 2 and len(untraced) == 2  # new, mql each
    assert all(h == {"traceparent": PARENT, "tracestate": b"vendor=1"} for h in traced)
    assert all(h == {} for h in untraced)
