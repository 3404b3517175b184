"""A small language for engine tests: send events at wall-clock-looking times, advance, look."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from lifecycle.engine import Engine
from lifecycle.events import (
    DealStageChanged,
    EmailEngaged,
    FormFilled,
    LeadAssigned,
    LeadEvent,
    SalesDispositioned,
    SalesTouched,
)
from lifecycle.lead import Lead
from lifecycle.policy import Policy
from lifecycle.processor import Processor
from lifecycle.records import AlertRecord, LifecycleRecord
from schemas.wire import parse_time

_ids = itertools.count(1)


def t(text: str) -> int:
    """``"2026-03-02 10:00"`` (UTC) or a full RFC 3339 string -> epoch ms."""
    if "T" not in text:
        text = text.replace(" ", "T") + ":00Z"
    return parse_time(text)


def _common(lead: str, at: str, event_id: str | None) -> dict:
    return {"event_id": event_id or f"e{next(_ids)}", "lead_id": lead, "occurred_at": t(at)}


def form_fill(
    lead: str, at: str, form_type: str = "webinar", event_id: str | None = None, *, form_id: str | None = None,
    utm_medium: str | None = None, utm_campaign: str | None = None, utm_source: str | None = None,
    **fields: str | int | float,
) -> FormFilled:
    """A form fill; keyword arguments beyond the UTM ones are its ``fields`` (``employees=5000``)."""
    return FormFilled(**_common(lead, at, event_id), form_type=form_type, form_id=form_id, utm_source=utm_source,
                      utm_medium=utm_medium, utm_campaign=utm_campaign, fields=tuple(fields.items()))


def email(lead: str, at: str, action: str = "click", event_id: str | None = None,
          campaign_id: str | None = None) -> EmailEngaged:
    return EmailEngaged(**_common(lead, at, event_id), action=action, campaign_id=campaign_id)


def touch(lead: str, at: str, rep: str = "rep-1", event_id: str | None = None) -> SalesTouched:
    return SalesTouched(**_common(lead, at, event_id), rep_id=rep, channel="call")


def assign(lead: str, at: str, owner: str = "rep-1", team: str | None = None, event_id: str | None = None) -> LeadAssigned:
    return LeadAssigned(**_common(lead, at, event_id), owner_id=owner, team=team)


def disposition(
    lead: str, at: str, decision: str, reason: str | None = "budget", event_id: str | None = None
) -> SalesDispositioned:
    return SalesDispositioned(**_common(lead, at, event_id), decision=decision, reason=reason)


def deal(lead: str, at: str, stage: str = "created", event_id: str | None = None,
         amount: float | None = None) -> DealStageChanged:
    return DealStageChanged(**_common(lead, at, event_id), stage=stage, deal_id="d1", amount=amount)


@dataclass
class Scenario:
    policy: Policy = field(default_factory=Policy)
    records: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.processor = Processor(Engine(self.policy))

    def send(self, *events: LeadEvent) -> list:
        out = []
        for event in events:
            out.extend(self.processor.submit(event))
        self.records.extend(out)
        return out

    def advance(self, at: str) -> list:
        out = self.processor.advance(t(at))
        self.records.extend(out)
        return out

    def lead(self, lead_id: str = "L1") -> Lead:
        return self.processor.leads[lead_id]

    def stage(self, lead_id: str = "L1") -> str:
        return self.lead(lead_id).stage.value

    @property
    def transitions(self) -> list[LifecycleRecord]:
        return [r for r in self.records if isinstance(r, LifecycleRecord)]

    @property
    def alerts(self) -> list[AlertRecord]:
        return [r for r in self.records if isinstance(r, AlertRecord)]

    def path(self, lead_id: str = "L1") -> list[str]:
        return [r.to_stage for r in self.transitions if r.lead_id == lead_id]

    def alert_kinds(self) -> list[tuple]:
        """(type, sla, reason, level) of every alert so far, in order."""
        return [(a.type, a.sla, a.reason, a.level) for a in self.alerts]

    def to(self, stage: str, lead: str = "L1", at: str = "2026-03-02 10:00", owner: str | None = None) -> Scenario:
        """Bring a lead to ``stage`` by the shortest honest route (an owner is assigned if given)."""
        if owner is not None:
            self.send(assign(lead, at, owner))
        routes = {
            "new": [lambda: email(lead, at, "delivered")],
            "engaged": [lambda: form_fill(lead, at, "webinar")],
            "mql": [lambda: form_fill(lead, at, "demo_request")],
            "sal": [lambda: form_fill(lead, at, "demo_request"), lambda: disposition(lead, at, "accept")],
            "sql": [lambda: form_fill(lead, at, "demo_request"), lambda: disposition(lead, at, "qualify")],
            "opportunity": [lambda: deal(lead, at, "created")],
            "customer": [lambda: deal(lead, at, "closed_won")],
            "recycled": [lambda: form_fill(lead, at, "demo_request"), lambda: disposition(lead, at, "reject")],
            "disqualified": [lambda: disposition(lead, at, "disqualify")],
        }
        for make in routes[stage]:
            self.send(make())
        assert self.stage(lead) == stage, (stage, self.path(lead))
        return self
