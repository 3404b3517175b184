"""SPEC section 9, a fair clock: one test per rule, on the pure engine and the shared step.

Default calendar: UTC, Monday to Friday, 09:00-17:00; 2026-03-02 is a Monday. A demo request and an
assignment at 10:00 start ``first_touch``: warning 13:00, breach 14:00, escalation Tuesday 10:00.
"""

from __future__ import annotations

import dataclasses

import pytest

from lifecycle import ids
from lifecycle.events import SalesDispositioned
from lifecycle.policy import Lateness, Policy
from lifecycle.records import AlertRecord, LifecycleRecord
from schemas.policy_file import parse_policy
from lifecycle.errors import PolicyError
from tests.lifecycle.scenario import Scenario, assign, disposition, email, form_fill, t, touch


def kinds(alerts):
    return [(a.type, a.sla, a.level) for a in alerts]


def lateness(grace: str = "0s", reorder: str = "0s") -> Policy:
    return parse_policy(f'[lateness]\ngrace = "{grace}"\nreorder = "{reorder}"\n')


def waiting_for_touch(policy: Policy | None = None) -> Scenario:
    s = Scenario(policy or Policy())
    s.send(form_fill("L1", "2026-03-02 10:00", "demo_request", event_id="form"),
           assign("L1", "2026-03-02 10:00", "rep-1", event_id="assign"))
    return s


def hold(lead: str, at: str, until: str | None = None, event_id: str | None = None) -> SalesDispositioned:
    event = disposition(lead, at, "hold", reason="customer travelling", event_id=event_id)
    return dataclasses.replace(event, until=t(until) if until else None)


def first_touch_id(kind: str) -> str:
    return ids.alert_id("L1", "first_touch", "assign", kind)


# -- event-time judgement and retraction ------------------------------------------------------------
def test_the_spec_example_late_touch_resolves_the_true_warning_and_retracts_the_false_breach():
    s = waiting_for_touch()
    fired = s.send(email("L2", "2026-03-02 14:30", "open"))  # the clock passes 13:00 and 14:00
    assert kinds([a for a in fired if isinstance(a, AlertRecord)]) == [
        ("sla_warning", "first_touch", 0), ("follow_up_overdue", "first_touch", 1)]
    answer = s.send(touch("L1", "2026-03-02 13:50", event_id="late-touch"))
    resolved, retracted = [r for r in answer if isinstance(r, AlertRecord)]
    assert (resolved.type, resolved.resolves_alert_id) == ("sla_resolved", first_touch_id("warning"))
    assert resolved.evidence_event_id is None
    assert retracted.type == "sla_retracted"
    assert retracted.alert_id == first_touch_id("retracted:breach")
    assert retracted.resolves_alert_id == first_touch_id("breach")
    assert (retracted.reason, retracted.overdue_by_ms, retracted.evidence_event_id) == ("late_event", 0, "late-touch")
    assert retracted.detected_at == t("2026-03-02 14:30")
    assert s.stage() == "sal"  # the stage change still applies when the event arrives


def test_evidence_after_the_deadline_resolves_every_alert_it_fired():
    s = waiting_for_touch()
    s.send(email("L2", "2026-03-02 14:30", "open"))
    answer = [r for r in s.send(touch("L1", "2026-03-02 14:10")) if isinstance(r, AlertRecord)]
    assert [a.type for a in answer] == ["sla_resolved", "sla_resolved"]
    assert answer[1].overdue_by_ms == t("2026-03-02 14:30") - t("2026-03-02 14:00")


def test_only_alerts_whose_threshold_lies_after_the_evidence_are_retracted():
    s = waiting_for_touch()
    s.send(email("L2", "2026-03-02 14:30", "open"))
    answer = [r for r in s.send(touch("L1", "2026-03-02 14:00")) if isinstance(r, AlertRecord)]
    assert [a.type for a in answer] == ["sla_resolved", "sla_resolved"]  # 14:00 is not after 14:00


def test_a_stage_change_by_a_late_event_is_judged_at_its_time_too():
    s = waiting_for_touch()
    s.send(email("L2", "2026-03-02 14:30", "open"))
    answer = s.send(disposition("L1", "2026-03-02 12:00", "disqualify"))
    assert [a.type for a in answer if isinstance(a, AlertRecord)] == ["sla_retracted", "sla_retracted"]
    assert s.stage() == "disqualified"


def test_a_new_owner_before_the_deadline_retracts_the_old_owners_breach():
    s = waiting_for_touch()
    s.send(email("L2", "2026-03-02 14:30", "open"))
    answer = s.send(assign("L1", "2026-03-02 12:30", "rep-2"))
    assert [a.type for a in answer if isinstance(a, AlertRecord)] == ["sla_retracted", "sla_retracted"]


# -- grace ------------------------------------------------------------------------------------------
def test_grace_delays_a_timer_alert_but_keeps_its_deadline():
    s = waiting_for_touch(lateness(grace="10m"))
    assert [a.type for a in s.advance("2026-03-02 14:09")] == ["sla_warning"]
    breach, = s.advance("2026-03-02 14:10")
    assert (breach.type, breach.due_at, breach.detected_at) == (
        "follow_up_overdue", t("2026-03-02 14:00"), t("2026-03-02 14:10"))


def test_with_grace_evidence_from_before_the_threshold_arriving_in_time_fires_nothing():
    s = waiting_for_touch(lateness(grace="10m"))
    s.advance("2026-03-02 14:08")                       # warning fired at 13:10, breach not yet
    answer = s.send(touch("L1", "2026-03-02 13:55"))    # arrives before 14:10
    s.advance("2026-03-02 18:00")
    assert [a.type for a in s.alerts] == ["sla_warning", "sla_resolved"]
    assert [a.type for a in answer if isinstance(a, AlertRecord)] == ["sla_resolved"]


def test_with_grace_evidence_from_after_the_threshold_does_not_stop_the_alert():
    """Only evidence at or before T stops an alert held back by grace: a touch at 14:01 that
    arrives at 14:02 still makes the 14:00 breach true (it fires, then is resolved)."""
    s = waiting_for_touch(lateness(grace="10m"))
    s.advance("2026-03-02 14:02")
    answer = [r for r in s.send(touch("L1", "2026-03-02 14:01")) if isinstance(r, AlertRecord)]
    assert [a.type for a in answer] == ["follow_up_overdue", "sla_resolved", "sla_resolved"]
    assert answer[0].alert_id == first_touch_id("breach") and answer[0].due_at == t("2026-03-02 14:00")
    assert not s.lead().slas or s.lead().slas[0].name != "first_touch"


def test_grace_is_per_team():
    policy = parse_policy('[lateness]\ngrace = "10m"\n[teams.emea]\nlateness = { grace = "30m" }\n')
    assert policy.for_team("emea").lateness == Lateness(grace_ms=1_800_000)
    assert policy.for_team(None).lateness == Lateness(grace_ms=600_000)
    s = Scenario(policy)
    s.send(form_fill("L1", "2026-03-02 10:00", "demo_request"), assign("L1", "2026-03-02 10:00", "r", team="emea"))
    assert [a.type for a in s.advance("2026-03-02 14:29")] == ["sla_warning"]
    assert [a.type for a in s.advance("2026-03-02 14:30")] == ["follow_up_overdue"]


# -- order within a lead -----------------------------------------------------------------------------
def _ids(records):
    return [r.transition_id if isinstance(r, LifecycleRecord) else r.alert_id for r in records]


def test_a_reorder_window_applies_a_leads_events_in_event_time_order_whatever_their_arrival():
    policy = lateness(reorder="1s")
    fill = form_fill("L1", "2026-03-02 10:00", "demo_request", event_id="form")
    owner = assign("L1", "2026-03-02 10:00", "rep-1", event_id="assign")
    a, b = Scenario(policy), Scenario(policy)
    a.send(fill, owner)
    b.send(owner, fill)
    for s in (a, b):
        s.advance("2026-03-02 18:00")
    assert _ids(a.records) == _ids(b.records)
    # same second: form_fill before lead_assigned, so the lead enters mql owned: no assignment SLA
    assert not any(r.sla == "assignment" for r in a.alerts)
    assert [r.to_stage for r in a.transitions] == ["new", "mql"]


def test_without_a_window_arrival_order_decides():
    fill = form_fill("L1", "2026-03-02 10:00", "demo_request", event_id="form")
    owner = assign("L1", "2026-03-02 10:00", "rep-1", event_id="assign")
    a, b = Scenario(), Scenario()
    a.send(fill, owner)
    b.send(owner, fill)
    assert _ids(a.records) != _ids(b.records)


def test_held_events_wait_for_the_clock_to_pass_their_time_plus_the_window():
    s = Scenario(lateness(reorder="5m"))
    assert s.send(form_fill("L1", "2026-03-02 10:00", "demo_request")) == []
    assert s.processor.rows["L1"].held and s.processor.rows["L1"].wake_at == t("2026-03-02 10:05")
    assert s.advance("2026-03-02 10:04") == []
    released = s.advance("2026-03-02 10:05")
    assert [r.to_stage for r in released if isinstance(r, LifecycleRecord)] == ["new", "mql"]


def test_ties_are_broken_by_event_type_then_id():
    s = Scenario(lateness(reorder="1m"))
    s.send(touch("L1", "2026-03-02 10:00", event_id="b"), email("L1", "2026-03-02 10:00", "click", event_id="z"),
           form_fill("L1", "2026-03-02 10:00", "webinar", event_id="c"))
    s.advance("2026-03-02 10:01")
    assert [r.trigger_event_id for r in s.transitions] == ["c", "c"]  # the form fill creates and engages


def test_an_event_whose_slot_has_passed_is_applied_at_once_as_a_late_event():
    s = Scenario(lateness(reorder="1m"))
    s.send(email("L2", "2026-03-02 11:00", "open"))
    out = s.send(form_fill("L1", "2026-03-02 10:00", "demo_request"))
    assert [r.to_stage for r in out if isinstance(r, LifecycleRecord)] == ["new", "mql"]


def test_everything_held_is_applied_at_the_end_of_a_replay():
    s = Scenario(lateness(reorder="1h"))
    s.send(form_fill("L1", "2026-03-02 10:00", "demo_request"))
    out = s.processor.finish()
    assert [r.to_stage for r in out if isinstance(r, LifecycleRecord)] == ["new", "mql"]
    assert not s.processor.rows["L1"].held


def test_timer_alerts_wait_for_the_larger_of_grace_and_window():
    s = waiting_for_touch(lateness(grace="1m", reorder="10m"))
    s.advance("2026-03-02 13:09")
    assert [a.type for a in s.alerts] == []
    assert [a.type for a in s.advance("2026-03-02 13:10")] == ["sla_warning"]
    assert [a.type for a in s.advance("2026-03-02 14:09")] == []
    assert [a.type for a in s.advance("2026-03-02 14:10")] == ["follow_up_overdue"]


# -- late events are counted ------------------------------------------------------------------------
def test_late_events_are_counted_never_dropped():
    s = Scenario()
    s.send(email("L1", "2026-03-02 12:00", "click"), email("L1", "2026-03-02 11:00", "click"),
           email("L1", "2026-03-02 11:30", "click"))
    tally = s.processor.tally
    assert (tally.applied, tally.late, tally.max_late_ms) == (3, 2, 3_600_000)


# -- holds -------------------------------------------------------------------------------------------
def test_a_hold_pauses_every_running_sla_and_a_resume_restarts_it_with_its_remaining_time():
    s = waiting_for_touch()
    out = s.send(hold("L1", "2026-03-02 11:00", event_id="h"))
    assert [(a.type, a.sla, a.reason) for a in out] == [("sla_held", "first_touch", "customer travelling")]
    assert s.advance("2026-03-03 09:00") == []                  # nothing fires while held
    resumed = s.send(disposition("L1", "2026-03-03 09:00", "resume", reason=None))
    assert [a.type for a in resumed] == ["sla_resumed"]
    assert resumed[0].held_ms == t("2026-03-03 09:00") - t("2026-03-02 11:00")
    # 2 working hours were left to the warning, 3 to the breach: 11:00 and 12:00 on Tuesday
    assert resumed[0].due_at == t("2026-03-03 12:00")
    warning, breach = s.advance("2026-03-03 12:00")
    assert (warning.type, warning.detected_at) == ("sla_warning", t("2026-03-03 11:00"))
    assert (breach.type, breach.due_at) == ("follow_up_overdue", t("2026-03-03 12:00"))


def test_a_hold_with_until_resumes_by_itself_when_the_clock_reaches_it():
    s = waiting_for_touch()
    s.send(hold("L1", "2026-03-02 11:00", until="2026-03-02 12:00"))
    out = s.advance("2026-03-02 15:00")
    assert [a.type for a in out] == ["sla_resumed", "sla_warning", "follow_up_overdue"]
    assert out[2].due_at == t("2026-03-02 15:00")


def test_a_second_hold_only_moves_the_end():
    s = waiting_for_touch()
    s.send(hold("L1", "2026-03-02 11:00", until="2026-03-02 12:00"))
    assert s.send(hold("L1", "2026-03-02 11:30", until="2026-03-02 13:00")) == []
    assert s.lead().hold_since == t("2026-03-02 11:00") and s.lead().hold_until == t("2026-03-02 13:00")


def test_hold_and_resume_without_a_running_sla_change_nothing():
    s = Scenario().to("engaged")
    before = s.lead().to_state()
    assert s.send(hold("L1", "2026-03-02 11:00")) == []
    assert s.send(disposition("L1", "2026-03-02 12:00", "resume", reason=None)) == []
    after = s.lead().to_state()
    assert {k: v for k, v in after.items() if k not in ("seen", "last_activity_at")} == \
           {k: v for k, v in before.items() if k not in ("seen", "last_activity_at")}


def test_a_hold_neither_satisfies_an_sla_nor_moves_a_stage():
    s = waiting_for_touch()
    s.send(hold("L1", "2026-03-02 11:00"))
    assert s.stage() == "mql" and [sla.name for sla in s.lead().slas] == ["first_touch"]


def test_a_stage_change_ends_the_hold_with_the_old_stages_slas():
    s = waiting_for_touch()
    s.send(hold("L1", "2026-03-02 11:00"))
    s.send(touch("L1", "2026-03-02 12:00"))
    lead = s.lead()
    assert s.stage() == "sal" and lead.hold_since is None
    assert [(sla.name, sla.held_since) for sla in lead.slas] == [("qualification", None)]


# -- the policy --------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, key", [
    ('[lateness]\ngrace = "soon"\n', "lateness.grace"),
    ('[lateness]\nwait = "1m"\n', "lateness.wait"),
    ('[teams.emea]\nlateness = { reorder = "1m" }\n', "teams.emea.lateness.reorder"),
])
def test_a_bad_lateness_section_is_refused_with_file_line_and_key(text, key):
    with pytest.raises(PolicyError) as error:
        parse_policy(text, "p.toml")
    assert str(error.value).startswith("p.toml:") and key in str(error.value)


# -- properties --------------------------------------------------------------------------------------
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from tests.strategies import HOUR_MS, events  # noqa: E402


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(events(span_ms=6 * HOUR_MS), max_size=30, unique_by=lambda e: (e.lead_id, e.event_id)),
       st.randoms(use_true_random=False))
def test_within_the_window_arrival_order_never_changes_the_output(stream, rnd):
    policy = lateness(reorder="1d")  # longer than the stream: every event waits for its slot
    shuffled = list(stream)
    rnd.shuffle(shuffled)
    outputs = []
    for arrival in (stream, shuffled):
        s = Scenario(policy)
        s.send(*arrival)
        s.records.extend(s.processor.finish(max((e.occurred_at for e in stream), default=0) + 30 * 24 * HOUR_MS))
        outputs.append(sorted(_ids(s.records)))
    assert outputs[0] == outputs[1]
