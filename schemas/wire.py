"""The JSON wire form of output records, shared by every writer and reader of leadflow output.

One compact JSON object per record, keys in the record's field order, times as RFC 3339 UTC with
milliseconds (``2026-01-05T09:00:00.000Z``), bytes as base64. Deterministic: the same record always
gives the same bytes.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

from lifecycle.records import TIME_FIELDS, Record, as_dict

_UTC = dt.timezone.utc
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=_UTC)


def format_time(ms: int) -> str:
    """Epoch milliseconds -> ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    moment = _EPOCH + dt.timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_time(text: str) -> int:
    """RFC 3339 with an offset (``Z`` or ``±HH:MM``) -> epoch milliseconds. ValueError otherwise."""
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


def record_json(record: Record) -> bytes:
    return json.dumps(wire_dict(record), separators=(",", ":"), ensure_ascii=False).encode()
