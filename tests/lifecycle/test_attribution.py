"""SPEC section 10 in the engine: what a lead remembers (first touch, MQL touch, fields, grade), what
every lifecycle record carries, and the MQL gate of ``minimum_for_mql`` with re-qualification."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from lifecycle.engine import Engine
from lifecycle.lead import Lead
from lifecycle.policy import Grading, GradingRule, Policy
from lifecycle.processor import Processor
from lifecycle.records import LifecycleRecord
from lifecycle.stages import Stage
from tests.lifecycle.scenario import Scenario, assign, deal, disposition, email, form_fill, t, touch
from tests.strategies import events

RULES = (
    GradingRule("employees", "at_least", 1000, 30),
    GradingRule("title", "matches", r"(?i)\b(vp|chief|head|director)\b", 25),
    GradingRule("country", "in", ("US", "DE", "GB"), 10),
)
GRADED = Policy(grading=Grading(RULES, {"A": 60, "B": 40, "C": 20}))
GATED = Policy(grading=Grading(RULES, {"A": 60, "B": 40, "C": 20}, minimum_for_mql="C"))
AT = "2026-03-02 10:00"


# -- attribution -----------------------------------------------------------------------------------

def test_the_first_marketing_event_sets_first_channel_and_campaign_and_later_ones_do_not():
    s = Scenario()
    s.send(form_fill("L1", AT, "webinar", form_id="f7", utm_medium="paid_social", utm_campaign="q2-launch"))
    s.send(form_fill("L1", "2026-03-02 11:00", "webinar", utm_medium="cpc", utm_campaign="other"))
    s.send(email("L1", "2026-03-02 12:00", "click", campaign_id="c9"))
    lead = s.lead()
    assert (lead.first_channel, lead.first_campaign) == ("paid_social", "q2-launch")
    assert all((r.first_channel, r.first_campaign) == ("paid_social", "q2-launch") for r in s.transitions)


def test_the_creation_record_carries_the_creating_events_attribution():
    s = Scenario()
    s.send(email("L1", AT, "delivered", campaign_id="c3"))
    (created,) = s.transitions
    assert (created.to_stage, created.first_channel, created.first_campaign) == ("new", "email", "c3")


def test_a_lead_created_by_sales_gets_its_first_touch_at_its_first_marketing_event():
    s = Scenario()
    s.send(assign("L1", AT, "rep-1"))
    assert s.lead().first_channel is None and s.transitions[0].first_channel is None
    s.send(form_fill("L1", "2026-03-02 11:00", "demo_request", form_id="f1"))
    assert (s.lead().first_channel, s.lead().first_campaign) == ("form", "f1")
    assert (s.transitions[-1].to_stage, s.transitions[-1].first_channel) == ("mql", "form")


def test_the_mql_touch_is_the_event_that_made_the_lead_mql():
    s = Scenario()
    s.send(email("L1", AT, "reply", campaign_id="c1"))  # first touch, 15 points: engaged
    s.send(form_fill("L1", "2026-03-02 11:00", "demo_request", form_id="f1", utm_medium="cpc", utm_campaign="brand"))
    mql = s.transitions[-1]
    assert (mql.to_stage, mql.first_channel, mql.mql_channel, mql.mql_campaign) == ("mql", "email", "cpc", "brand")
    assert [r.mql_channel for r in s.transitions] == [None, None, "cpc"]


def test_reaching_the_threshold_by_email_makes_email_the_mql_channel():
    s = Scenario()
    for n in range(4):  # 4 x reply (15) = 60 >= 50
        s.send(email("L1", f"2026-03-02 1{n}:00", "reply", campaign_id=f"c{n}"))
    assert s.stage() == "mql" and (s.lead().mql_channel, s.lead().mql_campaign) == ("email", "c3")


def test_a_second_mql_move_replaces_the_mql_touch_and_sales_records_keep_it():
    s = Scenario()
    s.send(form_fill("L1", AT, "demo_request", form_id="f1"))
    s.send(disposition("L1", "2026-03-02 11:00", "reject", "no budget"))
    assert s.transitions[-1].mql_channel == "form"  # the reject names where the lead it rejected came from
    s.send(form_fill("L1", "2026-03-09 10:00", "pricing", utm_medium="cpc", utm_campaign="retarget"))
    assert s.stage() == "mql" and (s.lead().mql_channel, s.lead().mql_campaign) == ("cpc", "retarget")
    assert s.lead().first_channel == "form"


def test_an_mql_move_by_no_marketing_event_has_no_mql_touch():
    lead = Lead("L1", Stage.ENGAGED, mql_channel="cpc", mql_campaign="x")
    Engine._entering(lead, Stage.MQL, touch("L1", AT))
    assert (lead.mql_channel, lead.mql_campaign) == (None, None)


# -- amount ----------------------------------------------------------------------------------------

def test_amount_is_on_the_move_to_customer_only():
    s = Scenario().to("sql")
    s.send(deal("L1", "2026-03-03 10:00", "created", amount=12000))
    s.send(deal("L1", "2026-03-10 10:00", "closed_won", amount=15000.5))
    assert [(r.to_stage, r.amount) for r in s.transitions[-2:]] == [("opportunity", None), ("customer", 15000.5)]
    assert all(r.amount is None for r in s.transitions[:-1])


def test_a_closed_won_without_amount_takes_the_deals_latest_amount():
    s = Scenario().to("sql")
    s.send(deal("L1", "2026-03-03 10:00", "created", amount=12000))
    s.send(deal("L1", "2026-03-05 10:00", "proposal", amount=40000))
    s.send(deal("L1", "2026-03-10 10:00", "closed_won"))
    assert s.transitions[-1].amount == 40000


def test_a_won_deal_without_any_amount_has_none():
    s = Scenario().to("customer")
    assert s.transitions[-1].to_stage == "customer" and s.transitions[-1].amount is None


# -- fields and grade ------------------------------------------------------------------------------

def test_fields_merge_across_events_and_the_grade_follows_the_latest_values():
    s = Scenario(GRADED)
    s.send(form_fill("L1", AT, "content_download", employees=5000, title="Intern", country="US"))
    assert (s.lead().fit_points, s.lead().grade) == (40, "B")
    s.send(form_fill("L1", "2026-03-02 11:00", "content_download", title="VP Marketing"))
    assert dict(s.lead().fields) == {"employees": 5000, "title": "VP Marketing", "country": "US"}
    assert (s.lead().fit_points, s.lead().grade) == (65, "A")
    s.send(form_fill("L1", "2026-03-02 12:00", "content_download", employees="200"))
    assert (s.lead().fit_points, s.lead().grade) == (35, "C")
    assert [r.grade for r in s.transitions] == ["B", "B"]  # new, engaged: the grade after the change


def test_without_rules_the_grade_is_null_but_fields_are_kept():
    s = Scenario()
    s.send(form_fill("L1", AT, "demo_request", employees=5000))
    assert s.lead().grade is None and all(r.grade is None for r in s.transitions)
    assert dict(s.lead().fields) == {"employees": 5000}


def test_a_lead_without_fields_is_graded_d_under_rules_from_its_first_event():
    s = Scenario(GRADED)
    s.send(touch("L1", AT))
    assert s.lead().grade == "D" and s.transitions[0].grade == "D"


def test_a_lead_graded_under_an_old_policy_loses_its_grade_under_one_without_rules():
    graded = Scenario(GRADED)
    graded.send(form_fill("L1", AT, "webinar", employees=5000))
    lead = Engine(Policy()).apply(graded.lead(), email("L1", "2026-03-02 11:00", "open"), t("2026-03-02 11:00")).lead
    assert lead.grade is None and lead.fit_points == 0


def test_a_lead_from_before_grading_is_graded_at_its_next_event():
    plain = Scenario()
    plain.send(form_fill("L1", AT, "webinar", employees=5000, country="DE"))
    lead = Engine(GRADED).apply(plain.lead(), email("L1", "2026-03-02 11:00", "open"), t("2026-03-02 11:00")).lead
    assert (lead.fit_points, lead.grade) == (40, "B")  # 30 + 10


# -- the MQL gate ----------------------------------------------------------------------------------

def test_below_the_minimum_a_hand_raiser_form_only_engages():
    s = Scenario(GATED)
    s.send(form_fill("L1", AT, "demo_request", title="Intern"))
    assert s.stage() == "engaged" and s.lead().grade == "D" and s.lead().hand_raised


def test_below_the_minimum_reaching_the_threshold_only_engages():
    s = Scenario(GATED)
    for n in range(4):
        s.send(email("L1", f"2026-03-02 1{n}:00", "reply"))
    assert s.lead().score == 60 and s.stage() == "engaged"


def test_at_the_minimum_a_hand_raiser_form_moves_to_mql_and_the_record_names_the_grade():
    s = Scenario(GATED)
    s.send(form_fill("L1", AT, "demo_request", employees=1500))
    assert s.stage() == "mql" and s.transitions[-1].grade == "C"


def test_a_later_form_fill_raising_the_grade_moves_a_held_hand_raiser_to_mql_on_that_event():
    s = Scenario(GATED)
    s.send(form_fill("L1", AT, "demo_request"))
    s.send(email("L1", "2026-03-02 11:00", "click"))  # still D: no move
    assert s.stage() == "engaged"
    s.send(form_fill("L1", "2026-03-03 10:00", "content_download", event_id="lift", form_id="f9", employees=2000))
    mql = s.transitions[-1]
    assert (mql.to_stage, mql.trigger_event_id, mql.grade, mql.mql_campaign) == ("mql", "lift", "C", "f9")


def test_a_later_form_fill_raising_the_grade_moves_a_lead_at_the_threshold_to_mql():
    s = Scenario(GATED)
    for n in range(4):
        s.send(email("L1", f"2026-03-02 1{n}:00", "reply"))
    s.send(form_fill("L1", "2026-03-03 10:00", "webinar", event_id="lift", title="Head of Sales"))
    assert s.stage() == "mql" and s.transitions[-1].trigger_event_id == "lift"


def test_a_raised_grade_alone_moves_nothing_without_score_or_hand_raise():
    s = Scenario(GATED)
    s.send(form_fill("L1", AT, "webinar"))
    s.send(form_fill("L1", "2026-03-03 10:00", "webinar", employees=5000, country="US"))
    assert s.lead().grade == "B" and s.stage() == "engaged" and s.lead().score == 40


def test_a_grade_raised_by_a_form_worth_no_points_still_requalifies():
    policy = replace(GATED, scoring=replace(GATED.scoring, points={**GATED.scoring.points, "form_fill:profile": 0}))
    s = Scenario(policy)
    s.send(form_fill("L1", AT, "demo_request"))
    s.send(form_fill("L1", "2026-03-03 10:00", "profile", employees=5000))
    assert s.stage() == "mql"


def test_recycling_forgets_the_hand_raise():
    s = Scenario(GATED)
    s.send(form_fill("L1", AT, "demo_request", employees=5000))
    s.send(disposition("L1", "2026-03-02 11:00", "reject", "timing"))
    assert s.stage() == "recycled" and not s.lead().hand_raised
    s.send(form_fill("L1", "2026-03-09 10:00", "webinar", title="VP Sales"))  # grade rises to B, 20 points
    assert s.stage() == "engaged"


def test_a_lead_at_the_minimum_is_not_held_and_sales_stages_ignore_the_gate():
    s = Scenario(GATED)
    s.send(form_fill("L1", AT, "demo_request", employees=1000))
    s.send(form_fill("L1", "2026-03-02 11:00", "webinar", employees=10))  # grade falls to D in mql
    assert s.stage() == "mql" and s.lead().grade == "D"
    s.send(touch("L1", "2026-03-02 12:00"))
    assert s.stage() == "sal"


# -- state -----------------------------------------------------------------------------------------

def test_attribution_and_fit_survive_serialisation_and_old_rows_load_with_defaults():
    s = Scenario(GATED)
    s.send(form_fill("L1", AT, "demo_request", utm_medium="cpc", utm_campaign="brand", employees=5000, ratio=0.5))
    s.send(deal("L1", "2026-03-03 10:00", "created", amount=0.0))
    lead = s.lead()
    state = lead.to_state()
    assert Lead.from_state(state) == lead
    assert state["deal_amount"] == 0.0 and state["fields"] == [["employees", 5000], ["ratio", 0.5]]
    old = {k: v for k, v in state.items() if k in Lead("x").to_state()}  # a row written before section 10
    loaded = Lead.from_state(old)
    assert (loaded.first_channel, loaded.fields, loaded.grade, loaded.hand_raised, loaded.deal_amount) == (
        None, (), None, False, None)
    assert "first_channel" not in Lead("x").to_state()  # unset fields cost nothing in a row


# -- properties ------------------------------------------------------------------------------------

fast = settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)


def _run(policy: Policy, stream: list) -> tuple[Processor, list[LifecycleRecord]]:
    processor = Processor(Engine(policy))
    out = []
    for event in stream:
        out.extend(r for r in processor.submit(event) if isinstance(r, LifecycleRecord))
    return processor, out


@fast
@given(st.lists(events(), max_size=60))
def test_no_lead_below_the_minimum_ever_enters_mql(stream):
    _, records = _run(GATED, stream)
    assert all(r.grade in ("A", "B", "C") for r in records if r.to_stage == "mql")


@fast
@given(st.lists(events(), max_size=60))
def test_every_record_carries_its_leads_first_touch_once_it_has_one(stream):
    processor, records = _run(GRADED, stream)
    firsts: dict[str, str | None] = {}
    for r in records:
        if r.lead_id in firsts and firsts[r.lead_id] is not None:
            assert r.first_channel == firsts[r.lead_id]  # never changes once set
        firsts[r.lead_id] = r.first_channel
        assert (r.amount is not None) <= (r.to_stage == "customer")
    for lead_id, lead in processor.leads.items():
        if lead.stage.value not in ("customer", "disqualified"):
            assert lead.grade is not None


@fast
@given(st.lists(events(), max_size=60))
def test_without_a_minimum_grading_changes_no_stage(stream):
    """Grades are information until ``minimum_for_mql`` is set: the same stages as without rules."""
    strip = lambda records: [(r.lead_id, r.from_stage, r.to_stage, r.trigger_event_id) for r in records]  # noqa: E731
    assert strip(_run(GRADED, stream)[1]) == strip(_run(Policy(), stream)[1])


@pytest.mark.parametrize("policy", [Policy(), GRADED, GATED], ids=["plain", "graded", "gated"])
def test_a_duplicate_form_fill_changes_no_field(policy):
    s = Scenario(policy)
    s.send(form_fill("L1", AT, "webinar", event_id="e-1", employees=5000))
    s.send(form_fill("L1", "2026-03-02 11:00", "webinar", event_id="e-1", employees=5))
    assert dict(s.lead().fields) == {"employees": 5000}
