"""schemas.registry.RegistryClient against the local registry of ``fake_registry.py``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from lifecycle.errors import EventError, LeadflowError
from lifecycle.events import FormFilled
from schemas import codec
from schemas.registry import RegistryClient, RegistryError, value_subject
from leadflow.broker import free_port
from tests.deploy.fake_registry import FakeRegistry

SCHEMAS = Path(codec.__file__).resolve().parent
FORM_FILL = json.loads((SCHEMAS / "form_fill.avsc").read_text())
SUBJECT = value_subject("lead.form_fills")


def _with_field(schema: dict, field: dict) -> dict:
    changed = json.loads(json.dumps(schema))
    changed["fields"].append(field)
    return changed


def test_subjects_follow_the_topic_name_strategy() -> None:
    assert value_subject("lead.form_fills") == "lead.form_fills-value"


def test_register_then_look_up_by_id_once(fake_registry: FakeRegistry) -> None:
    client = RegistryClient(fake_registry.url)
    schema_id = client.register(SUBJECT, FORM_FILL)
    assert client.register(SUBJECT, json.dumps(FORM_FILL)) == schema_id       # idempotent
    assert client.subjects() == [SUBJECT]
    fresh = RegistryClient(fake_registry.url)
    parsed = fresh(schema_id)
    assert parsed["name"] == "io.leadflow.events.FormFill"
    assert fresh(schema_id) is parsed and fresh.requests == 1                 # cached
    version, latest_id, _ = fresh.latest(SUBJECT)
    assert (version, latest_id) == (1, schema_id)


def test_decode_avro_with_the_registry_as_lookup(fake_registry: FakeRegistry) -> None:
    client = RegistryClient(fake_registry.url)
    schema_id = client.register(SUBJECT, FORM_FILL)
    event = FormFilled(event_id="e1", lead_id="L1", occurred_at=1_767_600_000_000, form_type="pricing")
    lookup = RegistryClient(fake_registry.url)
    assert codec.decode_avro(codec.encode_event_avro(event, schema_id), lookup) == event
    with pytest.raises(EventError) as caught:
        codec.decode_avro(codec.encode_event_avro(event, schema_id + 99), lookup)
    assert caught.value.code == codec.UNKNOWN_SCHEMA_ID


def test_an_unknown_id_is_none_and_remembered_for_a_while(fake_registry: FakeRegistry) -> None:
    now = [0.0]
    client = RegistryClient(fake_registry.url, negative_ttl=30, clock=lambda: now[0])
    assert client(7) is None and client(7) is None
    assert client.requests == 1
    now[0] = 31.0
    schema_id = client.register(SUBJECT, FORM_FILL)   # id 1 now exists
    assert client(7) is None and client.requests == 3
    assert client(schema_id) is not None


def test_compatibility_check_names_the_field(fake_registry: FakeRegistry) -> None:
    client = RegistryClient(fake_registry.url)
    assert client.check_compatibility(SUBJECT, FORM_FILL)          # no version yet: anything goes
    client.register(SUBJECT, FORM_FILL)
    compatible = _with_field(FORM_FILL, {"name": "utm_source", "type": ["null", "string"], "default": None})
    assert client.check_compatibility(SUBJECT, compatible)
    incompatible = _with_field(FORM_FILL, {"name": "utm_source", "type": "string"})
    answer = client.check_compatibility(SUBJECT, incompatible)
    assert not answer and any("utm_source" in m for m in answer.messages)
    with pytest.raises(RegistryError) as caught:
        client.register(SUBJECT, incompatible)
    assert caught.value.status == 409 and caught.value.error_code == 409
    assert "incompatible" in str(caught.value)
    assert client.register(SUBJECT, compatible) == 2


def test_registry_errors_carry_its_error_code(fake_registry: FakeRegistry) -> None:
    client = RegistryClient(fake_registry.url)
    with pytest.raises(RegistryError) as caught:
        client.latest("no-such-subject")
    assert caught.value.error_code == 40401 and "Subject 'no-such-subject' not found" in str(caught.value)
    with pytest.raises(RegistryError) as caught:
        client.register(SUBJECT, {"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]})
    assert caught.value.status == 422 and caught.value.error_code == 42201


def test_a_registry_that_is_down_is_an_error_not_a_hang() -> None:
    client = RegistryClient(f"http://127.0.0.1:{free_port()}", timeout=1.0)
    started = time.monotonic()
    with pytest.raises(LeadflowError, match="unreachable"):
        client(1)
    assert time.monotonic() - started < 2


def test_a_slow_registry_times_out(fake_registry: FakeRegistry) -> None:
    fake_registry.delay = 1.0
    client = RegistryClient(fake_registry.url, timeout=0.2)
    started = time.monotonic()
    with pytest.raises(RegistryError, match="unreachable"):
        client(1)
    assert time.monotonic() - started < 0.9


def test_bad_url_and_basic_auth(fake_registry: FakeRegistry) -> None:
    with pytest.raises(RegistryError, match="bad schema registry URL"):
        RegistryClient("registry:8081")
    client = RegistryClient(fake_registry.url.replace("http://", "http://lf:s3cret@"))
    assert "s3cret" not in repr(client)
    assert client.subjects() == []
