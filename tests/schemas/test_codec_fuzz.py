"""Fuzzing the decoders: random bytes, random JSON, random Avro bodies and hostile event-shaped
documents. The only exception any of them may raise is ``EventError`` with a documented code."""

from __future__ import annotations

import json
import struct

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lifecycle.calendar import LATEST_MS
from lifecycle.errors import EventError
from lifecycle.events import LeadEvent
from lifecycle.records import AlertRecord, DlqRecord, LifecycleRecord
from schemas.codec import (
    BUNDLED_SCHEMA_IDS,
    ERROR_CODES,
    bundled_schemas,
    decode,
    decode_json,
    decode_record,
    encode_event_json,
)
from schemas.wire import format_time
from tests.strategies import wild_events

fuzz = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

EVENT_TYPES = ["form_fill", "email_engagement", "sales_touch", "lead_assigned", "sales_disposition",
               "deal_stage_change", "fax", "", "[/]"]
#: Timestamps at and beyond the edges of the range of time, and malformed ones.
TIMES = ["0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00Z", "1969-12-31T23:59:59.999Z",
         "1970-01-01T00:00:00Z", "9989-12-31T23:59:59.999Z", "9999-12-31T00:00:00Z",
         "9999-12-31T23:59:59-14:00", "2026-02-30T10:00:00Z", "2026-03-02T24:00:00Z", "2026-03-02t10:00:00z",
         "2026-03-02T10:00:00", "+2026-03-02T10:00:00Z", "2026-W10-1T10:00:00Z", "", "now"]
HOSTILE_TEXT = ["[/]", "[link=https://evil.example]x", "\x1b]0;title\x07", "\x1b[31m", "\x00", "\ud7ff",
                "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "\u202e"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=30) | st.sampled_from(HOSTILE_TEXT + TIMES),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
field_values = (st.sampled_from(HOSTILE_TEXT + TIMES + EVENT_TYPES) | json_values
                | st.integers(-(2**64), 2**64) | st.just(LATEST_MS + 1))
event_like = st.fixed_dictionaries(
    {"event_type": st.sampled_from(EVENT_TYPES) | field_values},
    optional={name: field_values for name in (
        "event_id", "lead_id", "occurred_at", "source", "form_type", "form_id", "action", "campaign_id",
        "rep_id", "channel", "outcome", "owner_id", "team", "decision", "reason", "deal_id", "stage", "amount")},
)


def _decoded_or_coded(call, *args) -> object:
    try:
        return call(*args)
    except EventError as error:
        assert error.code in ERROR_CODES, error.code
        return error


@fuzz
@given(st.binary(max_size=300))
@example(b"\x00\x00\x00\x00\x01" + b"\xff" * 20)
@example(b'{"a":' * 5000)
@example(b'{"event_id":"\\ud800","event_type":"form_fill","lead_id":"L"}')
def test_random_bytes_never_raise_anything_but_an_event_error(value: bytes) -> None:
    _decoded_or_coded(decode, value)
    _decoded_or_coded(decode, value, bundled_schemas())
    _decoded_or_coded(decode_json, value)
    for cls in (LifecycleRecord, AlertRecord, DlqRecord):
        _decoded_or_coded(decode_record, cls, value, bundled_schemas())


@fuzz
@given(st.sampled_from(sorted(BUNDLED_SCHEMA_IDS.values()) + [7, 2**32 - 1]), st.binary(max_size=200))
def test_random_avro_bodies_never_raise_anything_but_an_event_error(schema_id: int, body: bytes) -> None:
    value = struct.pack(">BI", 0, schema_id) + body
    _decoded_or_coded(decode, value, bundled_schemas())
    for cls in (LifecycleRecord, AlertRecord, DlqRecord):
        _decoded_or_coded(decode_record, cls, value, bundled_schemas())


@fuzz
@given(json_values | event_like)
def test_random_json_never_raises_anything_but_an_event_error(document: object) -> None:
    value = _dumps(document)
    result = _decoded_or_coded(decode_json, value)
    if isinstance(result, LeadEvent):       # whatever decodes is a well-formed, in-range event
        assert 0 <= result.occurred_at <= LATEST_MS
        assert result.event_id and result.lead_id
        format_time(result.occurred_at)
        assert decode_json(encode_event_json(result)) == result
    for cls in (LifecycleRecord, AlertRecord, DlqRecord):
        _decoded_or_coded(decode_record, cls, value)


@fuzz
@given(wild_events())
def test_every_valid_event_survives_the_round_trip(event: LeadEvent) -> None:
    assert decode(encode_event_json(event)) == event


def _dumps(document: object) -> bytes:
    """JSON text of ``document``; integers beyond 64 bits too (the standard library writes them)."""
    try:
        return orjson.dumps(document, option=orjson.OPT_NON_STR_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(document).encode("utf-8", "surrogatepass")


@pytest.mark.parametrize("depth", [100, 1000, 100_000])
def test_deep_nesting_is_invalid_json_or_an_object_error_never_a_crash(depth: int) -> None:
    for value in ((b"[" * depth) + (b"]" * depth), json.dumps({"event_type": "form_fill"}).encode()[:-1]
                  + b',"x":' + b"[" * depth + b"]" * depth + b"}"):
        _decoded_or_coded(decode, value)
