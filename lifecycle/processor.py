"""Drives the engine over a stream: lead store, pending timers and the clock, with no I/O.

``replay`` uses it with the event-time clock (the watermark: the largest ``occurred_at`` seen); the
live worker keeps its own table and timer task but calls the same engine. Before an event at time
``t`` is applied, every timer due before ``t`` fires, each with the time the clock passed it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import MutableMapping

from lifecycle.engine import Engine, Outcome, Records
from lifecycle.events import LeadEvent
from lifecycle.lead import Lead
from lifecycle.records import LifecycleRecord
from lifecycle.timers import TimerSet


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


class Processor:
    def __init__(
        self,
        engine: Engine,
        store: MutableMapping[str, Lead] | None = None,
        timers: TimerSet | None = None,
    ) -> None:
        self.engine = engine
        self.leads: MutableMapping[str, Lead] = store if store is not None else {}
        self.timers = timers if timers is not None else TimerSet()
        self.clock: int | None = None  # the watermark; None before the first event
        self.tally = Tally()

    def submit(self, event: LeadEvent) -> Records:
        """Advance the clock to the event's time, fire what fell due before it, then apply it."""
        at = event.occurred_at
        records = self.advance(at, inclusive=False) if self.timers.any_due(at) else []
        now = at if self.clock is None or at > self.clock else self.clock
        self.clock = now
        outcome = self.engine.apply(self.leads.get(event.lead_id), event, now, in_place=True)
        self.tally.read += 1
        if outcome.duplicate:
            self.tally.duplicates += 1
        else:
            self.tally.applied += 1
            self._keep(outcome)
            records.extend(outcome.records)
        return records

    def reject(self, error_code: str) -> None:
        """Account for an input that went to the dead-letter queue."""
        self.tally.read += 1
        self.tally.dead_lettered += 1
        self.tally.dlq_errors[error_code] += 1

    def advance(self, until: int, *, inclusive: bool = True) -> Records:
        """Move the clock to ``until``, firing every timer due by then (before it if not inclusive)."""
        records: Records = []
        for lead_id, due in self.timers.pop_due(until, inclusive=inclusive):
            now = due if self.clock is None else max(due, self.clock)
            self.clock = now
            lead = self.leads[lead_id]
            outcome = self.engine.fire(lead, now)
            self._keep(outcome)
            records.extend(outcome.records)
        if self.clock is None or until > self.clock:
            self.clock = until
        return records

    def _keep(self, outcome: Outcome) -> None:
        lead = outcome.lead
        self.leads[lead.lead_id] = lead
        self.timers.set(lead.lead_id, lead.wake_at)
        for record in outcome.records:
            if type(record) is LifecycleRecord:
                self.tally.transitions += 1
            else:
                self.tally.alerts[record.type] += 1  # type: ignore[union-attr]
