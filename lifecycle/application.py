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
from lifecycle.frozen import quick_init
from typing import Callable, Generic, NamedTuple, TypeVar

import bisect

from lifecycle.engine import Engine, Records
from lifecycle.events import LeadEvent, order_key
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


@quick_init
@dataclass(frozen=True, slots=True)
class Row(Generic[T]):
    lead: Lead | None = None
    outbox: tuple[Sent[T], ...] = ()
    #: +1 on every save: a replica or a recovery keeps the highest version of a lead, never merely
    #: the last one written (a stalled former owner can write after the new one).
    version: int = 0
    #: events waiting for the reorder window, in the order they will be applied (``order_key``)
    held: tuple[LeadEvent, ...] = ()
    #: when the row must be stepped again without a new event (an SLA step, the end of a hold, a
    #: held event's release), or None
    wake_at: int | None = None


class Step(NamedTuple, Generic[T]):
    row: Row[T]  # the row after the message
    records: Records  # new output records, in order
    sends: tuple[T, ...]  # what to send: the new records' wire forms, or a repeat's kept output
    duplicate: bool = False  # the message was seen before (its kept output, if any, is in sends)
    changed: bool = False  # the row is a new version: save it before sending
    late_ms: tuple[int, ...] = ()  # per event applied that lay before its lead's latest: by how much


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

    @property
    def reorder_ms(self) -> int:
        return self.engine.reorder_ms

    def on_event(
        self, row: Row[T], event: LeadEvent, now: int, position: Position | None = None,
        committed: Committed = _never,
    ) -> Step[T]:
        """Take ``event`` at clock ``now``. First, everything of the row that fell due before
        ``now`` happens (SLA steps fire, stamped ``now``: the clock passed them before the event
        arrived). Then the event is applied — or, with a reorder window W, held until the clock
        passes its time + W, and applied in event-time order with the lead's other held events.

        ``position``: where the event was read (None: nowhere to redeliver from, e.g. a file);
        ``committed(position)``: whether a kept output's source offset is committed (then it is
        dropped from the outbox).
        """
        lead = row.lead
        digest = event_digest(event.event_id)
        if (lead is not None and lead.has_seen(digest)) or (row.held and any(
            held.event_id == event.event_id for held in row.held
        )):
            return self._repeat(row, event.event_id)
        if not row.held and not self.engine.reorder_ms:
            return self._on_event_now(row, lead, event, digest, now, position, committed)
        work = _Work(lead, row.held, self.consumes_rows)
        self._catch_up(work, now, inclusive=False)
        if self.reorder_ms:
            held = list(work.held)
            bisect.insort(held, event, key=order_key)
            work.held = tuple(held)
            self._release(work, now)
        else:
            self._apply(work, event, now)
        return self._save(row, work, event.event_id, position, committed)

    def _on_event_now(
        self, row: Row[T], lead: Lead | None, event: LeadEvent, digest: bytes, now: int, position: Position | None,
        committed: Committed,
    ) -> Step[T]:
        """``on_event`` without a reorder window or held events (the common case): the same steps
        as ``_catch_up`` + ``_apply`` + ``_save``, without their bookkeeping objects."""
        engine = self.engine
        owned = self.consumes_rows
        records: Records = []
        if lead is not None:
            wake = engine.wake_at(lead)
            if wake is not None and wake < now:  # an SLA step the clock passed before the event
                fired = engine.fire(lead, now, now - 1)
                if fired.lead is not lead:
                    lead, owned = fired.lead, True
                    records.extend(fired.records)
        outcome = engine.apply_new(lead, event, now, digest, in_place=owned)
        lead = outcome.lead
        if records:
            records.extend(outcome.records)
        else:
            records = outcome.records
        sends = tuple(map(self.encode, records)) if self.encode is not _same else tuple(records)
        outbox = row.outbox
        if position is not None:
            outbox = tuple(sent for sent in outbox if not committed(sent.position))
            if sends:
                outbox = (*outbox, Sent(event.event_id, position, sends))
            outbox = outbox[-OUTBOX_CAP:]
        late = (outcome.late_ms,) if outcome.late_ms else ()
        return _new(Step, (Row(lead, outbox, row.version + 1, (), engine.wake_at(lead)), records, sends, False, True,
                           late))

    def on_timer(
        self, row: Row[T], message_id: str, now: int, position: Position | None = None,
        committed: Committed = _never,
    ) -> Step[T]:
        """The clock reached ``now``: everything of the row due by then happens, in time order. A
        redelivered command (``message_id`` in the outbox) sends its kept output again."""
        if any(sent.message_id == message_id for sent in row.outbox):
            return self._repeat(row, message_id)
        work = _Work(row.lead, row.held, self.consumes_rows)
        self._catch_up(work, now, inclusive=True)
        if not work.steps:
            return Step(row, [], ())
        return self._save(row, work, message_id, position, committed)

    def flush(self, row: Row[T], now: int) -> Step[T]:
        """Apply every held event now (the end of a replay)."""
        work = _Work(row.lead, row.held, self.consumes_rows)
        self._catch_up(work, now, inclusive=True)
        while work.held:
            self._apply(work, work.held[0], now)
            work.held = work.held[1:]
        if not work.steps:
            return Step(row, [], ())
        return self._save(row, work, "flush", None, _never)

    # -- the row's agenda: held events, SLA steps, the end of a hold ------------------------------
    def _catch_up(self, work: _Work, now: int, inclusive: bool) -> None:
        """Everything due before ``now`` (or at it, if ``inclusive``), in time order; at equal
        times a held event goes first (evidence at T meets a deadline at T)."""
        engine, window = self.engine, self.reorder_ms
        if not work.held:  # the common case: only SLA steps
            wake = engine.wake_at(work.lead) if work.lead is not None else None
            if wake is not None and (wake < now or (inclusive and wake == now)):
                self._fire(work, now, now if inclusive else now - 1)
            return
        while True:
            release = work.held[0].occurred_at + window if work.held else None
            wake = engine.wake_at(work.lead) if work.lead is not None else None
            nxt = min(t for t in (release, wake) if t is not None) if (release, wake) != (None, None) else None
            if nxt is None or nxt > now or (nxt == now and not inclusive):
                return
            if release is not None and release == nxt:
                self._apply(work, work.held[0], now)
                work.held = work.held[1:]
            elif not self._fire(work, now, nxt):
                return  # (cannot happen: wake_at and fire agree; never loop on it)

    def _release(self, work: _Work, now: int) -> None:
        """Apply the held events whose slot the clock has passed (``occurred_at`` + W <= ``now``)."""
        window = self.reorder_ms
        while work.held and work.held[0].occurred_at + window <= now:
            self._apply(work, work.held[0], now)
            work.held = work.held[1:]

    def _fire(self, work: _Work, now: int, until: int) -> bool:
        assert work.lead is not None
        fired = self.engine.fire(work.lead, now, until)  # a copy of the lead, if anything fired
        if fired.lead is work.lead:
            return False
        work.lead, work.owned = fired.lead, True
        work.records.extend(fired.records)
        work.steps += 1
        return True

    def _apply(self, work: _Work, event: LeadEvent, now: int) -> None:
        outcome = self.engine.apply(work.lead, event, now, in_place=work.owned)
        if outcome.duplicate:
            return
        work.lead, work.owned = outcome.lead, True
        work.records.extend(outcome.records)
        work.steps += 1
        if outcome.late_ms:
            work.late.append(outcome.late_ms)

    def _repeat(self, row: Row[T], message_id: str) -> Step[T]:
        sends = tuple(r for sent in row.outbox if sent.message_id == message_id for r in sent.records)
        return Step(row, [], sends, duplicate=True)

    def _save(
        self, row: Row[T], work: _Work, message_id: str, position: Position | None, committed: Committed,
    ) -> Step[T]:
        records = work.records
        sends = tuple(map(self.encode, records))
        outbox = row.outbox
        if position is not None:
            outbox = tuple(sent for sent in outbox if not committed(sent.position))
            if sends:
                outbox = (*outbox, Sent(message_id, position, sends))
            outbox = outbox[-OUTBOX_CAP:]
        lead, held = work.lead, work.held
        wake = self.engine.wake_at(lead) if lead is not None else None
        if held:
            release = held[0].occurred_at + self.reorder_ms
            wake = release if wake is None else min(wake, release)
        return Step(Row(lead, outbox, row.version + 1, held, wake), records, sends, changed=True,
                    late_ms=tuple(work.late))


_new = tuple.__new__  # a NamedTuple built without its keyword-parsing ``__new__``


class _Work:
    """A row being stepped: its lead (``owned``: may be changed in place), held events, output."""

    __slots__ = ("lead", "held", "owned", "records", "steps", "late")

    def __init__(self, lead: Lead | None, held: tuple[LeadEvent, ...], owned: bool) -> None:
        self.lead = lead
        self.held = held
        self.owned = owned
        self.records: Records = []
        self.steps = 0
        self.late: list[int] = []
