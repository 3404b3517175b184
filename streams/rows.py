"""The lead table's row as bytes: ``{"v", "wake", "lead", "outbox"}`` in JSON (orjson).

``v`` is the row's version (``Row.version``), ``wake`` its next wake-up (read alone when timers are
rebuilt after a recovery), ``lead`` the lead's state (``Lead.to_state``), ``outbox`` the kept output
of recent messages: ``[message_id, topic, partition, offset, [[kind, wire_json], ...]]``. Rows
written before versions existed read as version 0.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from lifecycle.application import Position, Row, Sent
from lifecycle.lead import Lead
from lifecycle.records import LifecycleRecord
from schemas import codec

LIFECYCLE: Final = "l"
ALERT: Final = "a"
EMPTY: Final[Row] = Row()

#: What the outbox keeps of a record: which output it goes to, and its JSON wire form.
Kept = tuple[str, str]


def encode_record(record: Any) -> Kept:
    return (LIFECYCLE if type(record) is LifecycleRecord else ALERT, codec.encode_json(record).decode())


def encode(row: Row) -> bytes:
    assert row.lead is not None
    return orjson.dumps({
        "v": row.version,
        "wake": row.wake_at,
        "lead": row.lead.to_state(),
        "outbox": [[s.message_id, *s.position, [list(kept) for kept in s.records]] for s in row.outbox],
    })


def decode(raw: bytes) -> Row:
    doc = orjson.loads(raw)
    outbox = tuple(
        Sent(message_id, Position(topic, partition, offset), tuple((kind, payload) for kind, payload in kept))
        for message_id, topic, partition, offset, kept in doc["outbox"]
    )
    return Row(Lead.from_state(doc["lead"]), outbox, doc.get("v", 0))


def version_of(raw: bytes | None) -> int:
    """The version of an encoded row (-1 for none)."""
    if not raw:
        return -1
    return orjson.loads(raw).get("v", 0)


def wake_of(raw: bytes) -> int | None:
    return orjson.loads(raw).get("wake")
