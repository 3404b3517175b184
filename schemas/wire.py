"""The JSON wire form of output records, shared by every writer and reader of leadflow output.

One compact JSON object per record (orjson: byte-identical to the standard library's compact
``ensure_ascii=False`` form for these records, and ~15x faster), keys in the record's field order, times as RFC 3339 UTC with
milliseconds (``2026-01-05T09:00:00.000Z``), bytes as base64. Deterministic: the same record always
gives the same bytes.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import orjson

from lifecycle.records import TIME_FIELDS, AlertRecord, DlqRecord, LifecycleRecord, Record, as_dict

_UTC = dt.timezone.utc
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=_UTC)
_DAY_MS = 86_400_000
_day_prefix: dict[int, str] = {}  # days since the epoch -> "YYYY-MM-DDT"; a few hundred entries a year
_clock: dict[int, str] = {}  # second of the day -> "HH:MM:SS."; at most 86,400 entries


def format_time(ms: int) -> str:
    """Epoch milliseconds -> ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (hot: every output record has two or more).

    Always RFC 3339: a four-digit year, also before year 1000 (``strftime("%Y")`` writes ``1`` for
    year 1 on Linux). Every instant of ``datetime``'s range formats; leadflow's own records stay in
    ``lifecycle.calendar.EARLIEST_MS`` .. ``LATEST_MS``.
    """
    days, rest = divmod(ms, _DAY_MS)
    prefix = _day_prefix.get(days)
    if prefix is None:
        if len(_day_prefix) > 100_000:
            _day_prefix.clear()
        day = _EPOCH + dt.timedelta(days=days)
        prefix = _day_prefix[days] = f"{day.year:04d}-{day.month:02d}-{day.day:02d}T"
    seconds, millis = divmod(rest, 1000)
    clock = _clock.get(seconds)
    if clock is None:
        hours, minutes = divmod(seconds, 3600)
        minutes, second = divmod(minutes, 60)
        clock = _clock[seconds] = f"{hours:02d}:{minutes:02d}:{second:02d}."
    return f"{prefix}{clock}{millis:03d}Z"


def parse_time(text: str) -> int:
    """RFC 3339 with an offset (``Z`` or ``±HH:MM``) -> epoch milliseconds. ValueError otherwise.

    The result can lie outside the years 1-9999 in UTC (``0001-01-01T00:00:00+14:00``); callers
    check the range (``schemas.codec``: ``invalid_timestamp``)."""
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without offset: {text!r}")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def wire_dict(record: Record) -> dict[str, Any]:
    """The record as the JSON object that goes on the wire."""
    out = as_dict(record)
    for name, value in out.items():
        if value is None:
            continue
        if name in TIME_FIELDS:
            out[name] = format_time(value)
        elif isinstance(value, bytes):
            out[name] = base64.b64encode(value).decode("ascii")
        elif isinstance(value, tuple):
            out[name] = list(value)
    return out


def _lifecycle_wire(r: LifecycleRecord) -> dict[str, Any]:
    return {
        "transition_id": r.transition_id,
        "lead_id": r.lead_id,
        "from_stage": r.from_stage,
        "to_stage": r.to_stage,
        "trigger_event_id": r.trigger_event_id,
        "trigger_event_type": r.trigger_event_type,
        "occurred_at": format_time(r.occurred_at),
        "owner_id": r.owner_id,
        "team": r.team,
        "score": r.score,
        "skipped_stages": list(r.skipped_stages),
        "time_in_previous_stage_ms": r.time_in_previous_stage_ms,
        "reason": r.reason,
        "first_channel": r.first_channel,
        "first_campaign": r.first_campaign,
        "mql_channel": r.mql_channel,
        "mql_campaign": r.mql_campaign,
        "grade": r.grade,
        "amount": r.amount,
        "policy_version": r.policy_version,
    }


def _alert_wire(r: AlertRecord) -> dict[str, Any]:
    return {
        "alert_id": r.alert_id,
        "type": r.type,
        "lead_id": r.lead_id,
        "sla": r.sla,
        "reason": r.reason,
        "level": r.level,
        "stage": r.stage,
        "owner_id": r.owner_id,
        "team": r.team,
        "started_at": None if r.started_at is None else format_time(r.started_at),
        "due_at": None if r.due_at is None else format_time(r.due_at),
        "detected_at": format_time(r.detected_at),
        "overdue_by_ms": r.overdue_by_ms,
        "resolves_alert_id": r.resolves_alert_id,
        "evidence_event_id": r.evidence_event_id,
        "held_ms": r.held_ms,
        "policy_version": r.policy_version,
    }


# The two records written per event get explicit encoders (a third of replay's output cost);
# ``wire_dict`` stays the general definition, and a test holds the two to it.
_FAST = {LifecycleRecord: _lifecycle_wire, AlertRecord: _alert_wire}


def record_json(record: Record) -> bytes:
    fast = _FAST.get(type(record))
    return orjson.dumps(fast(record) if fast is not None else wire_dict(record))


# -- the inverse: wire form -> record ---------------------------------------------------------------

def _from_wire(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    for name in TIME_FIELDS.intersection(out):
        if out[name] is not None:
            out[name] = parse_time(out[name])
    return out


_LIFECYCLE_OPTIONAL = ("team", "reason", "first_channel", "first_campaign", "mql_channel", "mql_campaign", "grade",
                       "amount", "policy_version")


def lifecycle_from_wire(values: dict[str, Any]) -> LifecycleRecord:
    """The inverse of ``schemas.wire.wire_dict`` for a lifecycle record."""
    out = _from_wire(values)
    out["skipped_stages"] = tuple(out.get("skipped_stages") or ())
    for name in _LIFECYCLE_OPTIONAL:  # absent in records written before them
        out.setdefault(name, None)
    return LifecycleRecord(**{k: out[k] for k in LifecycleRecord.__slots__})


def alert_from_wire(values: dict[str, Any]) -> AlertRecord:
    """The inverse of ``schemas.wire.wire_dict`` for an alert."""
    out = _from_wire(values)
    for optional in ("resolves_alert_id", "evidence_event_id", "held_ms", "policy_version"):  # absent in older records
        out.setdefault(optional, None)
    return AlertRecord(**{k: out[k] for k in AlertRecord.__slots__})


def dlq_from_wire(values: dict[str, Any]) -> DlqRecord:
    """The inverse of ``schemas.wire.wire_dict`` for a DLQ record: ``key`` and ``original`` are
    base64 text (``binascii.Error``, a ValueError, when they are not). Absent fields are None."""
    out = {name: values.get(name) for name in DlqRecord.__slots__}
    for name in ("key", "original"):
        if out[name] is not None:
            out[name] = base64.b64decode(out[name], validate=True)
    return DlqRecord(**out)
