"""SPEC section 10, the pure part: channel and campaign of an event, fields merge, fit points, grades."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from lifecycle.grading import MAX_LEAD_FIELDS, Grader, campaign_of, channel_of, merge_fields
from lifecycle.policy import LOWEST_GRADE, Grading, GradingRule
from tests.lifecycle.scenario import email, form_fill, touch

SPEC_RULES = (
    GradingRule("employees", "at_least", 1000, 30),
    GradingRule("title", "matches", r"(?i)\b(vp|chief|head|director)\b", 25),
    GradingRule("country", "in", ("US", "DE", "GB"), 10),
)
SPEC_GRADING = Grading(SPEC_RULES, {"A": 60, "B": 40, "C": 20}, "C")


# -- channel and campaign -------------------------------------------------------------------------

@pytest.mark.parametrize("event, channel, campaign", [
    (form_fill("L1", "2026-03-02 10:00", form_id="f7", utm_medium="cpc", utm_campaign="spring"), "cpc", "spring"),
    (form_fill("L1", "2026-03-02 10:00", form_id="f7", utm_source="google"), "form", "f7"),
    (form_fill("L1", "2026-03-02 10:00"), "form", None),
    (form_fill("L1", "2026-03-02 10:00", form_id="f7", utm_medium="", utm_campaign=""), "form", "f7"),
    (email("L1", "2026-03-02 10:00", campaign_id="c3"), "email", "c3"),
    (email("L1", "2026-03-02 10:00"), "email", None),
    (touch("L1", "2026-03-02 10:00"), None, None),
])
def test_channel_and_campaign_of_an_event(event, channel, campaign):
    assert (channel_of(event), campaign_of(event)) == (channel, campaign)


# -- fields ---------------------------------------------------------------------------------------

def test_fields_merge_later_values_win_and_names_keep_the_order_they_first_came_in():
    held = merge_fields((), (("title", "Intern"), ("country", "US")))
    assert merge_fields(held, (("title", "VP Sales"), ("employees", 5000))) == (
        ("title", "VP Sales"), ("country", "US"), ("employees", 5000))


def test_a_lead_keeps_at_most_max_lead_fields_names_and_still_updates_those_it_holds():
    held = merge_fields((), tuple((f"f{i:03d}", i) for i in range(MAX_LEAD_FIELDS)))
    merged = merge_fields(held, (("extra", 1), ("f000", "new")))
    assert len(merged) == MAX_LEAD_FIELDS
    assert dict(merged)["f000"] == "new" and "extra" not in dict(merged)


names = st.sampled_from(["a", "b", "c", "d"])
values = st.one_of(st.integers(-5, 5), st.text(max_size=3))
field_sets = st.dictionaries(names, values, max_size=4).map(lambda d: tuple(d.items()))


@settings(max_examples=200)
@given(st.lists(field_sets, max_size=6))
def test_merging_event_after_event_is_a_dict_update_in_order(events):
    held: tuple = ()
    expected: dict = {}
    for fields in events:
        held = merge_fields(held, fields)
        expected.update(fields)
    assert held == tuple(expected.items())


# -- fit points and grades ------------------------------------------------------------------------

def test_fit_points_of_the_spec_example():
    grader = Grader(SPEC_GRADING)
    assert grader.fit_points((("employees", 5000), ("title", "VP Sales"), ("country", "DE"))) == 65
    assert grader.fit_points((("employees", 999), ("title", "Head of Growth"))) == 25
    assert grader.fit_points((("title", "vice president"),)) == 0  # the regex wants a word "vp"
    assert grader.fit_points(()) == 0


@pytest.mark.parametrize("rule, value, holds", [
    (GradingRule("x", "equals", "software", 1), "software", True),
    (GradingRule("x", "equals", "software", 1), "Software", False),  # exact; use matches for case
    (GradingRule("x", "equals", 50, 1), 50, True),
    (GradingRule("x", "equals", 50, 1), "50", True),  # a number reads a numeric string
    (GradingRule("x", "equals", 50, 1), 50.0, True),
    (GradingRule("x", "equals", "50", 1), 50, False),  # a string compares with strings only
    (GradingRule("x", "in", ("US", "DE"), 1), "DE", True),
    (GradingRule("x", "in", ("US", "DE"), 1), "FR", False),
    (GradingRule("x", "in", (10, 20), 1), "20", True),
    (GradingRule("x", "at_least", 1000, 1), 1000, True),
    (GradingRule("x", "at_least", 1000, 1), " 1200 ", True),
    (GradingRule("x", "at_least", 1000, 1), 999.5, False),
    (GradingRule("x", "at_least", 1000, 1), "lots", False),
    (GradingRule("x", "below", 10, 1), 9, True),
    (GradingRule("x", "below", 10, 1), 10, False),
    (GradingRule("x", "below", 10, 1), "n/a", False),
    (GradingRule("x", "matches", r"(?i)\bvp\b", 1), "SVP, VP Sales", True),
    (GradingRule("x", "matches", r"^\d{4}$", 1), 2026, True),  # a number is searched as its text
    (GradingRule("x", "matches", r"(?i)\bvp\b", 1), "MVP", False),
])
def test_each_condition(rule, value, holds):
    assert Grader(Grading((rule,))).fit_points((("x", value),)) == (1 if holds else 0)


def test_a_rule_on_a_field_the_lead_lacks_gives_nothing():
    assert Grader(Grading((GradingRule("x", "below", 10, 5),))).fit_points((("y", 1),)) == 0


def test_grades_by_threshold_and_below_the_lowest_is_d():
    grader = Grader(SPEC_GRADING)
    assert [grader.grade(p) for p in (100, 60, 59, 40, 39, 20, 19, 0, -30)] == [
        "A", "A", "B", "B", "C", "C", LOWEST_GRADE, LOWEST_GRADE, LOWEST_GRADE]


def test_no_rules_no_grade():
    grader = Grader(Grading())
    assert not grader.active and grader.grade(100) is None and grader.allows_mql(None)


def test_minimum_for_mql():
    grader = Grader(SPEC_GRADING)
    assert [grader.allows_mql(g) for g in ("A", "B", "C", "D")] == [True, True, True, False]
    assert all(Grader(Grading(SPEC_RULES)).allows_mql(g) for g in ("A", "D"))  # no minimum


ladders = st.dictionaries(st.sampled_from("ABCEFG"), st.integers(-50, 100), min_size=1, max_size=5).filter(
    lambda d: len(set(d.values())) == len(d))


@settings(max_examples=200)
@given(ladders, st.integers(-200, 200), st.integers(-200, 200))
def test_grade_is_monotone_in_fit_points(grades, p, q):
    grader = Grader(Grading(SPEC_RULES, grades))
    low, high = sorted((p, q))
    assert grader.rank(grader.grade(high)) <= grader.rank(grader.grade(low))


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from(["employees", "title", "country"]), st.integers(-5, 50)), max_size=3),
       st.dictionaries(st.sampled_from(["employees", "title", "country"]),
                       st.one_of(st.integers(0, 5000), st.sampled_from(["VP", "US", "DE", "intern"]))))
def test_fit_points_are_the_sum_over_the_rules_that_hold(rules, fields):
    """A rule's points count when, and only when, that rule alone would give them."""
    graded = tuple(GradingRule(field, "at_least", threshold, 7) for field, threshold in rules)
    held = tuple(fields.items())
    total = Grader(Grading(graded)).fit_points(held)
    assert total == sum(Grader(Grading((rule,))).fit_points(held) for rule in graded)

