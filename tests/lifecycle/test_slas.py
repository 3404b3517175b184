"""SPEC section 4: every SLA row, warning, escalation, resolution and the instant broken handoffs.

Default calendar: UTC, Monday to Friday, 09:00-17:00. 2026-03-02 is a Monday.
"""

from __future__ import annotations

import datetime as dt

from lifecycle.policy import CalendarPolicy, Duration, Policy, SlaPolicy, TeamPolicy
from tests.lifecycle.scenario import Scenario, assign, deal, disposition, email, form_fill, t, touch


def kinds(alerts):
    return [(a.type, a.sla, a.reason, a.level) for a in alerts]


# -- assignment ---------------------------------------------------------------------------------
def test_assignment_breaches_15_calendar_minutes_after_entering_mql_unowned():
    s = Scenario().to("mql", at="2026-03-07 23:50")  # a Saturday night: calendar time still counts
    assert s.advance("2026-03-08 00:04") == []
    fired = s.advance("2026-03-08 00:05")
    assert kinds(fired) == [("handoff_broken", "assignment", "unassigned", 1)]
    assert fired[0].due_at == t("2026-03-08 00:05")
    assert fired[0].stage == "mql"


def test_assignment_is_satisfied_by_lead_assigned():
    s = Scenario().to("mql")
    s.send(assign("L1", "2026-03-02 10:10", "rep-1"))
    s.advance("2026-03-02 10:30")
    assert not any(a.sla == "assignment" for a in s.alerts)


def test_no_assignment_sla_when_the_lead_enters_mql_with_an_owner():
    s = Scenario().to("mql", owner="rep-1")
    assert [sla.name for sla in s.lead().slas] == ["first_touch"]


# -- first touch --------------------------------------------------------------------------------
def test_first_touch_warns_at_75_percent_breaches_at_4_business_hours_and_escalates_4_more():
    s = Scenario().to("mql", at="2026-03-02 15:00", owner="rep-1")  # Monday 15:00
    s.advance("2026-03-03 23:00")
    assert kinds(s.alerts) == [
        ("sla_warning", "first_touch", None, 0),  # 3 business hours: Tuesday 10:00
        ("follow_up_overdue", "first_touch", None, 1),  # 4 business hours: Tuesday 11:00
        ("follow_up_overdue", "first_touch", None, 2),  # 4 more: Tuesday 15:00
    ]
    assert [a.detected_at for a in s.alerts] == [t("2026-03-03 10:00"), t("2026-03-03 11:00"), t("2026-03-03 15:00")]
    assert all(a.due_at == t("2026-03-03 11:00") for a in s.alerts)
    assert s.alerts[2].overdue_by_ms == 4 * 3_600_000
    assert {a.owner_id for a in s.alerts} == {"rep-1"}


def test_first_touch_starts_when_an_unowned_mql_gets_its_owner():
    s = Scenario().to("mql", at="2026-03-02 10:00")
    s.send(assign("L1", "2026-03-02 10:05", "rep-1"))
    s.advance("2026-03-02 14:05")
    overdue = [a for a in s.alerts if a.type == "follow_up_overdue"]
    assert overdue[0].started_at == t("2026-03-02 10:05") and overdue[0].due_at == t("2026-03-02 14:05")


def test_first_touch_is_satisfied_by_a_sales_touch_before_the_deadline():
    s = Scenario().to("mql", at="2026-03-02 10:00", owner="rep-1")
    s.send(touch("L1", "2026-03-02 12:00"))
    s.advance("2026-03-09 10:00")
    assert not any(a.sla == "first_touch" for a in s.alerts)


def test_first_touch_is_satisfied_by_any_disposition():
    for decision in ("accept", "qualify", "reject", "disqualify"):
        s = Scenario().to("mql", at="2026-03-02 10:00", owner="rep-1")
        s.send(disposition("L1", "2026-03-02 10:30", decision))
        s.advance("2026-03-02 18:00")
        assert not any(a.sla == "first_touch" for a in s.alerts), decision


def test_policy_without_warning_or_escalation_fires_only_the_breach():
    slas = dict(Policy().slas)
    slas["first_touch"] = SlaPolicy(Duration(2, "h"), business=True)
    s = Scenario(Policy(slas=slas)).to("mql", at="2026-03-02 10:00", owner="rep-1")
    s.advance("2026-03-03 17:00")
    assert kinds(s.alerts) == [("follow_up_overdue", "first_touch", None, 1)]
    assert s.alerts[0].detected_at == t("2026-03-02 12:00")


# -- resolution ---------------------------------------------------------------------------------
def test_an_sla_that_fired_is_resolved_naming_each_alert_it_fired():
    s = Scenario().to("mql", at="2026-03-02 10:00", owner="rep-1")
    s.advance("2026-03-02 14:30")  # warning at 13:00, breach at 14:00
    fired = {a.alert_id for a in s.alerts}
    resolved = s.send(touch("L1", "2026-03-02 14:45"))
    closing = [a for a in resolved if getattr(a, "type", None) == "sla_resolved"]
    assert {a.resolves_alert_id for a in closing} == fired
    assert all(a.sla == "first_touch" for a in closing)
    assert len({a.alert_id for a in closing}) == 2


def test_an_sla_that_never_fired_ends_without_a_resolve():
    s = Scenario().to("mql", at="2026-03-02 10:00", owner="rep-1")
    out = s.send(touch("L1", "2026-03-02 10:10"))
    assert [r.to_stage for r in out] == ["sal"]  # the stage change, and no alert


def test_leaving_the_stage_ends_its_sla_met():
    s = Scenario().to("sal", at="2026-03-02 10:00")
    s.send(deal("L1", "2026-03-03 10:00", "closed_won"))
    s.advance("2026-03-30 10:00")
    assert s.alerts == []


# -- qualification, opportunity, nurture --------------------------------------------------------
def test_qualification_breaches_5_business_days_after_entering_sal():
    s = Scenario().to("sal", at="2026-03-02 10:00")  # Monday
    s.advance("2026-03-09 09:59")
    assert s.alerts == []
    s.advance("2026-03-09 10:00")  # next Monday 10:00: five working days
    assert kinds(s.alerts) == [("follow_up_overdue", "qualification", None, 1)]


def test_qualification_is_satisfied_by_qualify_reject_or_disqualify():
    for decision in ("qualify", "reject", "disqualify"):
        s = Scenario().to("sal", at="2026-03-02 10:00")
        s.send(disposition("L1", "2026-03-04 10:00", decision))
        s.advance("2026-03-10 10:00")
        assert not any(a.sla == "qualification" for a in s.alerts), decision


def test_opportunity_breaches_10_business_days_after_entering_sql():
    s = Scenario().to("sql", at="2026-03-02 10:00")
    s.advance("2026-03-16 09:59")
    assert s.alerts == []
    s.advance("2026-03-16 10:00")
    assert kinds(s.alerts) == [("follow_up_overdue", "opportunity", None, 1)]


def test_opportunity_is_satisfied_by_any_deal_stage_change_even_one_that_moves_nothing():
    s = Scenario().to("sql", at="2026-03-02 10:00")
    s.send(deal("L1", "2026-03-03 10:00", "closed_lost"))
    assert s.stage() == "sql"
    s.advance("2026-04-30 10:00")
    assert s.alerts == []


def test_nurture_breaches_7_calendar_days_after_entering_recycled():
    s = Scenario().to("recycled", at="2026-03-02 10:00")
    s.advance("2026-03-09 09:59")
    assert s.alerts == []
    s.advance("2026-03-09 10:00")
    assert kinds(s.alerts) == [("handoff_broken", "nurture", "recycled_not_nurtured", 1)]


def test_nurture_is_satisfied_by_any_form_fill_or_email_engagement():
    for make in (lambda: form_fill("L1", "2026-03-03 10:00", "webinar"), lambda: email("L1", "2026-03-03 10:00", "delivered")):
        s = Scenario().to("recycled", at="2026-03-02 10:00")
        s.send(make())
        s.advance("2026-03-20 10:00")
        assert not any(a.sla == "nurture" for a in s.alerts)


def test_breach_then_nurture_resolves():
    s = Scenario().to("recycled", at="2026-03-02 10:00")
    s.advance("2026-03-10 10:00")
    s.send(email("L1", "2026-03-10 11:00", "open"))
    assert [a.type for a in s.alerts] == ["handoff_broken", "sla_resolved"]
    assert s.alerts[1].resolves_alert_id == s.alerts[0].alert_id


# -- instant broken handoffs --------------------------------------------------------------------
def test_reject_without_reason_breaks_the_handoff_and_still_applies():
    s = Scenario().to("sal", at="2026-03-02 10:00")
    out = s.send(disposition("L1", "2026-03-02 11:00", "reject", reason=None))
    assert s.stage() == "recycled"
    broken = [a for a in out if a.__class__.__name__ == "AlertRecord"]
    assert kinds(broken) == [("handoff_broken", None, "rejected_without_reason", 1)]
    assert broken[0].stage == "sal"


def test_disqualify_without_reason_breaks_the_handoff():
    s = Scenario().to("mql")
    s.send(disposition("L1", "2026-03-02 11:00", "disqualify", reason=""))
    assert s.stage() == "disqualified"
    assert kinds(s.alerts)[-1] == ("handoff_broken", None, "rejected_without_reason", 1)


def test_reject_with_a_reason_breaks_nothing():
    s = Scenario().to("sal")
    s.send(disposition("L1", "2026-03-02 11:00", "reject", reason="timing"))
    assert not any(a.reason == "rejected_without_reason" for a in s.alerts)


def test_ping_pong_fires_on_the_third_distinct_owner_while_waiting_for_first_touch():
    s = Scenario().to("mql", at="2026-03-02 10:00")
    s.send(assign("L1", "2026-03-02 10:01", "rep-a"), assign("L1", "2026-03-02 10:02", "rep-b"))
    s.send(assign("L1", "2026-03-02 10:03", "rep-a"))  # back to an earlier owner: still two distinct
    assert not any(a.reason == "ping_pong" for a in s.alerts)
    s.send(assign("L1", "2026-03-02 10:04", "rep-c"))
    assert [a.reason for a in s.alerts if a.reason == "ping_pong"] == ["ping_pong"]
    s.send(assign("L1", "2026-03-02 10:05", "rep-d"))  # fires once per wait
    assert len([a for a in s.alerts if a.reason == "ping_pong"]) == 1


def test_each_change_of_owner_restarts_first_touch_for_the_new_owner():
    s = Scenario().to("mql", at="2026-03-02 10:00", owner="rep-a")
    s.advance("2026-03-02 13:30")  # rep-a's warning fired at 13:00
    warned = s.alerts[-1]
    out = s.send(assign("L1", "2026-03-02 13:30", "rep-b"))
    assert [(a.type, a.resolves_alert_id) for a in out] == [("sla_resolved", warned.alert_id)]
    (sla,) = s.lead().slas
    assert sla.started_at == t("2026-03-02 13:30")
    s.advance("2026-03-03 17:00")
    breach = [a for a in s.alerts if a.type == "follow_up_overdue" and a.level == 1]
    assert breach[0].owner_id == "rep-b" and breach[0].due_at == t("2026-03-03 09:30")


def test_reassigning_the_same_owner_does_not_restart_first_touch():
    s = Scenario().to("mql", at="2026-03-02 10:00", owner="rep-a")
    s.send(assign("L1", "2026-03-02 11:00", "rep-a"))
    assert s.lead().slas[0].started_at == t("2026-03-02 10:00")


# -- alert ids ----------------------------------------------------------------------------------
def test_alert_ids_are_deterministic_per_sla_instance_and_kind():
    def run():
        s = Scenario()
        s.send(assign("L1", "2026-03-02 09:00", "rep-1", event_id="a1"), form_fill("L1", "2026-03-02 10:00", "demo_request", event_id="f1"))
        s.advance("2026-03-03 17:00")
        return [a.alert_id for a in s.alerts]

    first, second = run(), run()
    assert first == second and len(set(first)) == 3


# -- business hours per team --------------------------------------------------------------------
def test_team_calendar_and_sla_overrides_apply_to_that_teams_leads():
    berlin = CalendarPolicy(timezone="Europe/Berlin")
    team_slas = dict(Policy().slas)
    team_slas["first_touch"] = SlaPolicy(Duration(2, "h"), business=True)
    policy = Policy(teams={"emea": TeamPolicy(berlin, team_slas)})
    s = Scenario(policy)
    s.send(assign("L1", "2026-03-02 07:00", "rep-1", team="emea"))  # 08:00 in Berlin, before hours
    s.send(form_fill("L1", "2026-03-02 07:00", "demo_request"))
    s.advance("2026-03-02 17:00")
    breach = [a for a in s.alerts if a.type == "follow_up_overdue"]
    assert breach[0].due_at == t("2026-03-02 10:00")  # 09:00 + 2h Berlin = 10:00 UTC
    assert breach[0].team == "emea"


def test_holidays_do_not_count_as_business_time():
    holiday = CalendarPolicy(holidays=frozenset({dt.date(2026, 3, 3)}))
    s = Scenario(Policy(calendar=holiday)).to("mql", at="2026-03-02 16:00", owner="rep-1")
    s.advance("2026-03-05 17:00")
    breach = [a for a in s.alerts if a.type == "follow_up_overdue" and a.level == 1]
    assert breach[0].due_at == t("2026-03-04 12:00")  # 1h Monday, Tuesday off, 3h Wednesday


# -- the policy that judged it (SPEC 11) ----------------------------------------------------------
def test_every_record_carries_the_version_of_the_engines_policy():
    quick = Policy(slas={**Policy().slas, "first_touch": SlaPolicy(Duration(1, "h"), business=False,
                                                                   warn_at=0.5)})
    for policy in (Policy(), quick):
        s = Scenario(policy).to("mql", owner="rep-1")
        s.advance("2026-03-04 10:00")
        s.send(touch("L1", "2026-03-04 11:00"))
        assert s.transitions and s.alerts
        assert {r.policy_version for r in s.records} == {policy.policy_version}
    assert quick.policy_version != Policy().policy_version


def test_a_new_policy_judges_slas_started_after_it_running_ones_keep_their_deadlines():
    """What a worker does when a policy is published: replace the engine between two messages."""
    from lifecycle.engine import Engine

    four_hours = Policy(slas={**Policy().slas, "first_touch": SlaPolicy(Duration(4, "h"), business=False)})
    one_hour = Policy(slas={**Policy().slas, "first_touch": SlaPolicy(Duration(1, "h"), business=False)})
    s = Scenario(four_hours).to("mql", lead="OLD", owner="rep-1", at="2026-03-02 10:00")
    s.processor.app.engine = Engine(one_hour)
    s.to("mql", lead="NEW", owner="rep-1", at="2026-03-02 10:30")
    s.advance("2026-03-02 15:00")
    breaches = {a.lead_id: a for a in s.alerts if a.type == "follow_up_overdue"}
    assert breaches["OLD"].due_at == t("2026-03-02 14:00")    # the deadline it started with
    assert breaches["NEW"].due_at == t("2026-03-02 11:30")
    assert {a.policy_version for a in breaches.values()} == {one_hour.policy_version}  # from then on
    (old_mql,) = [r for r in s.transitions if r.lead_id == "OLD" and r.to_stage == "mql"]
    assert old_mql.policy_version == four_hours.policy_version
