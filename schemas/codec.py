"""Bytes on a Kafka topic <-> typed events and records, with validation into stable DLQ error codes.

Input is one JSON object (UTF-8) or one Avro record in the Confluent wire format per message. Anything
that cannot become a valid event raises ``EventError(code, detail)``: ``code`` is one of
``ERROR_CODES`` (stable, machine-readable), ``detail`` names the offending field. The stream turns
that into a ``DlqRecord`` with ``dlq_record`` and goes on.

``decode_json`` runs for every event, so it is written for speed: one ``orjson.loads``, direct dict
access, one hand-written builder per event type, no schema interpretation per event. Unknown extra
fields are ignored, so producers may add fields before consumers know them.
"""

from __future__ import annotations

import binascii
import dataclasses
import datetime as dt
import functools
import io
import json
import math
import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, Final, Protocol

import fastavro
import fastavro.validation
import orjson

from lifecycle.calendar import EARLIEST_MS, LATEST_MS
from lifecycle.errors import EventError
from lifecycle.events import (
    DEAL_STAGES,
    DECISIONS,
    HOLD,
    EMAIL_ACTIONS,
    EVENT_TYPES,
    MAX_FIELD_NAME,
    MAX_FIELD_TEXT,
    MAX_FIELDS,
    TOUCH_CHANNELS,
    DealStageChanged,
    EmailEngaged,
    FormFilled,
    LeadAssigned,
    LeadEvent,
    SalesDispositioned,
    SalesTouched,
)
from lifecycle.records import TIME_FIELDS, AlertRecord, DlqRecord, LifecycleRecord, Record, RecordType, as_dict
from schemas.wire import alert_from_wire, dlq_from_wire, format_time, lifecycle_from_wire, parse_time, record_json

# --- error codes -------------------------------------------------------------------------------------

EMPTY_MESSAGE: Final = "empty_message"
INVALID_UTF8: Final = "invalid_utf8"
INVALID_JSON: Final = "invalid_json"
NOT_AN_OBJECT: Final = "not_an_object"
MISSING_FIELD: Final = "missing_field"
INVALID_FIELD: Final = "invalid_field"
UNKNOWN_EVENT_TYPE: Final = "unknown_event_type"
INVALID_TIMESTAMP: Final = "invalid_timestamp"
INVALID_VALUE: Final = "invalid_value"
UNKNOWN_SCHEMA_ID: Final = "unknown_schema_id"
INVALID_AVRO: Final = "invalid_avro"
MESSAGE_TOO_LARGE: Final = "message_too_large"
FIELD_TOO_LONG: Final = "field_too_long"
#: Size limits of an input event (docs/events.md). Anything larger is dead-lettered, so one message
#: can never make a lead's row, an output record or a dead letter too big for the broker.
MAX_MESSAGE_BYTES: Final = 64 * 1024
MAX_ID_CHARS: Final = 256  # event_id, lead_id: they recur in every output record and the row
MAX_TEXT_CHARS: Final = 1024  # every other string field
#: A dead letter of an oversized message keeps this many of its first bytes.
DLQ_ORIGINAL_BYTES: Final = 4096
FUTURE_TIMESTAMP: Final = "future_timestamp"

ERROR_CODES: Final[Mapping[str, str]] = {
    EMPTY_MESSAGE: "the message value is empty (zero bytes, or a tombstone)",
    INVALID_UTF8: "a JSON message, or an Avro string, is not valid UTF-8",
    INVALID_JSON: "the value is not one JSON document (syntax error, or nested too deep)",
    NOT_AN_OBJECT: "the JSON document, or the Avro datum, is not an object/record",
    MISSING_FIELD: "a required field is absent or null",
    INVALID_FIELD: "a field has the wrong type, a required string is empty, an amount is not finite, or a form fill's fields exceed their bounds",
    UNKNOWN_EVENT_TYPE: "event_type is a string but not one of the six event types",
    INVALID_TIMESTAMP: "occurred_at (JSON) is not an RFC 3339 date-time with an offset, or names no real "
                       "instant, or (JSON and Avro) lies outside 1970-01-01T00:00:00Z .. 9989-12-31T23:59:59.999Z",
    INVALID_VALUE: "a value outside its enum: email action, touch channel, disposition decision, deal stage",
    UNKNOWN_SCHEMA_ID: "the Avro schema id is not known to the schema lookup",
    INVALID_AVRO: "bad magic byte, frame under 5 bytes, or a body that does not decode (truncated, trailing bytes, time out of range)",
    MESSAGE_TOO_LARGE: f"the message is over {MAX_MESSAGE_BYTES} bytes; its dead letter keeps the first {DLQ_ORIGINAL_BYTES} bytes and the size",
    FIELD_TOO_LONG: f"event_id or lead_id over {MAX_ID_CHARS} characters, or another string over {MAX_TEXT_CHARS}",
    FUTURE_TIMESTAMP: "live only: occurred_at is further ahead of the worker's clock than LEADFLOW_FUTURE_MARGIN (default 1 h)",
}
"""Every code an ``EventError`` from this module can carry, with its meaning. Codes never change."""

#: The accepted range of ``occurred_at`` (and of every time in an output record read back), as text.
_RANGE_TEXT: Final = f"the accepted range {format_time(EARLIEST_MS)} .. {format_time(LATEST_MS)}"


# --- shared validation -------------------------------------------------------------------------------

def _absent_or_wrong(name: str, value: object, expected: str) -> EventError:
    if value is None:
        return EventError(MISSING_FIELD, f"{name}: required")
    return EventError(INVALID_FIELD, f"{name}: expected {expected}, got {_shown(value)}")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _too_long(name: str, value: str, limit: int) -> EventError:
    return EventError(FIELD_TOO_LONG, f"{name}: {len(value)} characters, over the limit of {limit}")


def _required(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if type(value) is str and value:
        if len(value) > MAX_TEXT_CHARS:
            raise _too_long(name, value, MAX_TEXT_CHARS)
        return value
    raise _absent_or_wrong(name, value, "a non-empty string")


def _optional(obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is None:
        return value
    if type(value) is str:
        if len(value) > MAX_TEXT_CHARS:
            raise _too_long(name, value, MAX_TEXT_CHARS)
        return value
    raise EventError(INVALID_FIELD, f"{name}: expected a string or null, got {_shown(value)}")


def _member(name: str, value: str, allowed: frozenset[str]) -> str:
    if value in allowed:
        return value
    raise EventError(INVALID_VALUE, f"{name}: {_shown(value)} is not one of {', '.join(sorted(allowed))}")


def _amount(obj: dict[str, Any]) -> float | None:
    value = obj.get("amount")
    kind = type(value)
    if value is None:
        return None
    if kind is float or kind is int:  # never bool: type() is exact
        try:
            amount = float(value)
        except OverflowError:
            amount = math.inf
        if math.isfinite(amount):
            return amount
    raise EventError(INVALID_FIELD, f"amount: expected a finite number or null, got {_shown(value)}")


_LONG: Final = 2**63


def _fields(obj: dict[str, Any]) -> tuple[tuple[str, str | int | float], ...]:
    """A form fill's ``fields``: an object of name -> string or finite number, within the bounds of
    ``lifecycle.events`` (``MAX_FIELDS`` entries, names up to ``MAX_FIELD_NAME`` characters, strings
    up to ``MAX_FIELD_TEXT``). A null value carries nothing and is left out; anything else is an
    ``invalid_field`` naming the field."""
    value = obj.get("fields")
    if value is None:
        return ()
    if type(value) is not dict:
        raise EventError(INVALID_FIELD, f"fields: expected an object of name -> string or number, got {_shown(value)}")
    if len(value) > MAX_FIELDS:
        raise EventError(INVALID_FIELD, f"fields: {len(value)} entries, at most {MAX_FIELDS}")
    out = []
    for name, item in value.items():
        if not name or len(name) > MAX_FIELD_NAME:
            raise EventError(INVALID_FIELD, f"fields: a name must have 1 to {MAX_FIELD_NAME} characters, got {_shown(name)}")
        kind = type(item)
        if kind is str:
            if len(item) > MAX_FIELD_TEXT:
                raise EventError(INVALID_FIELD, f"fields[{_shown(name)}]: {len(item)} characters, at most {MAX_FIELD_TEXT}")
        elif kind is int:
            if not -_LONG <= item < _LONG:
                raise EventError(INVALID_FIELD, f"fields[{_shown(name)}]: integer beyond 64 bits")
        elif kind is float:
            if not math.isfinite(item):
                raise EventError(INVALID_FIELD, f"fields[{_shown(name)}]: expected a finite number, got {_shown(item)}")
        elif item is None:
            continue
        else:  # bool, list, object
            raise EventError(INVALID_FIELD, f"fields[{_shown(name)}]: expected a string or number, got {_shown(item)}")
        out.append((name, item))
    return tuple(out)


# One builder per event type: field access written out, so decoding interprets no schema per event.

def _form_fill(obj: dict[str, Any], event_id: str, lead_id: str, occurred_at: int, source: str | None) -> LeadEvent:
    return FormFilled(
        event_id=event_id, lead_id=lead_id, occurred_at=occurred_at, source=source,
        form_type=_required(obj, "form_type"), form_id=_optional(obj, "form_id"),
        utm_source=_optional(obj, "utm_source"), utm_medium=_optional(obj, "utm_medium"),
        utm_campaign=_optional(obj, "utm_campaign"), fields=_fields(obj),
    )


def _email_engagement(obj: dict[str, Any], event_id: str, lead_id: str, occurred_at: int, source: str | None) -> LeadEvent:
    return EmailEngaged(
        event_id=event_id, lead_id=lead_id, occurred_at=occurred_at, source=source,
        action=_member("action", _required(obj, "action"), EMAIL_ACTIONS),
        campaign_id=_optional(obj, "campaign_id"),
    )


def _sales_touch(obj: dict[str, Any], event_id: str, lead_id: str, occurred_at: int, source: str | None) -> LeadEvent:
    channel = _optional(obj, "channel")
    if channel is not None:
        _member("channel", channel, TOUCH_CHANNELS)
    return SalesTouched(
        event_id=event_id, lead_id=lead_id, occurred_at=occurred_at, source=source,
        rep_id=_optional(obj, "rep_id"), channel=channel, outcome=_optional(obj, "outcome"),
    )


def _lead_assigned(obj: dict[str, Any], event_id: str, lead_id: str, occurred_at: int, source: str | None) -> LeadEvent:
    return LeadAssigned(
        event_id=event_id, lead_id=lead_id, occurred_at=occurred_at, source=source,
        owner_id=_required(obj, "owner_id"), team=_optional(obj, "team"),
    )


def _sales_disposition(obj: dict[str, Any], event_id: str, lead_id: str, occurred_at: int, source: str | None) -> LeadEvent:
    return SalesDispositioned(
        event_id=event_id, lead_id=lead_id, occurred_at=occurred_at, source=source,
        decision=_member("decision", _required(obj, "decision"), DECISIONS),
        reason=_optional(obj, "reason"), rep_id=_optional(obj, "rep_id"),
    )


def _deal_stage_change(obj: dict[str, Any], event_id: str, lead_id: str, occurred_at: int, source: str | None) -> LeadEvent:
    return DealStageChanged(
        event_id=event_id, lead_id=lead_id, occurred_at=occurred_at, source=source,
        stage=_member("stage", _required(obj, "stage"), DEAL_STAGES),
        deal_id=_optional(obj, "deal_id"), amount=_amount(obj),
    )


_Builder = Callable[[dict[str, Any], str, str, int, "str | None"], LeadEvent]
_BUILDERS: Final[dict[str, _Builder]] = {
    FormFilled.event_type: _form_fill,
    EmailEngaged.event_type: _email_engagement,
    SalesTouched.event_type: _sales_touch,
    LeadAssigned.event_type: _lead_assigned,
    SalesDispositioned.event_type: _sales_disposition,
    DealStageChanged.event_type: _deal_stage_change,
}
assert _BUILDERS.keys() == EVENT_TYPES.keys(), "a builder per event type"


def _event(obj: object, occurred_at_of: Callable[[object], int]) -> LeadEvent:
    """The validated event in ``obj`` (a decoded JSON object or Avro datum)."""
    if type(obj) is not dict:
        raise EventError(NOT_AN_OBJECT, f"expected an object, got {type(obj).__name__}")
    event_type = obj.get("event_type")
    builder = _BUILDERS.get(event_type) if type(event_type) is str else None
    if builder is None:
        if type(event_type) is str and event_type:
            raise EventError(UNKNOWN_EVENT_TYPE, f"event_type: {_shown(event_type)}")
        raise _absent_or_wrong("event_type", event_type, "a non-empty string")
    event_id = obj.get("event_id")
    if type(event_id) is not str or not event_id:
        raise _absent_or_wrong("event_id", event_id, "a non-empty string")
    lead_id = obj.get("lead_id")
    if type(lead_id) is not str or not lead_id:
        raise _absent_or_wrong("lead_id", lead_id, "a non-empty string")
    if len(event_id) > MAX_ID_CHARS or len(lead_id) > MAX_ID_CHARS:
        name, value = ("event_id", event_id) if len(event_id) > MAX_ID_CHARS else ("lead_id", lead_id)
        raise _too_long(name, value, MAX_ID_CHARS)
    occurred_at = occurred_at_of(obj.get("occurred_at"))
    if not EARLIEST_MS <= occurred_at <= LATEST_MS:
        raise EventError(INVALID_TIMESTAMP, f"occurred_at: {_shown(obj.get('occurred_at'))} is outside "
                                            f"{_RANGE_TEXT}")
    source = obj.get("source")
    if source is not None and (type(source) is not str or len(source) > MAX_TEXT_CHARS):
        if type(source) is str:
            raise _too_long("source", source, MAX_TEXT_CHARS)
        raise EventError(INVALID_FIELD, f"source: expected a string or null, got {_shown(source)}")
    event = builder(obj, event_id, lead_id, occurred_at, source)
    if type(event) is SalesDispositioned and obj.get("until") is not None:
        event = _with_until(event, obj["until"], occurred_at_of)
    return event


def _with_until(event: SalesDispositioned, value: object, time_of: Callable[[object], int]) -> LeadEvent:
    """A hold's ``until``, read like ``occurred_at`` (RFC 3339 in JSON, timestamp-millis in Avro)."""
    if event.decision != HOLD:
        raise EventError(INVALID_FIELD, f"until: only a hold has an end, not {event.decision!r}")
    try:
        until = time_of(value)
    except EventError as error:
        raise EventError(error.code, "until" + error.detail.removeprefix("occurred_at")) from None
    if not EARLIEST_MS <= until <= LATEST_MS:
        raise EventError(INVALID_TIMESTAMP, f"until: {_shown(value)} is outside {_RANGE_TEXT}")
    return dataclasses.replace(event, until=until)


# --- JSON --------------------------------------------------------------------------------------------

# RFC 3339 section 5.6 (full-date "T" full-time), "T"/"Z" in either case; fromisoformat alone would
# also take ISO 8601 forms that are not RFC 3339 (week dates, basic format, missing seconds).
_RFC3339: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
).fullmatch


def _json_occurred_at(value: object) -> int:
    if type(value) is not str:
        raise _absent_or_wrong("occurred_at", value, "an RFC 3339 string")
    if _RFC3339(value) is not None:
        try:
            return parse_time(value)
        except ValueError:
            try:  # lower-case "t"/"z" are RFC 3339 too, fromisoformat does not take them
                return parse_time(value.upper())
            except ValueError:
                pass
    raise EventError(INVALID_TIMESTAMP, f"occurred_at: {_shown(value)} is not RFC 3339 with an offset")


def json_document(value: bytes | None) -> Any:
    """The JSON document of one message; ``EventError`` with ``empty_message``, ``invalid_utf8`` or
    ``invalid_json`` otherwise. Shared by input events and output records read back."""
    if not value:
        raise EventError(EMPTY_MESSAGE, "empty message")
    try:
        # orjson, not json: 4-5x faster here, and it refuses what the standard library lets
        # through but cannot write back out (lone surrogate escapes such as "\ud800"). It also
        # refuses bytes that are not UTF-8; only then is the cause looked up.
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        try:
            str(value, "utf-8")
        except UnicodeDecodeError as bad:
            raise EventError(INVALID_UTF8, f"byte {bad.start}: {bad.reason}") from None
        raise EventError(INVALID_JSON, str(exc)) from None


def _check_size(value: bytes | None) -> None:
    if value is not None and len(value) > MAX_MESSAGE_BYTES:
        raise EventError(MESSAGE_TOO_LARGE, f"{len(value)} bytes, over the limit of {MAX_MESSAGE_BYTES}")


def decode_json(value: bytes) -> LeadEvent:
    """One JSON message -> a validated event; ``EventError`` with a code of ``ERROR_CODES`` otherwise."""
    _check_size(value)
    return _event(json_document(value), _json_occurred_at)


def check_not_future(event: LeadEvent, now_ms: int, margin_ms: int) -> EventError | None:
    """``future_timestamp`` when ``event`` happened more than ``margin_ms`` after ``now_ms`` (the live
    worker's wall clock; ``LEADFLOW_FUTURE_MARGIN``, default 1 h), else None.

    Live, the clock of every SLA is the wall clock, so an event from the future cannot be judged
    now: a producer's clock is wrong, or a date was mistyped (2062 for 2026). The worker
    dead-letters it instead of applying it. Replay has no wall clock and applies every event; its
    summary warns when its clock jumps ahead (``leadflow.replay.ClockWatch``).
    """
    ahead = event.occurred_at - now_ms
    if ahead <= margin_ms:
        return None
    return EventError(FUTURE_TIMESTAMP, f"occurred_at {format_time(event.occurred_at)} is {ahead / 3_600_000:.1f} h "
                                        f"ahead of the clock ({format_time(now_ms)}); the margin is "
                                        f"{margin_ms / 3_600_000:g} h")


def _event_dict(event: LeadEvent) -> dict[str, Any]:
    """The event's fields in schema order: the common ones, then the type's own."""
    out: dict[str, Any] = {"event_id": event.event_id, "event_type": event.event_type}
    for field in fields(event):
        out[field.name] = getattr(event, field.name)
    if type(event) is FormFilled:
        out["fields"] = dict(event.fields)
    return out


def encode_event_json(event: LeadEvent) -> bytes:
    """An event as a producer would send it: ``occurred_at`` as RFC 3339 UTC with milliseconds."""
    out = _event_dict(event)
    out["occurred_at"] = format_time(event.occurred_at)
    return orjson.dumps(out)


def encode_json(record: Record) -> bytes:
    """An output record in its JSON wire form (see ``schemas.wire``)."""
    return record_json(record)


# --- Avro --------------------------------------------------------------------------------------------

_MAGIC: Final = 0
_FRAME: Final = struct.Struct(">BI")
_SCHEMA_DIR: Final = Path(__file__).parent
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MS: Final = dt.timedelta(milliseconds=1)

ParsedSchema = Any
"""A schema as ``fastavro.parse_schema`` returns it."""


class SchemaLookup(Protocol):
    """Schema id -> parsed writer schema, or None when the id is unknown. A registry client fits too."""

    def __call__(self, schema_id: int) -> ParsedSchema | None: ...


BUNDLED_SCHEMA_IDS: Final[Mapping[str, int]] = {
    "form_fill": 1,
    "email_engagement": 2,
    "sales_touch": 3,
    "lead_assigned": 4,
    "sales_disposition": 5,
    "deal_stage_change": 6,
    "lifecycle_record": 101,
    "alert_record": 102,
    "dlq_record": 103,
}
"""Fixed ids of the bundled ``schemas/<name>.avsc`` files: inputs 1-6, outputs 101-103. Stable: a
message framed with one of these ids must keep decoding."""

_RECORD_SCHEMA: Final[Mapping[type, str]] = {
    LifecycleRecord: "lifecycle_record",
    AlertRecord: "alert_record",
    DlqRecord: "dlq_record",
}


class BundledSchemas:
    """A ``SchemaLookup`` over the .avsc files shipped in ``schemas/``, with the ids of ``BUNDLED_SCHEMA_IDS``."""

    def __init__(self, directory: Path = _SCHEMA_DIR) -> None:
        self._by_name: dict[str, ParsedSchema] = {
            name: fastavro.parse_schema(json.loads((directory / f"{name}.avsc").read_text("utf-8")))
            for name in BUNDLED_SCHEMA_IDS
        }
        self._by_id = {BUNDLED_SCHEMA_IDS[name]: schema for name, schema in self._by_name.items()}

    def __call__(self, schema_id: int) -> ParsedSchema | None:
        return self._by_id.get(schema_id)

    def schema(self, name: str) -> ParsedSchema:
        """The parsed schema of ``schemas/<name>.avsc``, e.g. ``schema("form_fill")``."""
        return self._by_name[name]

    def schema_id(self, name: str) -> int:
        return BUNDLED_SCHEMA_IDS[name]


@functools.cache
def bundled_schemas() -> BundledSchemas:
    """The bundled schemas, parsed once per process."""
    return BundledSchemas()


def _avro_occurred_at(value: object) -> int:
    kind = type(value)
    if kind is int:
        return value  # type: ignore[return-value]
    if kind is dt.datetime and value.tzinfo is not None:  # type: ignore[union-attr]
        return (value - _EPOCH) // _MS  # type: ignore[operator]
    raise _absent_or_wrong("occurred_at", value, "a timestamp-millis long")


def read_avro(value: bytes, lookup: SchemaLookup) -> Any:
    """The datum of one Confluent-framed Avro message, by its writer schema; ``EventError`` with
    ``empty_message``, ``invalid_avro``, ``unknown_schema_id`` or ``invalid_utf8`` otherwise.

    Shared by input events (``decode_avro``) and output records read back (``streams.relay``).
    """
    if not value:
        raise EventError(EMPTY_MESSAGE, "empty message")
    if len(value) < _FRAME.size:
        raise EventError(INVALID_AVRO, f"frame of {len(value)} bytes, shorter than magic byte and schema id")
    magic, schema_id = _FRAME.unpack_from(value)
    if magic != _MAGIC:
        raise EventError(INVALID_AVRO, f"magic byte {magic}, expected {_MAGIC}")
    schema = lookup(schema_id)
    if schema is None:
        raise EventError(UNKNOWN_SCHEMA_ID, f"schema id {schema_id}")
    body = io.BytesIO(value)
    body.seek(_FRAME.size)
    try:
        datum = fastavro.schemaless_reader(body, schema, None)
    except UnicodeDecodeError as exc:
        raise EventError(INVALID_UTF8, f"Avro string, schema id {schema_id}: {exc.reason}") from None
    except Exception as exc:  # fastavro signals a bad body with EOFError, ValueError, IndexError, ...
        raise EventError(INVALID_AVRO, f"schema id {schema_id}: {type(exc).__name__}: {exc}") from None
    if body.tell() != len(value):
        raise EventError(INVALID_AVRO, f"schema id {schema_id}: {len(value) - body.tell()} trailing bytes")
    return datum


def decode_avro(value: bytes, lookup: SchemaLookup) -> LeadEvent:
    """One Confluent-framed Avro message -> a validated event, under the same rules as JSON."""
    _check_size(value)
    return _event(read_avro(value, lookup), _avro_occurred_at)


def read_message(value: bytes | None, lookup: SchemaLookup | None = None) -> tuple[Any, bool]:
    """``(document, is_avro)`` of one message: the Avro datum of a Confluent-framed value (first
    byte 0) when a lookup is given, else the JSON document. ``EventError`` when it is neither; the
    caller checks the shape. Shared by input events (``decode``) and output records (``decode_record``).
    """
    if not value:
        raise EventError(EMPTY_MESSAGE, "empty message")
    if value[0] == _MAGIC:
        if lookup is None:
            raise EventError(INVALID_JSON, "starts with byte 0 (Avro framing?) and no schema lookup is configured")
        return read_avro(value, lookup), True
    return json_document(value), False


def decode(value: bytes | None, lookup: SchemaLookup | None = None) -> LeadEvent:
    """Any input message: Confluent-framed Avro (first byte 0) when a lookup is given, else JSON."""
    _check_size(value)
    document, is_avro = read_message(value, lookup)
    return _event(document, _avro_occurred_at if is_avro else _json_occurred_at)


def _frame(schema_id: int, schema: ParsedSchema, datum: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    out.write(_FRAME.pack(_MAGIC, schema_id))
    fastavro.schemaless_writer(out, schema, datum)
    return out.getvalue()


def encode_avro(record: Record, schema_id: int, schema: ParsedSchema) -> bytes:
    """An output record as Confluent-framed Avro under ``schema`` (e.g. ``bundled_schemas().schema("alert_record")``)."""
    datum = as_dict(record)
    if isinstance(record, LifecycleRecord):
        datum["skipped_stages"] = list(record.skipped_stages)
    return _frame(schema_id, schema, datum)


def encode_record_avro(record: Record) -> bytes:
    """An output record as Confluent-framed Avro under its bundled schema and id."""
    name = _RECORD_SCHEMA[type(record)]
    schemas = bundled_schemas()
    return encode_avro(record, schemas.schema_id(name), schemas.schema(name))


def encode_event_avro(event: LeadEvent, schema_id: int | None = None) -> bytes:
    """An event as Confluent-framed Avro under its bundled schema; ``schema_id`` defaults to the bundled id."""
    schemas = bundled_schemas()
    name = event.event_type
    return _frame(schemas.schema_id(name) if schema_id is None else schema_id, schemas.schema(name), _event_dict(event))


# --- output records read back (the sink relay, the report) -------------------------------------------

_IDS: Final = frozenset({"transition_id", "alert_id", "lead_id"})
_FROM_WIRE: Final[Mapping[type, Callable[[dict[str, Any]], Any]]] = {
    LifecycleRecord: lifecycle_from_wire, AlertRecord: alert_from_wire, DlqRecord: dlq_from_wire,
}


def _record_schema(cls: RecordType) -> ParsedSchema:
    return bundled_schemas().schema(_RECORD_SCHEMA[cls])


@functools.cache
def _required_fields(cls: RecordType) -> tuple[str, ...]:
    """The fields of ``cls`` that its bundled schema does not let be null."""
    return tuple(f["name"] for f in _record_schema(cls)["fields"]
                 if not (type(f["type"]) is list and "null" in f["type"]))


def _schema_name(schema: Any) -> str:
    return schema if type(schema) is str else str(schema.get("logicalType") or schema.get("type"))


def _valid(record: Record) -> Record:
    """``record``, if every field holds what its bundled schema allows and no id is empty.

    The schema is the output contract of every writer (an Avro writer could not encode anything
    else), so a wrong type or an integer beyond its Avro range is refused here, before a sink.
    """
    cls = type(record)
    for name in _required_fields(cls):
        if getattr(record, name) is None:
            raise EventError(MISSING_FIELD, f"{name}: required")
    for name in _IDS.intersection(cls.__slots__):
        if getattr(record, name) == "":
            raise EventError(INVALID_FIELD, f"{name}: empty")
    for name in TIME_FIELDS.intersection(cls.__slots__):
        value = getattr(record, name)
        if type(value) is int and not EARLIEST_MS <= value <= LATEST_MS:
            raise EventError(INVALID_TIMESTAMP, f"{name}: {value} ms is outside {_RANGE_TEXT}")
    try:
        fastavro.validation.validate(as_dict(record), _record_schema(cls), raise_errors=True)
    except fastavro.validation.ValidationError as exc:
        errors = exc.errors
        name = errors[0].field.rsplit(".", 1)[-1]
        expected = " or ".join(_schema_name(e.schema) for e in errors)
        raise EventError(INVALID_FIELD, f"{name}: expected {expected}, got {_shown(errors[0].datum)}") from None
    return record


def _record_from_json(cls: RecordType, obj: dict[str, Any]) -> Record:
    for name in TIME_FIELDS.intersection(obj):
        if obj[name] is not None and type(obj[name]) is not str:
            raise EventError(INVALID_FIELD, f"{name}: expected an RFC 3339 string, got {_shown(obj[name])}")
    skipped = obj.get("skipped_stages")
    if cls is LifecycleRecord and skipped is not None and type(skipped) is not list:
        raise EventError(INVALID_FIELD, f"skipped_stages: expected a list, got {_shown(skipped)}")
    if cls is DlqRecord:
        for name in ("key", "original"):
            if obj.get(name) is not None and type(obj[name]) is not str:
                raise EventError(INVALID_FIELD, f"{name}: expected base64 text, got {_shown(obj[name])}")
    for name in _required_fields(cls):
        if obj.get(name) is None:
            raise EventError(MISSING_FIELD, f"{name}: required")
    try:
        record = _FROM_WIRE[cls](obj)
    except KeyError as exc:  # a nullable field the wire form always carries
        raise EventError(MISSING_FIELD, f"{exc.args[0]}: required") from None
    except binascii.Error as exc:
        raise EventError(INVALID_FIELD, f"not base64: {exc}") from None
    except (ValueError, TypeError) as exc:
        raise EventError(INVALID_TIMESTAMP, f"not RFC 3339 with an offset: {exc}") from None
    return _valid(record)


def _record_from_avro(cls: RecordType, datum: dict[str, Any]) -> Record:
    values = {name: datum.get(name) for name in cls.__slots__}
    for name in TIME_FIELDS.intersection(values):
        if isinstance(values[name], dt.datetime):  # timestamp-millis, read as an aware datetime
            values[name] = (values[name] - _EPOCH) // _MS
    if cls is LifecycleRecord and type(values["skipped_stages"]) is list:
        values["skipped_stages"] = tuple(values["skipped_stages"])
    return _valid(cls(**values))


def decode_record(cls: RecordType, value: bytes | None, lookup: SchemaLookup | None = None) -> Record:
    """One output-topic value -> the record of type ``cls`` it carries; ``EventError`` with a code of
    ``ERROR_CODES`` when it holds none.

    JSON (the wire form of ``schemas.wire``) or, when it starts with byte 0 and ``lookup`` is given,
    Confluent-framed Avro. Every field is checked against the record's bundled schema.
    """
    document, is_avro = read_message(value, lookup)
    if type(document) is not dict:
        raise EventError(NOT_AN_OBJECT, f"expected an object, got {type(document).__name__}")
    return _record_from_avro(cls, document) if is_avro else _record_from_json(cls, document)


# --- dead letters ------------------------------------------------------------------------------------

def dlq_record(
    value: bytes | None,
    key: bytes | None,
    error: EventError,
    topic: str,
    partition: int | None,
    offset: int | None,
) -> DlqRecord:
    """The dead letter for a message that failed to decode: the original bytes, where they came from, why.

    A message too large to be carried whole (so its dead letter could be refused by the broker) is
    cut down to its first ``DLQ_ORIGINAL_BYTES`` with code ``message_too_large`` and its size; so
    is a key of that size.
    """
    original = b"" if value is None else bytes(value)
    code, detail = error.code, error.detail
    if len(original) > MAX_MESSAGE_BYTES or (key is not None and len(key) > MAX_MESSAGE_BYTES):
        if code != MESSAGE_TOO_LARGE:
            detail = f"{len(original)} bytes (key {len(key or b'')} bytes): {code}: {detail}"
        code = MESSAGE_TOO_LARGE
        original = original[:DLQ_ORIGINAL_BYTES]
        if key is not None:
            key = key[:DLQ_ORIGINAL_BYTES]
    return DlqRecord(
        error=code,
        detail=detail,
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        key=None if key is None else bytes(key),
        original=original,
    )
