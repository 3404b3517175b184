"""Hand-built output records for sink and report tests: factories with keyword defaults."""

from __future__ import annotations

import dataclasses
import itertools

from lifecycle.records import AlertRecord, DlqRecord, LifecycleRecord

PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"
T0 = 1_767_603_600_000  # 2026-01-05T09:00:00Z, a Monday
HOUR = 3_600_000
DAY = 24 * HOUR
_ids = itertools.count(1)


def make_transition(lead_id: str = "L1", from_stage: str | None = "new", to_stage: str = "engaged", *,
                    at: int = T0, owner_id: str | None = None, team: str | None = None, score: int = 10,
                    skipped: tuple[str, ...] = (), time_in_previous: int | None = None,
                    event_type: str = "form_fill", reason: str | None = None,
                    transition_id: str | None = None, first_channel: str | None = None,
                    first_campaign: str | None = None, mql_channel: str | None = None,
                    mql_campaign: str | None = None, grade: str | None = None,
                    amount: float | None = None) -> LifecycleRecord:
    if time_in_previous is None and from_stage is not None:
        time_in_previous = 0
    return LifecycleRecord(
        transition_id=transition_id or f"tr-{lead_id}-{to_stage}-{at}",
        lead_id=lead_id, from_stage=from_stage, to_stage=to_stage,
        trigger_event_id=f"ev-{next(_ids)}", trigger_event_type=event_type, occurred_at=at,
        owner_id=owner_id, team=team, score=score, skipped_stages=skipped,
        time_in_previous_stage_ms=time_in_previous, reason=reason, first_channel=first_channel,
        first_campaign=first_campaign, mql_channel=mql_channel, mql_campaign=mql_campaign, grade=grade, amount=amount)


def make_alert(lead_id: str = "L1", type_: str = "follow_up_overdue", *, sla: str | None = "first_touch",
               reason: str | None = None, level: int = 1, stage: str = "mql", owner_id: str | None = "rep-1",
               team: str | None = "emea", started_at: int | None = T0, due_at: int | None = T0 + 4 * HOUR,
               detected_at: int | None = None, resolves: str | None = None,
               alert_id: str | None = None) -> AlertRecord:
    detected = detected_at if detected_at is not None else (due_at if due_at is not None else T0)
    return AlertRecord(
        alert_id=alert_id or f"al-{lead_id}-{sla}-{started_at}-{type_}-{level}",
        type=type_, lead_id=lead_id, sla=sla, reason=reason, level=level, stage=stage, owner_id=owner_id,
        team=team, started_at=started_at, due_at=due_at, detected_at=detected,
        overdue_by_ms=max(0, detected - due_at) if due_at is not None else 0, resolves_alert_id=resolves)


def fair_clock_alerts() -> list[AlertRecord]:
    """SPEC 9's alerts with the fields they add: a retraction's evidence, a resume's time on hold."""
    breach = make_alert()
    retracted = dataclasses.replace(
        make_alert(type_="sla_retracted", reason="late_event", resolves=breach.alert_id, alert_id="al-retracted"),
        overdue_by_ms=0, evidence_event_id="touch-1350")
    resumed = dataclasses.replace(make_alert(type_="sla_resumed", level=0, alert_id="al-resumed"),
                                  overdue_by_ms=0, held_ms=2 * HOUR)
    return [breach, retracted, resumed]


def make_dlq(offset: int = 1, *, error: str = "bad_json", original: bytes = b"{not json") -> DlqRecord:
    return DlqRecord(error=error, detail="Expecting property name", source_topic="lead.form_fills",
                     source_partition=0, source_offset=offset, key=b"L1", original=original)


def alerts(n: int, prefix: str = "L") -> list[AlertRecord]:
    """``n`` distinct breach alerts."""
    return [make_alert(f"{prefix}{i}", started_at=T0 + i, due_at=T0 + i + 4 * HOUR) for i in range(n)]
