"""The per-message step that replay and the live worker share: ``step(row, inbound, now) -> Step``.

A lead's *row* is everything kept for it between messages: the lead, the output of recent messages
whose source offset may not be committed yet (the outbox), and a version that grows with every save.
An *inbound* message is an event, or a timer command (the clock passed the row's wake-up time).
The step decides everything: duplicates, which SLA steps fire before an event, what to (re-)send,
what to keep in the outbox and when to wake up next. Drivers only load the row, call the step,
save the row it returns and send what it says — the replay processor with the event-time clock and
in-memory rows, the worker with the wall clock, a faust table and a producer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generic, NamedTuple, TypeVar

from lifecycle.engine import Engine, Records
from lifecycle.events import LeadEvent
from lifecycle.ids import event_digest
from lifecycle.lead import Lead

#: Outbox entries kept per lead at most: older ones are dropped even if not known to be committed.
OUTBOX_CAP = 16

#: What the outbox keeps of a record: the record itself in replay, its wire form in the worker.
T = TypeVar("T")


class Position(NamedTuple):
    """Where a message was read: its topic, partition and offset."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Sent(Generic[T]):
    """The output of one message, kept until that message's offset is committed, so that a
    redelivery of the message sends it again (its state change is already saved)."""

    message_id: str
    position: Position
    records: tuple[T, ...]


@dataclass(frozen=True, slots=True)
class Row(Generic[T]):
    lead: Lead | None = None
    outbox: tuple[Sent[T], ...] = ()
    #: +1 on every save: a replica or a recovery keeps the highest version of a lead, never merely
    #: the last one written (a stalled former owner can write after the new one).
    version: int = 0

    @property
    def wake_at(self) -> int | None:
        """When the row must be stepped again without a new event (the next SLA step), or None."""
        return self.lead.wake_at if self.lead is not None else None


class Step(NamedTuple, Generic[T]):
    row: Row[T]  # the row after the message
    records: Records  # new output records, in order
    sends: tuple[T, ...]  # what to send: the new records' wire forms, or a repeat's kept output
    duplicate: bool = False  # the message was seen before (its kept output, if any, is in sends)
    changed: bool = False  # the row is a new version: save it before sending


Committed = Callable[[Position], bool]


def _never(position: Position) -> bool:
    return False


def _same(record: object) -> object:
    return record


class Application(Generic[T]):
    """One policy's engine, and how records are kept in the outbox (``encode``).

    ``consumes_rows``: the caller never looks at a row again once it has stepped it (replay, and a
    worker that decodes a fresh row per message), so the step may change its lead in place instead
    of copying it first.
    """

    def __init__(self, engine: Engine, encode: Callable[[object], T] = _same,  # type: ignore[assignment]
                 consumes_rows: bool = False) -> None:
        self.engine = engine
        self.encode = encode
        self.consumes_rows = consumes_rows

    def on_event(
        self, row: Row[T], event: LeadEvent, now: int, position: Position | None = None,
        committed: Committed = _never,
    ) -> Step[T]:
        """Apply ``event`` at clock ``now``. Before it, every SLA step of the lead that fell due
        before ``now`` fires (stamped ``now``): the clock passed it before the event arrived.

        ``position``: where the event was read (None: nowhere to redeliver from, e.g. a file);
        ``committed(position)``: whether a kept output's source offset is committed (then it is
        dropped from the outbox).
        """
        lead = row.lead
        records: Records = []
        owned = self.consumes_rows  # may the lead be changed in place?
        if lead is not None:
            if lead.has_seen(event_digest(event.event_id)):
                return self._repeat(row, event.event_id)
            wake = lead.wake_at
            if wake is not None and wake < now:
                fired = self.engine.fire(lead, now)  # a copy of the lead
                lead, owned = fired.lead, True
                records.extend(fired.records)
        outcome = self.engine.apply(lead, event, now, in_place=owned)
        records.extend(outcome.records)
        return self._save(row, outcome.lead, records, event.event_id, position, committed)

    def on_timer(
        self, row: Row[T], message_id: str, now: int, position: Position | None = None,
        committed: Committed = _never,
    ) -> Step[T]:
        """The clock reached ``now``: fire every SLA step due by then. A redelivered command
        (``message_id`` in the outbox) sends its kept output again."""
        lead = row.lead
        if lead is None:
            return Step(row, [], ())
        if any(sent.message_id == message_id for sent in row.outbox):
            return self._repeat(row, message_id)
        fired = self.engine.fire(lead, now)
        if not fired.records:
            return Step(row, [], ())
        return self._save(row, fired.lead, fired.records, message_id, position, committed)

    def _repeat(self, row: Row[T], message_id: str) -> Step[T]:
        sends = tuple(r for sent in row.outbox if sent.message_id == message_id for r in sent.records)
        return Step(row, [], sends, duplicate=True)

    def _save(
        self, row: Row[T], lead: Lead, records: Records, message_id: str, position: Position | None,
        committed: Committed,
    ) -> Step[T]:
        sends = tuple(map(self.encode, records))
        outbox = row.outbox
        if position is not None:
            outbox = tuple(sent for sent in outbox if not committed(sent.position))
            if sends:
                outbox = (*outbox, Sent(message_id, position, sends))
            outbox = outbox[-OUTBOX_CAP:]
        return Step(Row(lead, outbox, row.version + 1), records, sends, changed=True)
