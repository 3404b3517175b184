"""``LEADFLOW_FORMAT=avro``: the worker registers its output schemas and writes Confluent-framed Avro
(SPEC 5: "JSON by default and Avro on request"), against the real broker and the registry fixture."""

from __future__ import annotations

import datetime as dt
import io
import json
import struct
from collections.abc import Callable
from typing import Any

import fastavro
import pytest

from schemas import codec
from schemas.registry import RegistryClient
from streams.output import schema_text
from lifecycle.records import as_dict
from tests.kafka_helpers import consume_all
from tests.streams.test_worker import QUICK_POLICY, Feed, deployment, replay  # noqa: F401


def _plain(datum: dict[str, Any]) -> dict[str, Any]:
    """Avro datetimes as epoch ms, sequences as lists: comparable with the engine's records."""
    return {k: (int(v.timestamp() * 1000) if isinstance(v, dt.datetime) else
                list(v) if isinstance(v, tuple) else v) for k, v in datum.items()}


def _avro(values: list[bytes], registry: RegistryClient, subject_id: int) -> list[dict[str, Any]]:
    out = []
    for value in values:
        magic, schema_id = struct.unpack(">bI", value[:5])
        assert (magic, schema_id) == (0, subject_id), value[:8]
        out.append(fastavro.schemaless_reader(io.BytesIO(value[5:]), registry(schema_id), None))
    return out


def test_avro_outputs_under_schemas_registered_for_each_topic(
    deployment: Callable[..., Any], bootstrap: str, fake_registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADFLOW_FORMAT", "avro")
    monkeypatch.setenv("LEADFLOW_SCHEMA_REGISTRY_URL", fake_registry.url)
    topics, policy, make_worker = deployment(QUICK_POLICY)
    worker = make_worker("avro")
    worker.wait_ready()
    registry = RegistryClient(fake_registry.url)
    ids = {topic: registry.latest(f"{topic}-value")[1] for topic in (topics.lifecycle, topics.alerts, topics.dlq)}

    feed = Feed(bootstrap, topics)
    feed.send("A", "form_fill", form_type="demo_request", form_id="f1")   # handoff_broken at +2 s
    feed.send("B", "form_fill", form_type="pricing", form_id="f2")
    # an Avro input under a schema registered for its topic (not a bundled id)
    form_fill_id = registry.register(f"{topics.form_fills}-value",
                                     schema_text("form_fill"))
    c = json.dumps({"event_id": "C-1", "event_type": "form_fill", "lead_id": "C", "form_type": "webinar",
                    "form_id": "f3", "occurred_at": "2026-12-01T10:00:00Z"}).encode()
    feed.raw(topics.form_fills, codec.encode_event_avro(codec.decode(c), form_fill_id), key=b"C")
    feed.events.append(c)
    feed.raw(topics.sales_activity, b"{not json", key=b"Z")
    feed.close()

    expected_t, expected_a, _, records = replay(policy, feed.events)
    lifecycle = _avro([r.value for r in consume_all(bootstrap, topics.lifecycle,
                                                    expected_count=len(expected_t), timeout=20)],
                      registry, ids[topics.lifecycle])
    assert {r["transition_id"] for r in lifecycle} == expected_t
    alerts = _avro([r.value for r in consume_all(bootstrap, topics.alerts, expected_count=len(expected_a),
                                                 timeout=20)], registry, ids[topics.alerts])
    assert {r["alert_id"] for r in alerts} == expected_a and expected_a
    # each record decodes to what the engine computed (timestamp-millis come back as datetimes);
    # live, a timer is detected at the wall clock, so those two fields are the worker's own
    by_id = {getattr(r, "transition_id", None) or getattr(r, "alert_id"): r for r in records}
    live_only = {"detected_at", "overdue_by_ms"}
    for datum in lifecycle + alerts:
        mine = _plain(as_dict(by_id[datum.get("transition_id") or datum["alert_id"]]))
        got = _plain(datum)
        assert {k: v for k, v in got.items() if k not in live_only} == \
            {k: v for k, v in mine.items() if k not in live_only}

    (dead,) = _avro([r.value for r in consume_all(bootstrap, topics.dlq, expected_count=1, timeout=20)],
                    registry, ids[topics.dlq])
    assert (dead["error"], dead["original"], dead["source_topic"]) == ("invalid_json", b"{not json",
                                                                        topics.sales_activity)
    assert "avro output" in worker.log_path.read_text()
