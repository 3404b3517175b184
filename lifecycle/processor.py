"""Replay's driver of the application step: rows in memory, pending wake-ups, the event-time clock.

The clock is the watermark (the largest ``occurred_at`` seen). Before an event at time ``t`` is
applied, every row whose wake-up falls before ``t`` is stepped, each at the time the clock passed
it; so the step itself finds nothing more to fire, and the output is the same byte for byte
whatever the machine.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator, Mapping

from lifecycle.application import Application, Row, Step
from lifecycle.engine import Engine, Records
from lifecycle.events import LeadEvent
from lifecycle.lead import Lead
from lifecycle.records import LifecycleRecord
from lifecycle.timers import TimerSet

_EMPTY: Row = Row()


@dataclass
class Tally:
    """How every input was accounted for: read == applied + duplicates + dead_lettered."""

    read: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    transitions: int = 0
    alerts: Counter = field(default_factory=Counter)
    dlq_errors: Counter = field(default_factory=Counter)
    late: int = 0  # events applied with a time before their lead's latest applied event
    max_late_ms: int = 0  # the largest such lateness


class Processor:
    def __init__(self, engine: Engine, rows: dict[str, Row] | None = None,
                 timers: TimerSet | None = None) -> None:
        self.app: Application = Application(engine, consumes_rows=True)
        self.rows: dict[str, Row] = rows if rows is not None else {}
        self.timers = timers if timers is not None else TimerSet()
        self.clock: int | None = None  # the watermark; None before the first event
        self.tally = Tally()

    @property
    def engine(self) -> Engine:
        return self.app.engine

    @property
    def leads(self) -> Mapping[str, Lead]:
        """Every lead by id (a snapshot, for inspection)."""
        return {lead_id: row.lead for lead_id, row in self.rows.items() if row.lead is not None}

    def submit(self, event: LeadEvent) -> Records:
        """Advance the clock to the event's time, fire what fell due before it, then apply it."""
        at = event.occurred_at
        records = self.advance(at, inclusive=False) if self.timers.any_due(at) else []
        records.extend(self.take(event))
        return records

    def take(self, event: LeadEvent) -> Records:
        """Apply ``event`` at the clock moved to its time; what fell due before it must have been
        stepped already (``submit`` does both)."""
        at = event.occurred_at
        now = at if self.clock is None or at > self.clock else self.clock
        self.clock = now
        step = self.app.on_event(self.rows.get(event.lead_id, _EMPTY), event, now)
        self.tally.read += 1
        if step.duplicate:
            self.tally.duplicates += 1
            return []
        self.tally.applied += 1
        self._keep(event.lead_id, step)
        return step.records

    def observe(self, at: int) -> None:
        """Another process applies an event at ``at``: only the clock moves (a replay shard)."""
        if self.clock is None or at > self.clock:
            self.clock = at

    def reject(self, error_code: str) -> None:
        """Account for an input that went to the dead-letter queue."""
        self.tally.read += 1
        self.tally.dead_lettered += 1
        self.tally.dlq_errors[error_code] += 1

    def advance(self, until: int, *, inclusive: bool = True) -> Records:
        """Move the clock to ``until``, stepping every row due by then (before it if not inclusive)."""
        records: Records = []
        for _, _, stepped in self.steps_due(until, inclusive=inclusive):
            records.extend(stepped)
        if self.clock is None or until > self.clock:
            self.clock = until
        return records

    def steps_due(self, until: int, *, inclusive: bool = True) -> Iterator[tuple[str, int, Records]]:
        """Step every row due by ``until`` (before it if not inclusive), earliest first, lead ids in
        order at equal times: ``(lead_id, due, records)`` per row stepped. Leaves the clock at the
        last step's time (``advance`` then moves it to ``until``)."""
        for lead_id, due in self.timers.pop_due(until, inclusive=inclusive):
            now = due if self.clock is None or due > self.clock else self.clock
            self.clock = now
            step = self.app.on_timer(self.rows[lead_id], f"timer:{lead_id}:{due}", now)
            self._keep(lead_id, step)
            yield lead_id, due, step.records

    def finish(self, until: int | None = None) -> Records:
        """The end of the input: move the clock to ``until`` (default: where it is), then apply
        every event still held by a reorder window, lead by lead in order of first appearance."""
        final = until if until is not None else self.clock
        if final is None:
            return []
        records = self.advance(final, inclusive=True)
        flushed = False
        for _, stepped in self.flush_held(final):
            records.extend(stepped)
            flushed = True
        if flushed:  # what the flushed events started may be due by now too
            records.extend(self.advance(final, inclusive=True))
        return records

    def flush_held(self, final: int) -> Iterator[tuple[str, Records]]:
        """Apply every event still held, lead by lead in order of first appearance:
        ``(lead_id, records)`` per lead that held any."""
        for lead_id, row in list(self.rows.items()):
            if row.held:
                step = self.app.flush(row, max(final, self.clock or final))
                self._keep(lead_id, step)
                yield lead_id, step.records

    def _keep(self, lead_id: str, step: Step) -> None:
        row = step.row
        self.rows[lead_id] = row
        self.timers.set(lead_id, row.wake_at)
        if step.late_ms:
            self.tally.late += len(step.late_ms)
            self.tally.max_late_ms = max(self.tally.max_late_ms, *step.late_ms)
        for record in step.records:
            if type(record) is LifecycleRecord:
                self.tally.transitions += 1
            else:
                self.tally.alerts[record.type] += 1  # type: ignore[union-attr]
