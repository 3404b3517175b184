"""The JSON wire form: fast encoders agree with the general definition; times round-trip."""

from __future__ import annotations

import json

from hypothesis import given, strategies as st

from schemas.wire import format_time, parse_time, record_json, wire_dict
from tests.strategies import output_records


@given(output_records())
def test_fast_encoders_write_exactly_the_general_wire_form(record):
    assert json.loads(record_json(record)) == wire_dict(record)
    assert list(json.loads(record_json(record))) == list(wire_dict(record))


@given(st.integers(-(10**12), 4 * 10**12))
def test_times_round_trip_to_the_millisecond(ms):
    text = format_time(ms)
    assert text.endswith("Z") and len(text) == 24
    assert parse_time(text) == ms


def test_offsets_are_normalised_to_utc():
    assert format_time(parse_time("2026-03-29T03:30:00.250+02:00")) == "2026-03-29T01:30:00.250Z"


@given(output_records())
def test_wire_bytes_equal_the_standard_librarys_compact_form(record):
    """orjson writes the records; the format is what ``json.dumps`` would write, byte for byte."""
    expected = json.dumps(wire_dict(record), separators=(",", ":"), ensure_ascii=False).encode()
    assert record_json(record) == expected
