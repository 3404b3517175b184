"""The JSON wire form: fast encoders agree with the general definition; times round-trip."""

from __future__ import annotations

import binascii
import json

import pytest
from hypothesis import given, strategies as st

from lifecycle.records import AlertRecord, LifecycleRecord
from schemas.wire import (
    alert_from_wire,
    dlq_from_wire,
    format_time,
    lifecycle_from_wire,
    parse_time,
    record_json,
    wire_dict,
)
from tests.strategies import dlq_records, output_records


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


@given(output_records())
def test_every_record_reads_back_from_its_wire_form(record):
    from_wire = {LifecycleRecord: lifecycle_from_wire, AlertRecord: alert_from_wire}.get(type(record), dlq_from_wire)
    assert from_wire(json.loads(record_json(record))) == record


@given(dlq_records())
def test_a_dead_letter_whose_bytes_are_not_base64_does_not_read_back(record):
    wire = {**wire_dict(record), "original": "not base64!"}
    with pytest.raises(binascii.Error):
        dlq_from_wire(wire)


@pytest.mark.parametrize(("ms", "text"), [
    (-62_135_596_800_000, "0001-01-01T00:00:00.000Z"),
    (-30_610_310_400_000, "0999-12-31T00:00:00.000Z"),
    (0, "1970-01-01T00:00:00.000Z"),
    (253_086_767_999_999, "9989-12-31T23:59:59.999Z"),
    (253_402_214_399_999, "9999-12-30T23:59:59.999Z"),
])
def test_format_time_writes_a_four_digit_year_and_parses_back(ms: int, text: str) -> None:
    assert format_time(ms) == text
    assert parse_time(text) == ms


def test_a_time_that_its_offset_takes_before_year_1_parses_without_overflow() -> None:
    assert parse_time("0001-01-01T00:00:00+14:00") == -62_135_596_800_000 - 14 * 3_600_000


def _iso_ms(text: str) -> int:
    """``parse_time`` as defined before its fast path: ``datetime.fromisoformat`` alone."""
    import datetime as dt

    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(text)
    delta = moment - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


@pytest.mark.parametrize("text", [
    "2026-05-09T14:16:54.359Z", "2026-05-09T14:16:54Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z",
    "1969-12-31T23:59:59.999Z", "2026-02-30T00:00:00Z", "2026-05-09T24:00:00Z", "2026-05-09T23:60:00Z",
    "2026-05-09T23:59:60Z", "2026-05-09T1_:00:00Z", "2026-05-09T+1:00:00Z", "2026-W10-1T10:00:00Z",
    "2026-05-09T10:00:00.12Z", "2026-05-09T10:00:00.1234Z", "2026-05-09 10:00:00Z", "2026-05-09T10:00:00+02:00",
    "2026-05-09T10:00:00.\u0661\u0662\u0663Z", "\uff12026-05-09T10:00:00Z", "2026-05-09T10:0:00.000Z",
    "2026-5-09T10:00:00.000Z", "20260509T100000.000000Z",
])
def test_the_fast_utc_path_of_parse_time_agrees_with_fromisoformat(text: str) -> None:
    """``parse_time`` reads ``...T..:..:..[.mmm]Z`` itself (replay's hot path): the same number for
    what ``fromisoformat`` takes, a ValueError for what it refuses (24:00, 23:60, Feb 30, non-ASCII
    digits, an underscore that ``int`` would take)."""
    try:
        expected: int | str = _iso_ms(text)
    except ValueError:
        expected = "ValueError"
    try:
        got: int | str = parse_time(text)
    except ValueError:
        got = "ValueError"
    assert got == expected


@given(st.integers(-62_135_596_800_000, 253_402_300_799_999))
def test_format_time_agrees_with_datetime_to_the_millisecond(ms: int) -> None:
    import datetime as dt

    moment = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(milliseconds=ms)
    assert format_time(ms) == f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"
    assert parse_time(format_time(ms)[:19] + "Z") == ms - ms % 1000
