"""The lifecycle engine: ``(lead, event, now) -> (lead', records)`` and ``(lead, now) -> (lead', records)``.

Pure: no I/O, no clock reads. ``now`` is the processing clock (event-time watermark in replay, wall
clock live); stage changes and SLA starts use the event's own time. The caller keeps the lead and
schedules its next wake-up at ``outcome.lead.wake_at``.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Callable, NamedTuple

from lifecycle import ids
from lifecycle.calendar import LATEST_MS, calendar_for
from lifecycle.events import (
    HOLD,
    OPEN_DEAL_STAGES,
    RESUME,
    DealStageChanged,
    EmailEngaged,
    FormFilled,
    LeadAssigned,
    LeadEvent,
    SalesDispositioned,
    SalesTouched,
)
from lifecycle.grading import Grader, campaign_of, channel_of, merge_fields, shared_pairs
from lifecycle.lead import BREACH, ESCALATION, HISTORY_LENGTH, WARNING, Lead, OpenSla
from lifecycle.policy import Policy
from lifecycle.records import AlertRecord, LifecycleRecord
from lifecycle.slas import BREACH_ALERT, STARTS_ON_ENTRY
from lifecycle.stages import SKIPPED_NAMES, TERMINAL, Stage, Trigger, move

Records = list[LifecycleRecord | AlertRecord]

#: Alert level per step kind: 0 warning, 1 breach, 2 escalation.
_LEVEL = {WARNING: 0, BREACH: 1, ESCALATION: 2}
_DISPOSITION_TRIGGER = {
    "accept": Trigger.ACCEPT,
    "qualify": Trigger.QUALIFY,
    "reject": Trigger.REJECT,
    "disqualify": Trigger.DISQUALIFY,
}
_intern = sys.intern
_NEW = Stage.NEW._value_  # ``_value_``: Enum's ``.value`` is a property, measurably slow per event
#: Stages marketing owns: a hand-raiser form filled in one of them is remembered (``Lead.hand_raised``).
_MARKETING_STAGES = frozenset({Stage.NEW, Stage.ENGAGED, Stage.RECYCLED})


_new = tuple.__new__  # a NamedTuple built without its keyword-parsing ``__new__``


def _interned(text: str | None) -> str | None:
    return None if text is None else _intern(text)


class Outcome(NamedTuple):
    lead: Lead
    records: Records
    duplicate: bool = False
    late_ms: int = 0  # how far the event's time lies before the lead's latest applied event


class Engine:
    """Applies events and fires due SLA steps under one policy."""

    def __init__(self, policy: Policy | None = None) -> None:
        self.policy = policy if policy is not None else Policy()
        self.policy_version = self.policy.policy_version  # stamped on every record
        self.reorder_ms = self.policy.lateness.reorder_ms  # the reorder window (SPEC 9), 0 for none
        scoring = self.policy.scoring
        self._form_points = scoring.table("form_fill")
        self._email_points = scoring.table("email_engagement")
        self._hand_raisers = scoring.hand_raisers
        self._grader = Grader(self.policy.grading)
        self._grading = self._grader.active
        self._handlers: dict[type, Callable[[Lead, LeadEvent, int, Records], None]] = {
            FormFilled: self._on_form_fill,
            EmailEngaged: self._on_email,
            SalesTouched: self._on_touch,
            LeadAssigned: self._on_assigned,
            SalesDispositioned: self._on_disposition,
            DealStageChanged: self._on_deal,
        }

    # -- the two entry points -----------------------------------------------------------------
    def apply(self, lead: Lead | None, event: LeadEvent, now: int, *, in_place: bool = False) -> Outcome:
        """Apply one event. A repeated ``event_id`` changes nothing and is reported as a duplicate.

        The given lead is left as it was unless ``in_place``: a caller that owns the lead and drops
        the old version (the processor) saves a copy per event.
        """
        digest = ids.event_digest(event.event_id)
        if lead is not None and lead.has_seen(digest):
            return Outcome(lead, [], True)
        return self.apply_new(lead, event, now, digest, in_place=in_place)

    def apply_new(self, lead: Lead | None, event: LeadEvent, now: int, digest: bytes, *, in_place: bool = False
                  ) -> Outcome:
        """``apply`` of an event the caller knows ``lead`` has not seen; ``digest`` is its
        ``ids.event_digest``."""
        records: Records = []
        if lead is None:
            lead = Lead(_intern(event.lead_id), created_at=event.occurred_at)
            lead.stage_entered_at = event.occurred_at
            self._remember(lead, event)  # the creation record carries the event's attribution and grade
            records.append(self._transition_record(lead, None, Stage.NEW, event, None))
            lead.history = ((_NEW, event.occurred_at, event.event_type),)
        else:
            if not in_place:
                lead = lead.copy()
            if lead.stage not in TERMINAL:
                self._remember(lead, event)
        lead.add_seen(digest)
        late_ms = lead.last_activity_at - event.occurred_at  # > 0: before the lead's latest event
        if late_ms < 0:
            lead.last_activity_at = event.occurred_at
            late_ms = 0
        if lead.stage not in TERMINAL:  # customer and disqualified absorb every later event
            self._handlers[type(event)](lead, event, now, records)
        return _new(Outcome, (lead, records, False, late_ms))

    def fire(self, lead: Lead, now: int, until: int | None = None) -> Outcome:
        """Emit every SLA step (warning, breach, escalation) whose threshold + the lateness delay
        is at or before ``until`` (default ``now``), stamped ``now``; end a hold whose ``until``
        came first. Steps of SLAs on hold wait for the resume."""
        records: Records = []
        until = now if until is None else until
        wake = self.wake_at(lead)
        if wake is None or wake > until:
            return Outcome(lead, records)
        lead = lead.copy()
        if lead.hold_until is not None and lead.hold_until <= until:
            self._resume(lead, lead.hold_until, "until", now, records)
        delay = self.policy.for_team(lead.team).lateness.delay_ms
        slas = []
        for sla in lead.slas:
            if sla.held_since is None:
                while sla.next_at is not None and sla.next_at + delay <= until:
                    kind = sla.steps[sla.fired][0]
                    records.append(self._step_alert(lead, sla, kind, now))
                    sla = replace(sla, fired=sla.fired + 1)
            slas.append(sla)
        lead.slas = tuple(slas)
        return Outcome(lead, records)

    def wake_at(self, lead: Lead) -> int | None:
        """When ``fire`` has something to do for ``lead`` (a step, or the end of a hold), or None."""
        wake = lead.hold_until
        delay = -1
        for sla in lead.slas:
            if sla.held_since is not None:
                continue
            at = sla.next_at
            if at is not None:
                if delay < 0:
                    delay = self.policy.for_team(lead.team).lateness.delay_ms
                at += delay
                if wake is None or at < wake:
                    wake = at
        return wake

    # -- event handlers -----------------------------------------------------------------------
    def _on_form_fill(self, lead: Lead, event: LeadEvent, now: int, records: Records) -> None:
        assert isinstance(event, FormFilled)
        form_type = event.form_type
        self._on_activity(lead, event, now, records, self._form_points[form_type], form_type in self._hand_raisers)

    def _on_email(self, lead: Lead, event: LeadEvent, now: int, records: Records) -> None:
        assert isinstance(event, EmailEngaged)
        self._on_activity(lead, event, now, records, self._email_points[event.action], False)

    def _on_activity(
        self, lead: Lead, event: LeadEvent, now: int, records: Records, points: int, hand_raiser: bool
    ) -> None:
        lead.score = max(0, lead.score + points)
        self._satisfy(lead, "nurture", now, records, event)
        trigger = self._activity_trigger(lead, points, hand_raiser)
        if trigger is not None:
            self._move(lead, trigger, event, now, records)

    def _activity_trigger(self, lead: Lead, points: int, hand_raiser: bool) -> Trigger | None:
        """What a scored activity asks of the machine, with SPEC section 10's MQL gate: a lead below
        ``minimum_for_mql`` goes no further than ``engaged``; once its grade reaches the minimum
        it moves to ``mql`` if it has filled a hand-raiser form or its score is at the threshold."""
        if hand_raiser and lead.stage in _MARKETING_STAGES:
            lead.hand_raised = True
        grader = self._grader
        if grader.minimum is not None and not grader.allows_mql(lead.grade):
            return Trigger.ENGAGE if hand_raiser or points > 0 else None
        if hand_raiser:
            return Trigger.HAND_RAISE
        if grader.minimum is not None and lead.stage in _MARKETING_STAGES:
            if lead.hand_raised:  # held back before, its grade is enough now
                return Trigger.HAND_RAISE
            if lead.score >= self.policy.scoring.mql_threshold:
                return Trigger.REACH_THRESHOLD
        if points > 0:
            reached = lead.score >= self.policy.scoring.mql_threshold
            return Trigger.REACH_THRESHOLD if reached else Trigger.ENGAGE
        return None

    def _on_touch(self, lead: Lead, event: LeadEvent, now: int, records: Records) -> None:
        self._satisfy(lead, "first_touch", now, records, event)
        self._move(lead, Trigger.TOUCH, event, now, records)

    def _on_assigned(self, lead: Lead, event: LeadEvent, now: int, records: Records) -> None:
        assert isinstance(event, LeadAssigned)
        previous = lead.owner_id
        lead.owner_id = _intern(event.owner_id)
        if event.team is not None:
            lead.team = _intern(event.team)
        if lead.stage is not Stage.MQL:
            return
        self._satisfy(lead, "assignment", now, records, event)
        waiting = lead.sla("first_touch")
        if waiting is None or lead.owner_id != previous:
            if waiting is not None:  # a new owner restarts the clock for them
                self._end(lead, waiting, now, records, event)
            self._start(lead, "first_touch", event.event_id, event.occurred_at)
        if lead.owner_id not in lead.mql_owners:
            lead.mql_owners += (lead.owner_id,)
            if len(lead.mql_owners) == 3:
                records.append(self._instant_alert(lead, "ping_pong", "first_touch", event, now))

    def _on_disposition(self, lead: Lead, event: LeadEvent, now: int, records: Records) -> None:
        assert isinstance(event, SalesDispositioned)
        if event.decision == HOLD:  # neither satisfies an SLA nor moves a stage
            self._hold(lead, event, now, records)
            return
        if event.decision == RESUME:
            self._resume(lead, event.occurred_at, event.event_id, now, records)
            return
        self._satisfy(lead, "first_touch", now, records, event)
        source = lead.stage
        moved = self._move(lead, _DISPOSITION_TRIGGER[event.decision], event, now, records, event.reason)
        if moved and event.decision in ("reject", "disqualify") and not event.reason:
            records.append(
                self._instant_alert(lead, "rejected_without_reason", None, event, now, stage=source)
            )

    def _on_deal(self, lead: Lead, event: LeadEvent, now: int, records: Records) -> None:
        assert isinstance(event, DealStageChanged)
        self._satisfy(lead, "opportunity", now, records, event)
        if event.stage in OPEN_DEAL_STAGES:
            trigger = Trigger.OPEN_DEAL
        elif event.stage == "closed_won":
            trigger = Trigger.WIN_DEAL
        else:
            trigger = Trigger.LOSE_DEAL
        self._move(lead, trigger, event, now, records)

    # -- stage changes ------------------------------------------------------------------------
    def _move(
        self,
        lead: Lead,
        trigger: Trigger,
        event: LeadEvent,
        now: int,
        records: Records,
        reason: str | None = None,
    ) -> bool:
        dest = move(lead.stage, trigger)
        if dest is None:
            return False
        source = lead.stage
        at = event.occurred_at
        self._entering(lead, dest, event)
        records.append(
            self._transition_record(lead, source, dest, event, max(0, at - lead.stage_entered_at), reason)
        )
        for sla in lead.slas:  # every SLA belongs to the stage being left: it ends, met
            self._end(lead, sla, now, records, event, remove=False)
        lead.slas = ()
        lead.hold_since = lead.hold_until = None  # a stage change ends a hold with the old SLAs
        lead.stage = dest
        lead.stage_entered_at = at
        lead.add_history(dest._value_, at, event.event_type)
        if dest is Stage.MQL:
            if lead.owner_id is None:
                lead.mql_owners = ()
                self._start(lead, "assignment", event.event_id, at)
            else:
                lead.mql_owners = (lead.owner_id,)
                self._start(lead, "first_touch", event.event_id, at)
        else:
            if dest is Stage.RECYCLED:
                lead.score = 0
            name = STARTS_ON_ENTRY.get(dest)
            if name is not None:
                self._start(lead, name, event.event_id, at)
        return True

    def _transition_record(
        self,
        lead: Lead,
        source: Stage | None,
        dest: Stage,
        event: LeadEvent,
        time_in_previous: int | None,
        reason: str | None = None,
    ) -> LifecycleRecord:
        return LifecycleRecord(
            transition_id=ids.transition_id(lead.lead_id, event.event_id, dest._value_),
            lead_id=lead.lead_id,
            from_stage=source._value_ if source is not None else None,
            to_stage=dest._value_,
            trigger_event_id=event.event_id,
            trigger_event_type=event.event_type,
            occurred_at=event.occurred_at,
            owner_id=lead.owner_id,
            team=lead.team,
            score=lead.score,
            skipped_stages=SKIPPED_NAMES[source, dest] if source is not None else (),
            time_in_previous_stage_ms=time_in_previous,
            reason=reason,
            first_channel=lead.first_channel,
            first_campaign=lead.first_campaign,
            mql_channel=lead.mql_channel,
            mql_campaign=lead.mql_campaign,
            grade=lead.grade,
            amount=lead.deal_amount if dest is Stage.CUSTOMER else None,
            policy_version=self.policy_version,
        )

    # -- attribution and fit (SPEC section 10) ------------------------------------------------
    def _remember(self, lead: Lead, event: LeadEvent) -> None:
        """What a lead keeps of an event before it applies: the first marketing touch, merged
        fields with fit points and grade, the latest deal amount. Runs for every event: lean."""
        kind = type(event)
        if kind is FormFilled or kind is EmailEngaged:
            if lead.first_channel is None:
                lead.first_channel = _interned(channel_of(event))
                lead.first_campaign = _interned(campaign_of(event))
            if kind is FormFilled and event.fields:  # type: ignore[attr-defined]
                fields = merge_fields(lead.fields, event.fields)  # type: ignore[attr-defined]
                if fields != lead.fields:
                    lead.fields = shared_pairs(fields)
                    if self._grading:
                        self._regrade(lead)
        elif kind is DealStageChanged and event.amount is not None:  # type: ignore[attr-defined]
            lead.deal_amount = event.amount  # type: ignore[attr-defined]
        if lead.grade is None:
            if self._grading:  # a new lead, or one from before the policy graded
                self._regrade(lead)
        elif not self._grading:  # the policy no longer grades
            lead.fit_points, lead.grade = 0, None

    def _regrade(self, lead: Lead) -> None:
        lead.fit_points = self._grader.fit_points(lead.fields)
        lead.grade = self._grader.grade(lead.fit_points)

    @staticmethod
    def _entering(lead: Lead, dest: Stage, event: LeadEvent) -> None:
        """Before a move's record: the MQL touch of a move to ``mql``; ``recycled`` forgets the
        hand-raise (as it resets the score)."""
        if dest is Stage.MQL:
            lead.mql_channel = _interned(channel_of(event))
            lead.mql_campaign = _interned(campaign_of(event))
        elif dest is Stage.RECYCLED:
            lead.hand_raised = False

    # -- SLAs ---------------------------------------------------------------------------------
    def _start(self, lead: Lead, name: str, instance: str, at: int) -> None:
        team = self.policy.for_team(lead.team)
        sla = team.slas[name]
        calendar = calendar_for(team.calendar)
        due = calendar.add(at, sla.within, sla.business)
        steps: list[tuple[str, int]] = []
        if sla.warn_at is not None:
            steps.append((WARNING, calendar.add(at, sla.within.scaled(sla.warn_at), sla.business)))
        steps.append((BREACH, due))
        if sla.escalate_after is not None:
            steps.append((ESCALATION, calendar.add(due, sla.escalate_after, sla.business)))
        held = None if lead.hold_since is None else max(at, lead.hold_since)
        lead.slas += (OpenSla(name, instance, at, due, tuple(steps), held_since=held),)

    def _satisfy(self, lead: Lead, name: str, now: int, records: Records, event: LeadEvent) -> None:
        sla = lead.sla(name)
        if sla is not None:
            self._end(lead, sla, now, records, event)

    def _end(
        self, lead: Lead, sla: OpenSla, now: int, records: Records, event: LeadEvent, remove: bool = True
    ) -> None:
        """End an SLA instance because of ``event``, judged at the event's own time (SPEC 9).

        Each alert it had fired is answered: an alert whose threshold lies after the event's time
        was false (the evidence only arrived late), so it is retracted; the others were true and
        are resolved.
        """
        at, ending = event.occurred_at, sla
        # Steps whose threshold passed before the evidence were true alerts, even if a grace or
        # reorder delay kept them from firing yet: they fire now, and are resolved below.
        while sla.held_since is None and sla.next_at is not None and sla.next_at < at:
            records.append(self._step_alert(lead, sla, sla.steps[sla.fired][0], now))
            sla = replace(sla, fired=sla.fired + 1)
        for kind, threshold in sla.steps[: sla.fired]:
            fired = ids.alert_id(lead.lead_id, sla.name, sla.instance, kind)
            if threshold > at:
                records.append(self._alert(
                    lead, ids.alert_id(lead.lead_id, sla.name, sla.instance, "retracted:" + kind),
                    "sla_retracted", sla.name, "late_event", _LEVEL[kind], sla.started_at, sla.due_at,
                    now, resolves=fired, evidence=event.event_id, overdue=False,
                ))
            else:
                records.append(self._alert(
                    lead, ids.alert_id(lead.lead_id, sla.name, sla.instance, "resolved:" + kind),
                    "sla_resolved", sla.name, None, _LEVEL[kind], sla.started_at, sla.due_at, now,
                    resolves=fired,
                ))
        if remove:
            lead.slas = tuple(s for s in lead.slas if s is not ending)

    # -- holds (SPEC 9) -----------------------------------------------------------------------
    def _hold(self, lead: Lead, event: SalesDispositioned, now: int, records: Records) -> None:
        """Pause every running SLA of the lead; a second hold only moves the end."""
        if not lead.slas:
            return
        if lead.hold_since is not None:
            lead.hold_until = event.until
            return
        at = event.occurred_at
        lead.hold_since, lead.hold_until = at, event.until
        lead.slas = tuple(replace(sla, held_since=at) for sla in lead.slas)
        for sla in lead.slas:
            records.append(self._alert(
                lead, ids.alert_id(lead.lead_id, sla.name, sla.instance, "held:" + event.event_id),
                "sla_held", sla.name, event.reason, 0, sla.started_at, sla.due_at, now, overdue=False,
            ))

    def _resume(self, lead: Lead, at: int, cause: str, now: int, records: Records) -> None:
        """Restart the held SLAs at ``at`` with the time each threshold still had at the hold."""
        if lead.hold_since is None:
            return
        team = self.policy.for_team(lead.team)
        calendar = calendar_for(team.calendar)
        slas = []
        for sla in lead.slas:
            since = sla.held_since
            if since is None:
                slas.append(sla)
                continue
            start = max(at, since)
            business = team.slas[sla.name].business

            def moved(threshold: int) -> int:
                if threshold <= since:  # already passed before the hold: stays
                    return threshold
                if business:
                    return calendar.add_working_ms(start, calendar.working_ms_between(since, threshold))
                return min(start + (threshold - since), LATEST_MS)  # clamped, as calendar.add does

            steps = sla.steps[: sla.fired] + tuple((k, moved(t)) for k, t in sla.steps[sla.fired:])
            due = next(t for k, t in steps if k == BREACH)
            held = sla.held_ms + (start - since)
            sla = replace(sla, steps=steps, due_at=due, held_since=None, held_ms=held)
            records.append(self._alert(
                lead, ids.alert_id(lead.lead_id, sla.name, sla.instance, f"resumed:{cause}:{since}"),
                "sla_resumed", sla.name, None, 0, sla.started_at, due, now, overdue=False,
                held_ms=start - since,
            ))
            slas.append(sla)
        lead.slas = tuple(slas)
        lead.hold_since = lead.hold_until = None

    def _step_alert(self, lead: Lead, sla: OpenSla, kind: str, now: int) -> AlertRecord:
        if kind == WARNING:
            type_, reason = "sla_warning", None
        else:
            type_, reason = BREACH_ALERT[sla.name]
        return self._alert(
            lead,
            ids.alert_id(lead.lead_id, sla.name, sla.instance, kind),
            type_,
            sla.name,
            reason,
            _LEVEL[kind],
            sla.started_at,
            sla.due_at,
            now,
        )

    def _instant_alert(
        self,
        lead: Lead,
        reason: str,
        sla: str | None,
        event: LeadEvent,
        now: int,
        stage: Stage | None = None,
    ) -> AlertRecord:
        """A broken handoff seen in one event (ping-pong, reject without reason): no deadline."""
        return self._alert(
            lead,
            ids.alert_id(lead.lead_id, reason, event.event_id, reason),
            "handoff_broken",
            sla,
            reason,
            1,
            event.occurred_at,
            None,
            now,
            stage=stage,
        )

    def _alert(
        self,
        lead: Lead,
        alert_id: str,
        type_: str,
        sla: str | None,
        reason: str | None,
        level: int,
        started_at: int | None,
        due_at: int | None,
        now: int,
        *,
        resolves: str | None = None,
        stage: Stage | None = None,
        evidence: str | None = None,
        overdue: bool = True,
        held_ms: int | None = None,
    ) -> AlertRecord:
        return AlertRecord(
            alert_id=alert_id,
            type=type_,
            lead_id=lead.lead_id,
            sla=sla,
            reason=reason,
            level=level,
            stage=(stage or lead.stage)._value_,
            owner_id=lead.owner_id,
            team=lead.team,
            started_at=started_at,
            due_at=due_at,
            detected_at=now,
            overdue_by_ms=max(0, now - due_at) if overdue and due_at is not None else 0,
            resolves_alert_id=resolves,
            evidence_event_id=evidence,
            held_ms=held_ms,
            policy_version=self.policy_version,
        )
