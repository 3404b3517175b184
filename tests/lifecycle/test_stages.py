"""SPEC section 2: one test per row of the transition table, plus the rules under it."""

from __future__ import annotations

import pytest

from lifecycle.policy import Policy, Scoring
from lifecycle.stages import MACHINE, MOVES, OPEN, Stage, Trigger
from tests.lifecycle.scenario import Scenario, assign, deal, disposition, email, form_fill, touch

OPEN_STAGES = [s.value for s in OPEN]


def test_one_machine_drives_every_lead_and_no_lead_is_a_model_of_it():
    s = Scenario()
    for n in range(50):
        s.send(form_fill(f"L{n}", "2026-03-02 10:00", "demo_request"))
    assert MACHINE.models == []  # the machine is the table; no lead (and no cursor) is its model
    assert {s.stage(f"L{n}") for n in range(50)} == {"mql"}


def test_moves_are_read_off_the_one_machine():
    declared = {
        (Stage(source), Trigger(name), Stage(t.dest))
        for name, event in MACHINE.events.items()
        for source, transitions in event.transitions.items()
        for t in transitions
    }
    assert {(stage, trigger, dest) for (stage, trigger), dest in MOVES.items()} == declared


def test_unknown_lead_is_created_in_new_first_then_the_event_applies():
    s = Scenario()
    s.send(form_fill("L1", "2026-03-02 10:00", "demo_request", event_id="first"))
    created, moved = s.transitions
    assert (created.from_stage, created.to_stage, created.trigger_event_id) == (None, "new", "first")
    assert (moved.from_stage, moved.to_stage) == ("new", "mql")


def test_event_that_moves_nothing_creates_the_lead_in_new_only():
    s = Scenario()
    s.send(email("L1", "2026-03-02 10:00", "delivered"))
    assert s.path() == ["new"]
    assert s.lead().last_activity_at > 0


@pytest.mark.parametrize("form_type", ["demo_request", "contact_us", "pricing"])
@pytest.mark.parametrize("stage", ["new", "engaged", "recycled"])
def test_hand_raiser_form_moves_to_mql(stage, form_type):
    s = Scenario().to(stage)
    s.send(form_fill("L1", "2026-03-02 11:00", form_type))
    assert s.stage() == "mql"


def test_hand_raisers_come_from_the_policy():
    s = Scenario(Policy(scoring=Scoring(hand_raisers=frozenset({"trial_signup"}))))
    s.send(form_fill("L1", "2026-03-02 10:00", "demo_request"))
    assert s.stage() == "engaged"
    s.send(form_fill("L1", "2026-03-02 10:05", "trial_signup"))
    assert s.stage() == "mql"


@pytest.mark.parametrize("stage", ["new", "recycled"])
@pytest.mark.parametrize("make", [lambda: form_fill("L1", "2026-03-02 11:00", "webinar"), lambda: email("L1", "2026-03-02 11:00", "click")])
def test_scored_activity_moves_new_and_recycled_to_engaged(stage, make):
    s = Scenario().to(stage)
    s.send(make())
    assert s.stage() == "engaged"


def test_score_is_reset_to_zero_on_entering_recycled():
    s = Scenario().to("mql")
    s.send(email("L1", "2026-03-02 10:01", "reply"))
    assert s.lead().score > 0
    s.send(disposition("L1", "2026-03-02 10:02", "reject"))
    assert s.stage() == "recycled" and s.lead().score == 0


def test_activity_without_points_does_not_engage():
    s = Scenario()
    s.send(email("L1", "2026-03-02 10:00", "delivered"), email("L1", "2026-03-02 10:01", "unsubscribe"))
    assert s.stage() == "new" and s.lead().score == 0  # scores never go below zero


@pytest.mark.parametrize("stage", ["new", "engaged", "recycled"])
def test_score_reaching_the_mql_threshold_moves_to_mql(stage):
    s = Scenario().to(stage)
    for minute in range(10, 13):  # 3 × webinar (20 points) = 60 ≥ 50
        s.send(form_fill("L1", f"2026-03-02 11:{minute}", "webinar"))
    assert s.stage() == "mql"
    assert s.transitions[-1].score >= 50


def test_score_one_point_below_threshold_stays_engaged():
    s = Scenario(Policy(scoring=Scoring(mql_threshold=41)))
    s.send(form_fill("L1", "2026-03-02 10:00", "webinar"), form_fill("L1", "2026-03-02 10:01", "webinar"))
    assert s.lead().score == 40 and s.stage() == "engaged"
    s.send(email("L1", "2026-03-02 10:02", "open"))
    assert s.stage() == "mql"


@pytest.mark.parametrize("stage", OPEN_STAGES)
def test_lead_assigned_sets_the_owner_and_keeps_the_stage(stage):
    s = Scenario().to(stage)
    s.send(assign("L1", "2026-03-02 11:00", "rep-9", team="emea"))
    assert s.stage() == stage
    assert (s.lead().owner_id, s.lead().team) == ("rep-9", "emea")


@pytest.mark.parametrize("make", [lambda: touch("L1", "2026-03-02 11:00"), lambda: disposition("L1", "2026-03-02 11:00", "accept")])
def test_sales_touch_or_accept_moves_mql_to_sal(make):
    s = Scenario().to("mql")
    s.send(make())
    assert s.stage() == "sal"


@pytest.mark.parametrize("stage", ["new", "engaged", "sal", "sql", "recycled"])
def test_sales_touch_outside_mql_moves_nothing(stage):
    s = Scenario().to(stage)
    before = len(s.transitions)
    s.send(touch("L1", "2026-03-02 11:00"))
    assert s.stage() == stage and len(s.transitions) == before


@pytest.mark.parametrize("stage", ["mql", "sal"])
def test_qualify_moves_mql_and_sal_to_sql(stage):
    s = Scenario().to(stage)
    s.send(disposition("L1", "2026-03-02 11:00", "qualify"))
    assert s.stage() == "sql"


@pytest.mark.parametrize("stage", ["mql", "sal", "sql"])
def test_reject_moves_mql_sal_sql_to_recycled(stage):
    s = Scenario().to(stage)
    s.send(disposition("L1", "2026-03-02 11:00", "reject", reason="no budget"))
    assert s.stage() == "recycled"
    assert s.transitions[-1].reason == "no budget"


@pytest.mark.parametrize("stage", ["new", "engaged", "opportunity"])
def test_reject_elsewhere_moves_nothing(stage):
    s = Scenario().to(stage)
    s.send(disposition("L1", "2026-03-02 11:00", "reject"))
    assert s.stage() == stage


@pytest.mark.parametrize("stage", OPEN_STAGES)
def test_disqualify_moves_any_open_stage_to_disqualified(stage):
    s = Scenario().to(stage)
    s.send(disposition("L1", "2026-03-02 11:00", "disqualify", reason="student"))
    assert s.stage() == "disqualified"


@pytest.mark.parametrize(
    ("stage", "skipped"),
    [
        ("new", ["engaged", "mql", "sal", "sql"]),
        ("engaged", ["mql", "sal", "sql"]),
        ("mql", ["sal", "sql"]),
        ("sal", ["sql"]),
        ("sql", []),
    ],
)
@pytest.mark.parametrize("deal_stage", ["created", "discovery", "proposal", "negotiation"])
def test_open_deal_stage_moves_new_to_sql_into_opportunity_naming_skipped_stages(stage, skipped, deal_stage):
    s = Scenario().to(stage)
    s.send(deal("L1", "2026-03-02 11:00", deal_stage))
    assert s.stage() == "opportunity"
    assert list(s.transitions[-1].skipped_stages) == skipped


@pytest.mark.parametrize("stage", ["recycled", "opportunity"])
def test_open_deal_stage_from_recycled_or_opportunity_moves_nothing(stage):
    s = Scenario().to(stage)
    s.send(deal("L1", "2026-03-02 11:00", "proposal"))
    assert s.stage() == stage


@pytest.mark.parametrize("stage", OPEN_STAGES)
def test_closed_won_moves_any_open_stage_to_customer(stage):
    s = Scenario().to(stage)
    s.send(deal("L1", "2026-03-02 11:00", "closed_won"))
    assert s.stage() == "customer"


def test_closed_lost_moves_opportunity_to_recycled():
    s = Scenario().to("opportunity")
    s.send(deal("L1", "2026-03-02 11:00", "closed_lost"))
    assert s.stage() == "recycled"


@pytest.mark.parametrize("stage", ["new", "mql", "sql"])
def test_closed_lost_outside_opportunity_moves_nothing(stage):
    s = Scenario().to(stage)
    s.send(deal("L1", "2026-03-02 11:00", "closed_lost"))
    assert s.stage() == stage


@pytest.mark.parametrize("terminal", ["customer", "disqualified"])
def test_terminal_stages_absorb_every_later_event(terminal):
    s = Scenario().to(terminal)
    before = (s.path(), s.lead().owner_id, s.lead().score)
    s.send(
        form_fill("L1", "2026-03-03 10:00", "demo_request"),
        email("L1", "2026-03-03 10:01", "reply"),
        assign("L1", "2026-03-03 10:02", "rep-2"),
        touch("L1", "2026-03-03 10:03"),
        disposition("L1", "2026-03-03 10:04", "reject", reason=None),
        deal("L1", "2026-03-03 10:05", "closed_lost"),
    )
    assert (s.path(), s.lead().owner_id, s.lead().score) == before
    assert s.alerts == []
    assert s.lead().last_activity_at == s.processor.clock  # the activity is still recorded
    assert s.processor.tally.applied == s.processor.tally.read


def test_event_moving_no_stage_still_updates_activity_and_is_not_an_error():
    s = Scenario().to("customer")
    s.send(email("L1", "2026-03-05 10:00", "open"))
    assert s.lead().last_activity_at == s.transitions[-1].occurred_at + 3 * 86_400_000


def test_second_event_with_the_same_id_is_ignored():
    s = Scenario()
    s.send(form_fill("L1", "2026-03-02 10:00", "webinar", event_id="dup"))
    score = s.lead().score
    assert s.send(form_fill("L1", "2026-03-02 10:05", "webinar", event_id="dup")) == []
    assert s.lead().score == score
    assert (s.processor.tally.applied, s.processor.tally.duplicates) == (1, 1)


def test_lifecycle_record_carries_owner_score_and_time_in_previous_stage():
    s = Scenario()
    s.send(assign("L1", "2026-03-02 10:00", "rep-3", team="na"))
    s.send(form_fill("L1", "2026-03-02 10:30", "demo_request"))
    record = s.transitions[-1]
    assert (record.owner_id, record.team, record.score) == ("rep-3", "na", 10)
    assert record.time_in_previous_stage_ms == 30 * 60_000
    assert record.trigger_event_type == "form_fill"


def test_transition_ids_are_deterministic_and_distinct():
    a, b = Scenario(), Scenario()
    events = [form_fill("L1", "2026-03-02 10:00", "demo_request", event_id="x1"), touch("L1", "2026-03-02 10:10", event_id="x2")]
    a.send(*events)
    b.send(*events)
    ids_a = [r.transition_id for r in a.transitions]
    assert ids_a == [r.transition_id for r in b.transitions]
    assert len(set(ids_a)) == len(ids_a) == 3
