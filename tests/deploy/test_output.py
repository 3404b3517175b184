"""The worker's output formats: JSON as computed, or Confluent-framed Avro under registered schemas."""

from __future__ import annotations

import datetime as dt
import io
import json
import struct

import fastavro
import pytest

from lifecycle.errors import EventError
from lifecycle.records import AlertRecord, LifecycleRecord
from schemas import codec
from schemas.registry import RegistryClient, RegistryError
from schemas.wire import record_json
from streams.output import AvroOutput, JsonOutput
from streams.topics import Topics

TRANSITION = LifecycleRecord(
    lead_id="L1", from_stage="engaged", to_stage="mql", trigger_event_id="e1",
    trigger_event_type="form_fill", occurred_at=1_767_600_000_000, owner_id=None, score=55,
    skipped_stages=("engaged",), time_in_previous_stage_ms=1200, transition_id="t-1", team="na",
    reason=None)
ALERT = AlertRecord(
    alert_id="a-1", type="follow_up_overdue", lead_id="L1", sla="first_touch", reason="no touch",
    level=1, stage="sal", owner_id="rep-1", team="na", started_at=1_767_600_000_000,
    due_at=1_767_603_600_000, detected_at=1_767_603_600_001, overdue_by_ms=1,
    resolves_alert_id=None)


def _read(value: bytes, registry: RegistryClient) -> tuple[int, dict]:
    magic, schema_id = struct.unpack(">bI", value[:5])
    assert magic == 0
    schema = registry(schema_id)
    assert schema is not None, f"schema id {schema_id} unknown to the registry"
    return schema_id, fastavro.schemaless_reader(io.BytesIO(value[5:]), schema, None)


def test_json_output_is_the_wire_json_itself() -> None:
    text = record_json(TRANSITION).decode()
    assert JsonOutput().lifecycle(text) == text.encode() == JsonOutput().alert(text)


def test_avro_output_registers_each_schema_under_its_topics_value_subject(fake_registry) -> None:
    topics = Topics.prefixed("acme")
    registry = RegistryClient(fake_registry.url)
    output = AvroOutput.register(registry, topics)
    assert set(fake_registry.subjects) == {f"{topics.lifecycle}-value", f"{topics.alerts}-value",
                                           f"{topics.dlq}-value"}
    # idempotent: a second replica registering gets the same ids
    assert AvroOutput.register(RegistryClient(fake_registry.url), topics).ids == output.ids

    schema_id, datum = _read(output.lifecycle(record_json(TRANSITION).decode()), registry)
    assert schema_id == output.ids["lifecycle_record"]
    assert datum["transition_id"] == "t-1" and datum["to_stage"] == "mql"
    assert datum["skipped_stages"] == ["engaged"]
    assert datum["occurred_at"] == dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.timezone.utc)  # timestamp-millis

    schema_id, datum = _read(output.alert(record_json(ALERT).decode()), registry)
    assert schema_id == output.ids["alert_record"]
    assert (datum["alert_id"], datum["level"], datum["overdue_by_ms"]) == ("a-1", 1, 1)


def test_avro_output_frames_dead_letters_too(fake_registry) -> None:
    registry = RegistryClient(fake_registry.url)
    output = AvroOutput.register(registry, Topics.prefixed("dl"))
    record = codec.dlq_record(b"\xff{", b"k", EventError("invalid_json", "not JSON"), "in", 0, 7)
    schema_id, datum = _read(output.dlq(record), registry)
    assert schema_id == output.ids["dlq_record"]
    assert (datum["error"], datum["original"], datum["source_offset"]) == ("invalid_json", b"\xff{", 7)


def test_a_refused_schema_stops_registration_with_the_subject_named(fake_registry) -> None:
    topics = Topics.prefixed("old")
    incompatible = {"type": "record", "name": "LifecycleRecord", "namespace": "leadflow",
                    "fields": [{"name": "only", "type": "string"}]}
    RegistryClient(fake_registry.url).register(f"{topics.lifecycle}-value", json.dumps(incompatible))
    with pytest.raises(RegistryError, match=f"{topics.lifecycle}-value"):
        AvroOutput.register(RegistryClient(fake_registry.url), topics)


def test_each_record_is_encoded_once_to_what_the_old_json_detour_gave(fake_registry) -> None:
    """``encode`` (what the worker keeps and sends) equals the bytes of the JSON -> Avro path that
    outbox entries of older workers still take."""
    output = AvroOutput.register(RegistryClient(fake_registry.url), Topics.prefixed("once"))
    assert output.encode(TRANSITION) == output.lifecycle(record_json(TRANSITION).decode())
    assert output.encode(ALERT) == output.alert(record_json(ALERT).decode())
    assert JsonOutput().encode(TRANSITION) == record_json(TRANSITION)
