"""The policy file (SPEC section 7): defaults, overrides, and refusals that name file, line and key."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from lifecycle.errors import PolicyError
from lifecycle.policy import (
    DEFAULT_GRADES,
    DEFAULT_POINTS,
    CalendarPolicy,
    Duration,
    Grading,
    GradingRule,
    Policy,
    SlaPolicy,
    TeamPolicy,
)
from schemas.policy_file import load_policy, parse_policy

SPEC_EXAMPLE = """\
[scoring]
mql_threshold = 50
hand_raisers = ["demo_request", "contact_us", "pricing"]

[scoring.points]            # "<event_type>:<form_type or action>" = points
"form_fill:content_download" = 15
"form_fill:webinar" = 20
"form_fill:*" = 10          # any other form
"email_engagement:open" = 1
"email_engagement:click" = 5
"email_engagement:reply" = 15
"email_engagement:unsubscribe" = -20

[calendar]
timezone = "UTC"
workdays = ["mon", "tue", "wed", "thu", "fri"]
day_start = "09:00"
day_end = "17:00"
holidays = []               # ISO dates, e.g. "2026-12-25"

[sla.assignment]
within = "15m"
business = false

[sla.first_touch]
within = "4h"
business = true
warn_at = 0.75              # fraction of `within`; omit for no warning
escalate_after = "4h"       # after the breach, same clock; omit for no escalation

[sla.qualification]
within = "5d"
business = true

[sla.opportunity]
within = "10d"
business = true

[sla.nurture]
within = "7d"
business = false

[teams.emea]                # optional per-team overrides of [calendar] and [sla.*]
calendar = { timezone = "Europe/Berlin" }
sla.first_touch = { within = "2h" }
"""


def parse(text: str) -> Policy:
    return parse_policy(textwrap.dedent(text), "policy.toml")


def refusal(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        parse(text)
    return caught.value


# --- defaults and overrides ---------------------------------------------------------------------


def test_the_defaults_are_those_of_spec_section_7():
    policy = parse("")
    assert policy.scoring.mql_threshold == 50
    assert policy.scoring.hand_raisers == {"demo_request", "contact_us", "pricing"}
    assert dict(policy.scoring.points) == {
        "form_fill:content_download": 15,
        "form_fill:webinar": 20,
        "form_fill:*": 10,
        "email_engagement:open": 1,
        "email_engagement:click": 5,
        "email_engagement:reply": 15,
        "email_engagement:unsubscribe": -20,
    }
    assert policy.calendar == CalendarPolicy("UTC", (0, 1, 2, 3, 4), dt.time(9), dt.time(17), frozenset())
    assert dict(policy.slas) == {
        "assignment": SlaPolicy(Duration(15, "m"), business=False),
        "first_touch": SlaPolicy(Duration(4, "h"), True, warn_at=0.75, escalate_after=Duration(4, "h")),
        "qualification": SlaPolicy(Duration(5, "d"), business=True),
        "opportunity": SlaPolicy(Duration(10, "d"), business=True),
        "nurture": SlaPolicy(Duration(7, "d"), business=False),
    }
    assert policy.teams == {}
    assert policy == Policy(source="policy.toml")


def test_the_example_of_spec_section_7_parses_to_the_defaults_plus_its_team():
    policy = parse(SPEC_EXAMPLE)
    assert policy.scoring == Policy().scoring
    assert policy.calendar == Policy().calendar
    assert policy.slas == Policy().slas
    emea = policy.teams["emea"]
    assert emea.calendar == CalendarPolicy(timezone="Europe/Berlin")
    assert emea.slas["first_touch"] == SlaPolicy(
        Duration(2, "h"), business=True, warn_at=0.75, escalate_after=Duration(4, "h")
    )
    assert emea.slas["qualification"] == policy.slas["qualification"]


def test_a_partial_sla_section_overrides_only_the_keys_it_gives():
    policy = parse(
        """
        [sla.first_touch]
        within = "1.5h"
        """
    )
    assert policy.slas["first_touch"] == SlaPolicy(
        Duration(1.5, "h"), business=True, warn_at=0.75, escalate_after=Duration(4, "h")
    )
    assert policy.slas["nurture"] == Policy().slas["nurture"]


def test_false_turns_off_a_default_warning_or_escalation():
    policy = parse(
        """
        [sla.first_touch]
        warn_at = false
        escalate_after = false
        """
    )
    assert policy.slas["first_touch"] == SlaPolicy(Duration(4, "h"), business=True)


def test_a_team_calendar_overrides_the_top_level_calendar_key_by_key():
    policy = parse(
        """
        [calendar]
        timezone = "America/New_York"
        day_start = "08:00"
        holidays = ["2026-12-25", 2026-12-26]

        [teams.emea.calendar]
        timezone = "Europe/Berlin"
        workdays = ["mon", "tue", "wed", "thu"]
        """
    )
    assert policy.teams["emea"].calendar == CalendarPolicy(
        timezone="Europe/Berlin",
        workdays=(0, 1, 2, 3),
        day_start=dt.time(8),
        day_end=dt.time(17),
        holidays=frozenset({dt.date(2026, 12, 25), dt.date(2026, 12, 26)}),
    )


def test_a_team_sla_overrides_the_top_level_sla_key_by_key():
    policy = parse(
        """
        [sla.qualification]
        within = "3d"
        business = false

        [teams.apac]
        sla.qualification = { business = true }
        """
    )
    assert policy.teams["apac"].slas["qualification"] == SlaPolicy(Duration(3, "d"), business=True)
    assert policy.teams["apac"].calendar == policy.calendar


def test_points_merge_over_the_defaults():
    policy = parse(
        """
        [scoring.points]
        "form_fill:webinar" = 30
        "email_engagement:bounce" = -5
        """
    )
    assert policy.scoring.points == {
        **DEFAULT_POINTS,
        "form_fill:webinar": 30,
        "email_engagement:bounce": -5,
    }


def test_hand_raisers_replace_the_default_list():
    assert parse('[scoring]\nhand_raisers = ["trial"]').scoring.hand_raisers == {"trial"}


def test_an_unknown_team_works_by_the_top_level_policy_without_building_it_per_call():
    policy = parse(SPEC_EXAMPLE)
    assert policy.for_team("nobody") is policy.for_team(None)
    assert policy.for_team(None) == TeamPolicy(policy.calendar, policy.slas)
    assert policy.for_team("emea") is policy.teams["emea"]


def test_load_policy_reads_a_file_and_records_its_path(tmp_path):
    path = tmp_path / "policy.toml"
    path.write_text(SPEC_EXAMPLE, encoding="utf-8")
    policy = load_policy(path)
    assert policy.source == str(path)
    assert policy.teams["emea"].calendar.timezone == "Europe/Berlin"


# --- refusals: file, line and dotted key -----------------------------------------------------------


def assert_refused(error: PolicyError, line: int, key: str | None, problem: str) -> None:
    assert (error.file, error.line, error.key) == ("policy.toml", line, key)
    assert problem in error.problem
    prefix = f"policy.toml:{line}: {key}: " if key else f"policy.toml:{line}: "
    assert str(error).startswith(prefix)


def test_an_unknown_key_names_its_line_and_dotted_path():
    error = refusal(
        """\
        [sla.first_touch]
        within = "4h"
        withn = "4h"
        """
    )
    assert_refused(error, 3, "sla.first_touch.withn", "unknown key 'withn'")


def test_an_unknown_top_level_table_is_refused():
    error = refusal('# policy\n\n[scorring]\nmql_threshold = 40\n')
    assert_refused(error, 3, "scorring", "did you mean 'scoring'?")


def test_an_unknown_sla_is_refused_with_a_suggestion():
    error = refusal(
        """\
        # our SLAs
        [sla.frist_touch]
        within = "2h"
        """
    )
    assert_refused(error, 2, "sla.frist_touch", "unknown SLA 'frist_touch'; did you mean 'first_touch'?")


def test_an_unknown_key_in_an_inline_table_names_the_line_it_is_on():
    error = refusal(
        """\
        [teams.emea]
        calendar = { timezone = "Europe/Berlin" }
        sla.first_touch = { within = "2h", warn_a = 0.5 }
        """
    )
    assert_refused(error, 3, "teams.emea.sla.first_touch.warn_a", "unknown key 'warn_a'")


def test_an_unknown_key_of_a_team_is_refused():
    error = refusal('[teams.emea]\nsla.first_touch = { within = "2h" }\ncalender = { timezone = "UTC" }\n')
    assert_refused(error, 3, "teams.emea.calender", "did you mean 'calendar'?")


def test_an_unknown_time_zone_in_a_team_calendar_is_refused():
    error = refusal(
        """\
        [teams.emea]

        calendar = { workdays = ["mon"], timezone = "Europe/Berln" }
        """
    )
    assert_refused(error, 3, "teams.emea.calendar.timezone", "unknown time zone 'Europe/Berln'")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('"4 hours"', "is not a duration"),
        ('"4"', "is not a duration"),
        ('"4w"', "is not a duration"),
        ("4", "is not a duration"),
        ('"0h"', "must be greater than 0"),
        ('"-1h"', "is not a duration"),
    ],
)
def test_a_bad_duration_is_refused(value, problem):
    error = refusal(f'[sla.qualification]\nbusiness = true\nwithin = {value}\n')
    assert_refused(error, 3, "sla.qualification.within", problem)


@pytest.mark.parametrize("value", ["0", "1", "1.5", "true", '"0.5"'])
def test_warn_at_must_be_a_fraction_between_0_and_1(value):
    error = refusal(f"[sla.first_touch]\nwarn_at = {value}\n")
    assert_refused(error, 2, "sla.first_touch.warn_at", "between 0 and 1")


def test_business_must_be_a_boolean():
    error = refusal('[sla.nurture]\nbusiness = "yes"\n')
    assert_refused(error, 2, "sla.nurture.business", "must be true or false")


def test_a_bad_weekday_is_refused():
    error = refusal('[calendar]\nworkdays = ["mon", "tues"]\n')
    assert_refused(error, 2, "calendar.workdays", "unknown weekday 'tues'")


def test_a_bad_holiday_date_after_a_multiline_array_names_its_own_line():
    error = refusal(
        """\
        [calendar]
        workdays = [
          "mon",
          "tue",
        ]
        holidays = ["2026-02-30"]
        """
    )
    assert_refused(error, 6, "calendar.holidays", "'2026-02-30' is not an ISO date")


@pytest.mark.parametrize("value", ['"9:00"', '"25:00"', '"09:60"', "900"])
def test_a_bad_time_of_day_is_refused(value):
    error = refusal(f"[calendar]\nday_start = {value}\n")
    assert_refused(error, 2, "calendar.day_start", 'is not a local time "HH:MM"')


def test_a_day_that_ends_before_it_starts_is_refused():
    error = refusal('[calendar]\nday_start = "18:00"\n')
    assert_refused(error, 2, "calendar.day_start", "must be before day_end")


def test_a_wrong_type_is_refused():
    error = refusal('[scoring]\n\nmql_threshold = "50"\n')
    assert_refused(error, 3, "scoring.mql_threshold", "must be an integer, not a string")


def test_a_section_that_is_not_a_table_is_refused():
    error = refusal('calendar = "UTC"\n')
    assert_refused(error, 1, "calendar", "must be a table")


def test_points_for_an_event_type_that_earns_none_are_refused():
    error = refusal('[scoring.points]\n"form_fill:webinar" = 5\n"sales_touch:call" = 5\n')
    assert_refused(error, 3, 'scoring.points."sales_touch:call"', "unknown event type 'sales_touch'")


def test_points_for_an_unknown_email_action_are_refused():
    error = refusal('[scoring.points]\n"email_engagement:opened" = 2\n')
    assert_refused(error, 2, 'scoring.points."email_engagement:opened"', "did you mean 'open'?")


def test_points_without_a_qualifier_are_refused():
    error = refusal("[scoring.points]\nform_fill = 2\n")
    assert_refused(error, 2, "scoring.points.form_fill", '"<event_type>:<form_type or action>"')


def test_a_toml_syntax_error_names_its_line():
    error = refusal('[sla.first_touch]\nwithin = "4h"\nbusiness = yes\n')
    assert_refused(error, 3, None, "invalid TOML")


def test_a_missing_file_is_refused_without_a_line(tmp_path):
    path = tmp_path / "nowhere.toml"
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert (caught.value.file, caught.value.line) == (str(path), None)
    assert str(caught.value).startswith(f"{path}: cannot read: ")


def test_a_file_that_is_not_utf8_is_refused_naming_the_line(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('[calendar]\n# Büro\ntimezone = "UTC"\n'.encode("latin-1"))
    with pytest.raises(PolicyError, match="not UTF-8") as caught:
        load_policy(path)
    assert caught.value.line == 2


# --- deadlines stay in the range of time; nesting stays bounded -----------------------------------

def test_an_sla_whose_deadline_can_run_for_millennia_is_refused_naming_its_key() -> None:
    text = textwrap.dedent("""\
        [calendar]
        workdays = ["mon"]
        day_start = "09:00"
        day_end = "09:01"

        [sla.first_touch]
        within = "87600h"
        business = true
        """)
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "p.toml")
    assert (caught.value.line, caught.value.key) == (7, "sla.first_touch.within")
    assert "3650 days" in caught.value.problem


def test_a_team_calendar_that_stretches_an_inherited_sla_is_refused() -> None:
    text = textwrap.dedent("""\
        [sla.qualification]
        within = "1000d"
        business = true

        [teams.night]
        calendar = { workdays = ["sun"], day_start = "00:00", day_end = "01:00" }
        """)
    parse_policy(text.split("[teams")[0])       # 1000 working days of 8 h, Mon-Fri: 4 years, fine
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "p.toml")
    assert caught.value.key == "teams.night.sla.qualification.within" and caught.value.line == 5


def test_long_but_reachable_deadlines_are_accepted() -> None:
    policy = parse_policy('[sla.nurture]\nwithin = "3650d"\nbusiness = false\n')
    assert policy.slas["nurture"].within == Duration(3650, "d")


@pytest.mark.parametrize("nested", ["x = " + "[" * 100_000 + "]" * 100_000,
                                    "x = " + "{a = " * 100_000 + "1" + "}" * 100_000])
def test_a_policy_nested_100k_deep_is_refused_with_file_and_line(nested: str) -> None:
    text = '[sla.first_touch]\nwithin = "4h"\n' + nested + "\n"
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "deep.toml")
    assert caught.value.file == "deep.toml" and caught.value.line == 3
    assert "nested more than" in str(caught.value)
# --- [grading] (SPEC section 10) -------------------------------------------------------------------

GRADING_EXAMPLE = """\
[grading]
minimum_for_mql = "C"          # optional
[grading.grades]
A = 60
B = 40
C = 20
[[grading.rules]]
field = "employees"
at_least = 1000
points = 30
[[grading.rules]]
field = "title"
matches = "(?i)\\\\b(vp|chief|head|director)\\\\b"
points = 25
[[grading.rules]]
field = "country"
in = ["US", "DE", "GB"]
points = 10
"""


def test_no_grading_section_means_no_rules_and_no_minimum():
    grading = parse("").grading
    assert grading == Grading() and grading.rules == () and grading.minimum_for_mql is None


def test_the_grading_example_of_spec_section_10_parses():
    grading = parse(GRADING_EXAMPLE).grading
    assert grading.minimum_for_mql == "C"
    assert dict(grading.grades) == {"A": 60, "B": 40, "C": 20}
    assert grading.rules == (
        GradingRule("employees", "at_least", 1000, 30),
        GradingRule("title", "matches", r"(?i)\b(vp|chief|head|director)\b", 25),
        GradingRule("country", "in", ("US", "DE", "GB"), 10),
    )


def test_every_condition_and_inline_rules_parse():
    grading = parse(
        """\
        [grading]
        rules = [
          { field = "industry", equals = "software", points = 5 },
          { field = "employees", below = 10, points = -20 },
          { field = "employees", equals = 50, points = 1 },
        ]
        """
    ).grading
    assert [(r.condition, r.operand, r.points) for r in grading.rules] == [
        ("equals", "software", 5), ("below", 10, -20), ("equals", 50, 1)]
    assert dict(grading.grades) == dict(DEFAULT_GRADES)  # rules without grades: the SPEC example's


def test_the_example_grading_policy_file_loads():
    policy = load_policy(Path(__file__).resolve().parents[2] / "examples" / "policy-grading.toml")
    assert policy.grading.rules and policy.grading.minimum_for_mql is not None


@pytest.mark.parametrize("rule, line, key, problem", [
    ('field = "title"\nmatches = "(?i)(vp"\npoints = 5', 3, "grading.rules[2].matches", "bad regular expression"),
    ('field = "title"\npoints = 5', 1, "grading.rules[2]", "has no condition"),  # the rule's [[header]]
    ('field = "title"\nequals = "VP"\nmatches = "VP"\npoints = 5', 4, "grading.rules[2].matches",
     "has 2 conditions (equals, matches)"),
    ('field = "title"\nmatch = "VP"\npoints = 5', 3, "grading.rules[2].match", "unknown key 'match'; did you mean 'matches'?"),
    ('equals = "VP"\npoints = 5', 1, "grading.rules[2]", 'needs field = "<name>"'),
    ('field = "title"\nequals = "VP"', 1, "grading.rules[2]", "needs points"),
    ('field = "title"\nequals = true\npoints = 5', 3, "grading.rules[2].equals", "must be a string or a number"),
    ('field = "n"\nat_least = "1000"\npoints = 5', 3, "grading.rules[2].at_least", "must be a number"),
    ('field = "n"\nin = []\npoints = 5', 3, "grading.rules[2].in", "non-empty list"),
    ('field = "n"\nbelow = 3\npoints = 2.5', 4, "grading.rules[2].points", "must be an integer"),
])
def test_a_bad_rule_is_refused_naming_file_line_and_key(rule, line, key, problem):
    """``line`` counts from the second rule's ``[[grading.rules]]`` header (line 6)."""
    text = f'[[grading.rules]]\nfield = "employees"\nat_least = 1000\npoints = 30\n\n[[grading.rules]]\n{rule}\n'
    error = refusal(text)
    assert_refused(error, line + 5, key, problem)


def test_bad_grades_and_minimum_are_refused():
    rule = '[[grading.rules]]\nfield = "x"\nequals = "y"\npoints = 1\n'
    assert_refused(refusal(f'[grading]\nminimum_for_mql = "E"\n{rule}'), 2, "grading.minimum_for_mql",
                   "unknown grade 'E'")
    assert_refused(refusal('[grading]\nminimum_for_mql = "C"\n'), 2, "grading.minimum_for_mql",
                   "needs at least one [[grading.rules]]")
    assert_refused(refusal(f'[grading.grades]\nA = 60\nB = 60\n{rule}'), 3, "grading.grades.B",
                   "like grade 'A'")
    assert_refused(refusal(f'[grading.grades]\nA = 60\nD = 0\n{rule}'), 3, "grading.grades.D",
                   "the grade below the lowest")
    assert_refused(refusal('[grading]\nminimum = "C"\n'), 2, "grading.minimum", "did you mean 'minimum_for_mql'?")
    assert_refused(refusal('[grading]\nrules = "x"\n'), 2, "grading.rules", "array of tables")


def test_the_lowest_grade_is_a_valid_minimum():
    policy = parse('[grading]\nminimum_for_mql = "D"\n[[grading.rules]]\nfield = "x"\nequals = "y"\npoints = 1\n')
    assert policy.grading.minimum_for_mql == "D"
