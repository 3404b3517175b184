"""The codecs: every DLQ error code from a real malformed message, round trips, schemas vs wire form."""

from __future__ import annotations

import datetime as dt
import io
import json
import struct
from pathlib import Path

import fastavro
import pytest
from hypothesis import given, settings

from lifecycle.errors import EventError
from lifecycle.events import EVENT_TYPES, DealStageChanged, FormFilled, LeadEvent, SalesTouched
from lifecycle.records import TIME_FIELDS, AlertRecord, DlqRecord, LifecycleRecord, Record, as_dict
from lifecycle.calendar import EARLIEST_MS, LATEST_MS
from schemas.codec import (
    BUNDLED_SCHEMA_IDS,
    ERROR_CODES,
    BundledSchemas,
    bundled_schemas,
    check_not_future,
    decode,
    decode_avro,
    decode_json,
    decode_record,
    dlq_record,
    encode_avro,
    encode_event_avro,
    encode_event_json,
    encode_json,
    encode_record_avro,
)
from schemas.wire import parse_time, wire_dict
from tests.strategies import events, output_records, wild_events

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
VALID = {
    "event_id": "e1",
    "event_type": "form_fill",
    "lead_id": "L1",
    "occurred_at": "2026-03-02T09:00:00.000Z",
    "form_type": "demo_request",
}


def message(**changes: object) -> bytes:
    """VALID with fields changed; a value of ``...`` removes the field."""
    obj = {**VALID, **changes}
    return json.dumps({k: v for k, v in obj.items() if v is not ...}).encode()


def error_of(value: bytes, lookup=None) -> EventError:
    with pytest.raises(EventError) as caught:
        decode(value, lookup)
    assert caught.value.code in ERROR_CODES
    return caught.value


def avro_frame(schema_id: int, schema: object, datum: dict) -> bytes:
    out = io.BytesIO()
    out.write(struct.pack(">BI", 0, schema_id))
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), datum)
    return out.getvalue()


# --- JSON: the happy path ----------------------------------------------------------------------------

def test_a_valid_message_decodes_to_its_event() -> None:
    assert decode_json(message()) == FormFilled(
        event_id="e1", lead_id="L1", occurred_at=1_772_442_000_000, form_type="demo_request"
    )


def test_unknown_extra_fields_are_ignored() -> None:
    assert decode_json(message(gclid="abc", nested={"a": [1]})) == decode_json(message())


# --- form fills: UTM parameters and fields (SPEC section 10) -----------------------------------------

def test_a_form_fill_carries_utm_parameters_and_fields_in_the_order_sent() -> None:
    event = decode_json(message(utm_source="google", utm_medium="cpc", utm_campaign="spring",
                                fields={"title": "VP Sales", "employees": 5000, "revenue_musd": 12.5}))
    assert isinstance(event, FormFilled)
    assert (event.utm_source, event.utm_medium, event.utm_campaign) == ("google", "cpc", "spring")
    assert event.fields == (("title", "VP Sales"), ("employees", 5000), ("revenue_musd", 12.5))


def test_a_form_fill_without_them_has_none_and_no_fields() -> None:
    event = decode_json(message())
    assert isinstance(event, FormFilled)
    assert (event.utm_source, event.utm_medium, event.utm_campaign, event.fields) == (None, None, None, ())


def test_a_null_field_value_carries_nothing() -> None:
    event = decode_json(message(fields={"title": None, "country": "DE"}))
    assert isinstance(event, FormFilled) and event.fields == (("country", "DE"),)


@pytest.mark.parametrize("fields, detail", [
    ("VP", "fields: expected an object"),
    ([["title", "VP"]], "fields: expected an object"),
    ({"title": True}, "fields['title']: expected a string or number"),
    ({"tags": ["a"]}, "fields['tags']: expected a string or number"),
    ({"nested": {"a": 1}}, "fields['nested']: expected a string or number"),
    ({"employees": 2**63}, "fields['employees']: integer beyond 64 bits"),
    ({f"f{i}": i for i in range(33)}, "fields: 33 entries, at most 32"),
    ({"x" * 65: 1}, "fields: a name must have 1 to 64 characters"),
    ({"": 1}, "fields: a name must have 1 to 64 characters"),
    ({"notes": "x" * 501}, "fields['notes']: 501 characters, at most 500"),
])
def test_fields_beyond_their_type_or_bounds_are_dead_lettered(fields: object, detail: str) -> None:
    error = error_of(message(fields=fields))
    assert error.code == "invalid_field" and error.detail.startswith(detail), error.detail


def test_fields_at_their_bounds_are_accepted() -> None:
    fields = {f"{i:0>64}": "x" * 500 for i in range(32)}
    event = decode_json(message(fields=fields))
    assert isinstance(event, FormFilled) and len(event.fields) == 32


def test_a_utm_parameter_of_the_wrong_type_is_an_invalid_field() -> None:
    error = error_of(message(utm_medium=3))
    assert (error.code, error.detail.split(":")[0]) == ("invalid_field", "utm_medium")


def test_non_finite_avro_field_value_is_invalid_field() -> None:
    event = FormFilled(event_id="e1", lead_id="L1", occurred_at=0, form_type="webinar", fields=(("x", float("nan")),))
    error = error_of(encode_event_avro(event), bundled_schemas())
    assert error.code == "invalid_field" and error.detail.startswith("fields['x']")


def test_a_form_fill_written_with_the_previous_schema_still_decodes() -> None:
    """Backward compatibility: a producer on the old form_fill.avsc (no UTM, no fields)."""
    old = json.loads((SCHEMA_DIR / "form_fill.avsc").read_text())
    old["fields"] = [f for f in old["fields"] if f["name"] not in ("utm_source", "utm_medium", "utm_campaign", "fields")]
    datum = {"event_id": "e1", "event_type": "form_fill", "lead_id": "L1", "occurred_at": 1_772_442_000_000,
             "source": None, "form_type": "webinar", "form_id": "f7"}
    value = avro_frame(77, old, datum)
    event = decode_avro(value, lambda schema_id: fastavro.parse_schema(old))
    assert event == FormFilled(event_id="e1", lead_id="L1", occurred_at=1_772_442_000_000, form_type="webinar",
                               form_id="f7")


def test_offsets_are_converted_to_utc() -> None:
    assert decode_json(message(occurred_at="2026-03-02T11:00:00+02:00")).occurred_at == 1_772_442_000_000


def test_lower_case_t_and_z_are_rfc3339_too() -> None:
    assert decode_json(message(occurred_at="2026-03-02t09:00:00z")).occurred_at == 1_772_442_000_000


def test_an_integer_amount_becomes_a_float() -> None:
    event = decode_json(message(event_type="deal_stage_change", stage="proposal", amount=1200))
    assert isinstance(event, DealStageChanged) and event.amount == 1200.0 and type(event.amount) is float


# --- JSON: one malformed message per error code ------------------------------------------------------

def test_empty_message() -> None:
    assert error_of(b"").code == "empty_message"


def test_invalid_utf8() -> None:
    assert error_of(b'{"event_id": "caf\xe9"}').code == "invalid_utf8"


def test_invalid_json() -> None:
    assert error_of(b'{"event_id": "e1",').code == "invalid_json"


def test_json_nested_too_deep_is_invalid_json_not_a_crash() -> None:
    assert error_of(b"[" * 60_000).code == "invalid_json"  # deep, yet under the size limit


def test_not_an_object() -> None:
    assert error_of(b'["e1", "form_fill"]').code == "not_an_object"


def test_missing_field_names_the_field() -> None:
    error = error_of(message(lead_id=...))
    assert (error.code, error.detail) == ("missing_field", "lead_id: required")


def test_null_required_field_is_missing() -> None:
    assert error_of(message(occurred_at=None)).code == "missing_field"


def test_missing_per_type_field() -> None:
    error = error_of(message(form_type=...))
    assert error.code == "missing_field" and error.detail.startswith("form_type")


def test_invalid_field_wrong_type() -> None:
    error = error_of(message(lead_id=42))
    assert error.code == "invalid_field" and error.detail.startswith("lead_id")


def test_invalid_field_empty_string() -> None:
    error = error_of(message(event_id=""))
    assert error.code == "invalid_field" and error.detail.startswith("event_id")


@pytest.mark.parametrize("amount", ["12", True])
def test_invalid_field_amount(amount: object) -> None:
    error = error_of(message(event_type="deal_stage_change", stage="created", amount=amount))
    assert error.code == "invalid_field" and error.detail.startswith("amount")


@pytest.mark.parametrize("literal", [b"1e400", b"Infinity", b"NaN"])
def test_non_finite_json_amount_is_invalid_json(literal: bytes) -> None:
    """No double holds these: the parser refuses them before any field is looked at."""
    body = message(event_type="deal_stage_change", stage="created", amount=0).replace(b'"amount": 0', b'"amount": ' + literal)
    assert literal in body
    assert error_of(body).code == "invalid_json"


def test_invalid_field_optional_string_of_wrong_type() -> None:
    error = error_of(message(form_id=7))
    assert error.code == "invalid_field" and error.detail.startswith("form_id")


def test_unknown_event_type() -> None:
    error = error_of(message(event_type="page_view"))
    assert error.code == "unknown_event_type" and "page_view" in error.detail


@pytest.mark.parametrize(
    "occurred_at",
    [
        "2026-03-02T09:00:00",  # no offset
        "2026-03-02",  # no time
        "20260302T090000Z",  # ISO 8601 basic format, not RFC 3339
        "2026-03-02T09:00Z",  # no seconds
        "2026-02-30T09:00:00Z",  # no such day
        "2026-03-02T09:00:00+25:00",  # no such offset
        "yesterday",
    ],
)
def test_invalid_timestamp(occurred_at: str) -> None:
    error = error_of(message(occurred_at=occurred_at))
    assert error.code == "invalid_timestamp" and error.detail.startswith("occurred_at")


def test_epoch_number_for_occurred_at_is_an_invalid_field() -> None:
    assert error_of(message(occurred_at=1_772_442_000_000)).code == "invalid_field"


@pytest.mark.parametrize(
    ("event_type", "field", "value"),
    [
        ("email_engagement", "action", "forward"),
        ("sales_touch", "channel", "pigeon"),
        ("sales_disposition", "decision", "maybe"),
        ("deal_stage_change", "stage", "won"),
    ],
)
def test_invalid_value(event_type: str, field: str, value: str) -> None:
    error = error_of(message(event_type=event_type, form_type=..., **{field: value}))
    assert error.code == "invalid_value" and error.detail.startswith(field) and value in error.detail


def test_a_zero_first_byte_without_a_lookup_is_not_taken_for_json() -> None:
    assert error_of(encode_event_avro(decode_json(message()))).code == "invalid_json"


# --- Avro: one malformed message per error code ------------------------------------------------------

def test_unknown_schema_id() -> None:
    framed = struct.pack(">BI", 0, 999) + b"\x02e1"
    error = error_of(framed, BundledSchemas())
    assert error.code == "unknown_schema_id" and "999" in error.detail


def test_invalid_avro_bad_magic_byte() -> None:
    good = encode_event_avro(decode_json(message()))
    with pytest.raises(EventError) as caught:
        decode_avro(b"\x01" + good[1:], BundledSchemas())
    assert caught.value.code == "invalid_avro" and "magic" in caught.value.detail


def test_invalid_avro_frame_too_short() -> None:
    assert error_of(b"\x00\x00\x01", BundledSchemas()).code == "invalid_avro"


def test_invalid_avro_truncated_body() -> None:
    good = encode_event_avro(decode_json(message()))
    assert error_of(good[:-3], BundledSchemas()).code == "invalid_avro"


def test_invalid_avro_trailing_bytes() -> None:
    good = encode_event_avro(decode_json(message()))
    assert error_of(good + b"\x00", BundledSchemas()).code == "invalid_avro"


def test_invalid_utf8_in_an_avro_string() -> None:
    framed = avro_frame(1, {"type": "record", "name": "X", "fields": [{"name": "event_id", "type": "bytes"}]}, {"event_id": b"\xff\xfe"})
    schemas = BundledSchemas()
    assert error_of(framed, schemas).code == "invalid_utf8"


def test_avro_events_are_validated_like_json() -> None:
    schemas = BundledSchemas()
    good = {**VALID, "occurred_at": 1_772_442_000_000, "source": None, "form_id": None}
    form_fill = schemas.schema("form_fill")
    assert error_of(avro_frame(1, form_fill, {**good, "lead_id": ""}), schemas).code == "invalid_field"
    assert error_of(avro_frame(1, form_fill, {**good, "event_type": "page_view"}), schemas).code == "unknown_event_type"
    engagement = {**good, "event_type": "email_engagement", "action": "forward", "campaign_id": None}
    assert error_of(avro_frame(2, schemas.schema("email_engagement"), engagement), schemas).code == "invalid_value"


def test_avro_writer_schema_lacking_a_required_field_is_missing_field() -> None:
    fields = [f for f in json.loads((SCHEMA_DIR / "form_fill.avsc").read_text())["fields"] if f["name"] != "lead_id"]
    schema = fastavro.parse_schema({"type": "record", "name": "Old", "fields": fields})
    framed = avro_frame(7, schema, {**VALID, "occurred_at": 0, "source": None, "form_id": None})
    error = error_of(framed, lambda schema_id: schema if schema_id == 7 else None)
    assert (error.code, error.detail) == ("missing_field", "lead_id: required")


@pytest.mark.parametrize("cls, name", [(LifecycleRecord, "lifecycle_record"), (AlertRecord, "alert_record")])
def test_output_records_written_before_policy_versions_read_back_with_none(cls, name) -> None:
    """Avro written with the schema before SPEC 11 (no policy_version), and JSON without the key."""
    from tests.sinks.sample_records import make_alert, make_transition

    record = make_transition() if cls is LifecycleRecord else make_alert()
    fields = [f for f in json.loads((SCHEMA_DIR / f"{name}.avsc").read_text())["fields"]
              if f["name"] != "policy_version"]
    old = fastavro.parse_schema({"type": "record", "name": "Old", "fields": fields})
    datum = {k: v for k, v in as_dict(record).items() if k != "policy_version"}
    if cls is LifecycleRecord:
        datum["skipped_stages"] = list(record.skipped_stages)
    decoded = decode_record(cls, avro_frame(7, old, datum), lambda schema_id: old if schema_id == 7 else None)
    assert decoded == record and decoded.policy_version is None
    wire = {k: v for k, v in wire_dict(record).items() if k != "policy_version"}
    assert decode_record(cls, json.dumps(wire).encode()).policy_version is None


def test_avro_datum_that_is_not_a_record() -> None:
    framed = avro_frame(9, "string", "hello")  # type: ignore[arg-type]
    assert error_of(framed, lambda schema_id: fastavro.parse_schema("string")).code == "not_an_object"


# --- dead letters ------------------------------------------------------------------------------------

def test_dlq_record_keeps_the_original_bytes_and_where_they_came_from() -> None:
    raw = b'{"event_id": "caf\xe9"'
    error = error_of(raw)
    record = dlq_record(raw, b"L1", error, "lead.form_fills", 2, 41)
    assert record == DlqRecord(
        error="invalid_utf8", detail=error.detail, source_topic="lead.form_fills",
        source_partition=2, source_offset=41, key=b"L1", original=raw,
    )


def test_dlq_record_of_a_tombstone_has_empty_original() -> None:
    record = dlq_record(None, None, error_of(b""), "lead.deal_stages", 0, 7)
    assert record.original == b"" and record.error == "empty_message"


def test_every_error_code_is_documented_in_one_line() -> None:
    assert set(ERROR_CODES) == {
        "invalid_utf8", "invalid_json", "not_an_object", "missing_field", "invalid_field",
        "unknown_event_type", "invalid_timestamp", "invalid_value", "unknown_schema_id", "invalid_avro",
        "empty_message", "message_too_large", "field_too_long", "future_timestamp",
    }
    assert all(doc and "\n" not in doc for doc in ERROR_CODES.values())


# --- round trips -------------------------------------------------------------------------------------

@settings(max_examples=300)
@given(events() | wild_events())
def test_json_round_trip(event: LeadEvent) -> None:
    assert decode(encode_event_json(event)) == event


@settings(max_examples=300)
@given(events() | wild_events())
def test_avro_round_trip(event: LeadEvent) -> None:
    assert decode(encode_event_avro(event), bundled_schemas()) == event


def test_every_event_type_is_covered_by_the_strategy_and_a_bundled_schema() -> None:
    assert set(EVENT_TYPES) <= set(BUNDLED_SCHEMA_IDS)
    seen = set()

    @settings(max_examples=200)
    @given(events())
    def collect(event: LeadEvent) -> None:
        seen.add(event.event_type)

    collect()
    assert seen == set(EVENT_TYPES)


def test_encode_event_avro_frames_with_the_given_schema_id() -> None:
    event = SalesTouched(event_id="e1", lead_id="L1", occurred_at=0, channel="call")
    framed = encode_event_avro(event, 4242)
    assert framed[:5] == struct.pack(">BI", 0, 4242)
    assert decode_avro(framed, lambda schema_id: bundled_schemas().schema("sales_touch")) == event


def _from_avro(value: bytes, schema: object) -> dict:
    body = io.BytesIO(value[5:])
    datum = fastavro.schemaless_reader(body, schema, None)
    for name in TIME_FIELDS & datum.keys():
        if isinstance(datum[name], dt.datetime):
            datum[name] = (datum[name] - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(milliseconds=1)
    return datum


@settings(max_examples=200)
@given(output_records())
def test_output_records_encode_to_avro_and_decode_back(record: Record) -> None:
    framed = encode_record_avro(record)
    name = {LifecycleRecord: "lifecycle_record", AlertRecord: "alert_record", DlqRecord: "dlq_record"}[type(record)]
    assert framed[:5] == struct.pack(">BI", 0, BUNDLED_SCHEMA_IDS[name])
    expected = as_dict(record)
    if isinstance(record, LifecycleRecord):
        expected["skipped_stages"] = list(record.skipped_stages)
    assert _from_avro(framed, bundled_schemas().schema(name)) == expected


@given(output_records())
def test_encode_json_is_the_wire_form(record: Record) -> None:
    assert json.loads(encode_json(record)) == wire_dict(record)


# --- schemas -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", sorted(SCHEMA_DIR.glob("*.avsc")), ids=lambda p: p.name)
def test_every_avsc_parses(path: Path) -> None:
    fastavro.parse_schema(json.loads(path.read_text()))


def test_every_bundled_schema_has_a_file_and_an_id() -> None:
    assert {p.stem for p in SCHEMA_DIR.glob("*.avsc")} == set(BUNDLED_SCHEMA_IDS)
    schemas = BundledSchemas()
    for name, schema_id in BUNDLED_SCHEMA_IDS.items():
        assert schemas(schema_id) is schemas.schema(name)
    assert schemas(0) is None


def _field_names(name: str) -> list[str]:
    return [f["name"] for f in json.loads((SCHEMA_DIR / f"{name}.avsc").read_text())["fields"]]


@given(output_records())
def test_json_wire_form_matches_the_avro_field_names_in_order(record: Record) -> None:
    name = {LifecycleRecord: "lifecycle_record", AlertRecord: "alert_record", DlqRecord: "dlq_record"}[type(record)]
    assert list(wire_dict(record)) == _field_names(name)


@given(events())
def test_event_json_matches_the_avro_field_names_in_order(event: LeadEvent) -> None:
    assert list(json.loads(encode_event_json(event))) == _field_names(event.event_type)


def test_time_fields_are_timestamp_millis_and_optional_fields_default_to_null() -> None:
    for path in SCHEMA_DIR.glob("*.avsc"):
        for field in json.loads(path.read_text())["fields"]:
            kinds = field["type"] if isinstance(field["type"], list) else [field["type"]]
            if field["name"] in TIME_FIELDS:
                assert {"type": "long", "logicalType": "timestamp-millis"} in kinds, (path.name, field["name"])
            if "null" in kinds:
                assert kinds[0] == "null" and field.get("default", ...) is None, (path.name, field["name"])


def test_namespaces() -> None:
    for name in BUNDLED_SCHEMA_IDS:
        namespace = json.loads((SCHEMA_DIR / f"{name}.avsc").read_text())["namespace"]
        assert namespace == ("io.leadflow.events" if name in EVENT_TYPES else "io.leadflow.outputs")



def test_lone_surrogate_escape_is_invalid_json_not_a_crash_later():
    """``json.loads`` accepts "\\ud800" but no UTF-8 writer can put it back out: refuse it at the door."""
    from lifecycle.errors import EventError as _EventError
    from schemas.codec import decode_json as _decode_json

    message = b'{"event_id":"e1","event_type":"form_fill","lead_id":"L\\ud800","occurred_at":"2026-03-02T10:00:00Z","form_type":"webinar"}'
    try:
        _decode_json(message)
    except _EventError as error:
        assert error.code == "invalid_json"
    else:
        raise AssertionError("a lone surrogate escape was accepted")


def test_non_finite_avro_amount_is_invalid_field() -> None:
    """Avro doubles can hold infinity, so the amount check itself still guards the Avro path."""
    from lifecycle.events import DealStageChanged

    event = DealStageChanged(event_id="e1", lead_id="L1", occurred_at=1_772_442_000_000, stage="created", amount=float("inf"))
    error = error_of(encode_event_avro(event), bundled_schemas())
    assert error.code == "invalid_field" and error.detail.startswith("amount")


@pytest.mark.parametrize("value, code", [
    (None, "empty_message"),
    (b"", "empty_message"),
    (b"\xff\xfe{}", "invalid_utf8"),
    (b"{not json", "invalid_json"),
    (b"[" * 2000 + b"]" * 2000, "invalid_json"),
    (b'{"x": "\\ud800"}', "invalid_json"),
    (b"\x00\x00\x00\x03\xe7body", "invalid_json"),      # byte 0 and no lookup
    (b"\x00\x00", "invalid_avro"),                         # with a lookup
    (b"\x00\x00\x00\x03\xe7body", "unknown_schema_id"),
])
def test_input_events_and_output_records_share_the_message_checks(value: bytes | None, code: str) -> None:
    """Empty, byte 0, UTF-8, JSON: one helper (``read_message``) for ``decode`` and ``decode_record``."""
    lookup = None if code == "invalid_json" else bundled_schemas()
    for decoder in (lambda v: decode(v, lookup), lambda v: decode_record(LifecycleRecord, v, lookup)):
        with pytest.raises(EventError) as caught:
            decoder(value)
        assert caught.value.code == code


@pytest.mark.parametrize("record", [
    AlertRecord(alert_id="a1", type="sla_warning", lead_id="L1", sla="first_touch", reason=None, level=2**31,
                stage="mql", owner_id=None, team=None, started_at=None, due_at=None, detected_at=0,
                overdue_by_ms=0),
    DlqRecord(error="invalid_json", detail="x", source_topic="t", source_partition=2**31, source_offset=None,
              key=None, original=b"{"),
])
def test_an_output_record_whose_integer_exceeds_its_avro_type_is_an_invalid_field(record: Record) -> None:
    with pytest.raises(EventError) as caught:
        decode_record(type(record), encode_json(record))
    assert caught.value.code == "invalid_field"


# --- size limits (issue 10: one message must never stop a partition) ----------------------------------

def test_a_message_over_the_size_limit_is_message_too_large_and_its_dead_letter_is_cut_down() -> None:
    from schemas.codec import DLQ_ORIGINAL_BYTES, MAX_MESSAGE_BYTES, dlq_record

    big = b'{"event_id":"e1","event_type":"form_fill","lead_id":"' + b"x" * 800_000 + b'"}'
    error = error_of(big)
    assert error.code == "message_too_large" and str(len(big)) in error.detail
    dead = dlq_record(big, b"k" * 400_000, error, "lead.form_fills", 3, 17)
    assert dead.error == "message_too_large" and dead.original == big[:DLQ_ORIGINAL_BYTES]
    assert len(dead.key) == DLQ_ORIGINAL_BYTES and (dead.source_partition, dead.source_offset) == (3, 17)
    assert len(encode_json(dead)) < 4 * DLQ_ORIGINAL_BYTES < MAX_MESSAGE_BYTES


def test_an_oversized_key_alone_cuts_the_dead_letter_down_too() -> None:
    from schemas.codec import dlq_record

    dead = dlq_record(b"not json", b"k" * 100_000, error_of(b"not json"), "t", 0, 0)
    assert dead.error == "message_too_large" and "invalid_json" in dead.detail


@pytest.mark.parametrize("field, size, code", [
    ("lead_id", 257, "field_too_long"), ("event_id", 300, "field_too_long"), ("form_type", 1025, "field_too_long"),
    ("lead_id", 256, None), ("form_type", 1024, None),
])
def test_ids_and_strings_have_length_limits(field: str, size: int, code: str | None) -> None:
    doc = {"event_id": "e1", "event_type": "form_fill", "lead_id": "L1", "form_type": "webinar",
           "occurred_at": "2026-03-02T10:00:00Z", field: "y" * size}
    value = json.dumps(doc).encode()
    if code is None:
        assert getattr(decode_json(value), field) == "y" * size
    else:
        assert error_of(value).code == code


# --- the range of time -----------------------------------------------------------------------------

@pytest.mark.parametrize("occurred_at", [
    "0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00Z", "1969-12-31T23:59:59.999Z",
    "9990-01-01T00:00:00Z", "9999-12-31T10:00:00Z", "9989-12-31T23:59:59-14:00",
])
def test_occurred_at_outside_the_range_of_time_is_an_invalid_timestamp(occurred_at: str) -> None:
    error = error_of(message(occurred_at=occurred_at))
    assert error.code == "invalid_timestamp" and "accepted range" in error.detail


@pytest.mark.parametrize(("occurred_at", "ms"), [
    ("1970-01-01T00:00:00Z", EARLIEST_MS), ("1970-01-01T01:00:00+01:00", EARLIEST_MS),
    ("9989-12-31T23:59:59.999Z", LATEST_MS),
])
def test_the_ends_of_the_range_are_accepted(occurred_at: str, ms: int) -> None:
    assert decode_json(message(occurred_at=occurred_at)).occurred_at == ms


@pytest.mark.parametrize("occurred_at", [-1, LATEST_MS + 1, 2**62])
def test_avro_times_outside_the_range_are_an_invalid_timestamp(occurred_at: int) -> None:
    schema = json.loads((SCHEMA_DIR / "form_fill.avsc").read_text())
    for f in schema["fields"]:
        if f["name"] == "occurred_at":
            f["type"] = "long"   # a producer's schema without the logical type: any long goes
    datum = {**VALID, "occurred_at": occurred_at, "form_id": None, "source": None}
    frame = avro_frame(1, schema, datum)
    assert error_of(frame, lambda _id: fastavro.parse_schema(schema)).code == "invalid_timestamp"


def test_an_output_record_with_a_time_outside_the_range_is_refused() -> None:
    record = AlertRecord(
        alert_id="a1", type="sla_warning", lead_id="L1", sla="first_touch", reason=None, level=0,
        stage="mql", owner_id=None, team=None, started_at=0, due_at=1, detected_at=LATEST_MS + 1,
        overdue_by_ms=0, resolves_alert_id=None)
    value = json.dumps({**wire_dict(record), "detected_at": "9999-12-31T00:00:00.000Z"}).encode()
    with pytest.raises(EventError) as caught:
        decode_record(AlertRecord, value)
    assert caught.value.code == "invalid_timestamp"
    with pytest.raises(EventError) as caught:
        decode_record(AlertRecord, encode_record_avro(record), bundled_schemas())
    assert caught.value.code == "invalid_timestamp"


def test_check_not_future_refuses_events_beyond_the_margin() -> None:
    event = decode_json(message(occurred_at="2026-03-02T10:00:00Z"))
    now = parse_time("2026-03-02T09:00:00Z")
    assert check_not_future(event, now, 3_600_000) is None              # exactly the margin ahead
    assert check_not_future(event, now + 3_600_000, 3_600_000) is None  # in the past
    error = check_not_future(event, now - 1, 3_600_000)
    assert error is not None and error.code == "future_timestamp" and error.code in ERROR_CODES
    assert "2026-03-02T10:00:00.000Z" in error.detail
    assert check_not_future(event, now - 1, 2 * 3_600_000) is None


@pytest.mark.parametrize("until", ["9990-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "0001-01-01T00:00:00+14:00"])
def test_a_hold_until_outside_the_range_is_an_invalid_timestamp(until: str) -> None:
    value = message(event_type="sales_disposition", decision="hold", until=until, form_type=...)
    error = error_of(value)
    assert error.code == "invalid_timestamp" and error.detail.startswith("until")
