"""The lead table's row as bytes: ``{"v", "wake", "lead", "outbox", "held"}`` in JSON (orjson).

``v`` is the row's version (``Row.version``, stamped with the writer's consumer generation by
``streams.ownership.stamped``), ``wake`` its next wake-up (read alone when timers are
rebuilt after a recovery), ``lead`` the lead's state (``Lead.to_state``; null while its first event
is still held), ``outbox`` the kept output of recent messages:
``[message_id, topic, partition, offset, [[kind, wire_json], ...]]``, ``held`` the events waiting
for the reorder window (their fields, with ``event_type``). Rows written before versions or holds
existed read as version 0 with nothing held.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

import dataclasses

from lifecycle.application import Position, Row, Sent
from lifecycle.events import EVENT_TYPES, LeadEvent
from lifecycle.lead import Lead
from lifecycle.records import LifecycleRecord

LIFECYCLE: Final = "L"
ALERT: Final = "A"
#: Kinds of outbox entries written before records were encoded once: JSON wire text.
LIFECYCLE_JSON: Final = "l"
ALERT_JSON: Final = "a"
EMPTY: Final[Row] = Row()
_new = tuple.__new__  # a NamedTuple (``Position``) built without its keyword-parsing ``__new__``

#: What the outbox keeps of a record: which output it goes to, and its encoded bytes (JSON or Avro,
#: as sent) held as a latin-1 string, which JSON carries byte for byte.
Kept = tuple[str, str]


def keep(record: Any, encoded: bytes) -> Kept:
    return (LIFECYCLE if type(record) is LifecycleRecord else ALERT, encoded.decode("latin-1"))


def _event_doc(event: LeadEvent) -> dict[str, Any]:
    doc = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    doc["event_type"] = event.event_type
    return doc


def _event(doc: dict[str, Any]) -> LeadEvent:
    fields = dict(doc)
    if "fields" in fields:  # a form fill's (name, value) pairs come back from JSON as lists
        fields["fields"] = tuple((name, value) for name, value in fields["fields"])
    return EVENT_TYPES[fields.pop("event_type")](**fields)


def encode(row: Row, version: int | None = None) -> bytes:
    """``row`` as the table keeps it; ``version``: the one to write instead of ``row.version`` (the
    worker's, ``streams.ownership.stamped``)."""
    doc: dict[str, Any] = {
        "v": row.version if version is None else version,
        "wake": row.wake_at,
        "lead": row.lead.to_state() if row.lead is not None else None,
        # the kept records are (kind, payload) tuples: orjson writes a tuple as the list it once was
        "outbox": [[s.message_id, *s.position, s.records] for s in row.outbox],
    }
    if row.held:
        doc["held"] = [_event_doc(event) for event in row.held]
    return orjson.dumps(doc)


def decode(raw: bytes) -> Row:
    doc = orjson.loads(raw)
    outbox = tuple([
        Sent(message_id, _new(Position, (topic, partition, offset)), tuple([(kind, payload) for kind, payload in kept]))
        for message_id, topic, partition, offset, kept in doc["outbox"]
    ])
    lead = Lead.from_state(doc["lead"]) if doc["lead"] is not None else None
    held = tuple(_event(event) for event in doc.get("held", ()))
    return Row(lead, outbox, doc.get("v", 0), held, doc.get("wake"))


_V: Final = b'{"v":'


def version_of(raw: bytes | None) -> int:
    """The version of an encoded row (-1 for none, 0 for a row without one).

    ``encode`` writes ``v`` first, so it is read from the row's first bytes: recovery and standby
    replicas call this for every changelog record."""
    if not raw:
        return -1
    if raw[:5] == _V:
        end = raw.find(b",", 5)
        if end > 5:
            try:
                return int(raw[5:end])
            except ValueError:
                pass
    return orjson.loads(raw).get("v", 0)


_WAKE: Final = b',"wake":'


def wake_of(raw: bytes) -> int | None:
    """The next wake-up of an encoded row, or None.

    ``encode`` writes ``wake`` right after ``v``, so it is read from the row's first bytes: a
    takeover rebuilds its timers with one call per lead (100 000 leads: 0.8 s of a blocked event
    loop when every row was parsed whole)."""
    if raw[:5] == _V:
        start = raw.find(_WAKE, 5, 40)
        if start > 0:
            start += len(_WAKE)
            end = raw.find(b",", start, start + 24)
            if end > start:
                value = raw[start:end]
                if value == b"null":
                    return None
                try:
                    return int(value)
                except ValueError:
                    pass
    return orjson.loads(raw).get("wake")
