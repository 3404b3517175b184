"""``policy_version`` (SPEC 11): the same effective rules give the same version, whatever the file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lifecycle.policy import Policy, canonical_form
from schemas.policy_file import parse_policy
from tests.schemas.test_policy_file import SPEC_EXAMPLE

ROOT = Path(__file__).resolve().parents[2]

#: The same rules as examples/policy.toml, written differently: other order, other comments,
#: dotted keys instead of tables, inline tables instead of sections, defaults spelled out,
#: "240m" for "4h", weekdays in another order and case.
EXAMPLE_REWRITTEN = """\
# Rewritten by hand: nothing here changes a rule.
teams.apac.calendar.timezone = "Asia/Singapore"

[teams.emea]
sla = { first_touch = { within = "120m" } }
calendar.holidays = ["2026-05-01"]
calendar.timezone = "Europe/Berlin"

[sla]
first_touch = { escalate_after = "4h", warn_at = 0.75, business = true, within = "240m" }
nurture = { within = "7d" }     # the default, spelled out

[calendar]
holidays = ["2026-07-03", "2026-05-25"]
workdays = ["FRI", "thu", "wed", "tue", "mon"]
timezone = "America/New_York"

[scoring]
points = { "email_engagement:reply" = 20, "form_fill:webinar" = 25, "form_fill:*" = 10 }
hand_raisers = ["pricing", "demo_request", "contact_us"]
"""


def version(text: str, file: str = "policy.toml") -> str:
    return parse_policy(text, file).policy_version


def test_a_version_is_twelve_hex_digits_of_the_canonical_forms_sha256() -> None:
    import hashlib

    policy = Policy()
    assert re.fullmatch(r"[0-9a-f]{12}", policy.policy_version)
    assert policy.policy_version == hashlib.sha256(canonical_form(policy).encode()).hexdigest()[:12]


def test_layout_comments_key_order_and_spelled_out_defaults_do_not_change_the_version() -> None:
    example = (ROOT / "examples" / "policy.toml").read_text()
    assert version(EXAMPLE_REWRITTEN) == version(example)
    defaults_spelled_out = SPEC_EXAMPLE[: SPEC_EXAMPLE.index("[teams.emea]")]  # SPEC 7's defaults
    assert version(defaults_spelled_out) == version("") == Policy().policy_version


def test_the_file_name_is_not_part_of_the_version() -> None:
    text = '[sla.first_touch]\nwithin = "2h"\n'
    first, second = parse_policy(text, "a/policy.toml"), parse_policy(text, "/etc/other.toml")
    assert first.source != second.source
    assert first.policy_version == second.policy_version


def test_a_team_that_only_restates_the_top_level_rules_changes_nothing() -> None:
    plain = '[sla.first_touch]\nwithin = "2h"\n'
    restated = plain + '[teams.na]\ncalendar = { timezone = "UTC" }\nsla.first_touch = { within = "2h" }\n'
    assert version(restated) == version(plain)
    assert version(plain + '[teams.na]\nsla.first_touch = { within = "3h" }\n') != version(plain)


@pytest.mark.parametrize("change", [
    '[scoring]\nmql_threshold = 49\n',
    '[scoring]\nhand_raisers = ["demo_request"]\n',
    '[scoring.points]\n"form_fill:webinar" = 21\n',
    '[scoring.points]\n"form_fill:ebook" = 10\n',     # same points as "*", but a rule of its own
    '[calendar]\nholidays = ["2026-12-25"]\n',
    '[calendar]\nday_end = "17:30"\n',
    '[calendar]\ntimezone = "Europe/Berlin"\n',
    '[sla.first_touch]\nwithin = "3h"\n',
    '[sla.first_touch]\nbusiness = false\n',
    '[sla.first_touch]\nwarn_at = false\n',
    '[sla.first_touch]\nescalate_after = false\n',
    '[sla.qualification]\nwithin = "40h"\n',       # 40 working hours, not 5 business days
    '[lateness]\ngrace = "5m"\n',
    '[lateness]\nreorder = "1m"\n',
    '[teams.emea]\nsla.first_touch = { within = "2h" }\n',
    '[teams.emea]\nlateness = { grace = "1m" }\n',
])
def test_every_rule_change_gives_another_version(change: str) -> None:
    assert version(change) != Policy().policy_version


def test_the_version_is_the_same_in_every_process() -> None:
    """Sets (hand-raisers, holidays) are sorted: string hashing, random per process, never shows."""
    code = ("from pathlib import Path; from schemas.policy_file import parse_policy; "
            "print(parse_policy(Path('examples/policy.toml').read_text()).policy_version)")
    seen = set()
    for seed in ("1", "2", "3"):
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                              env=dict(os.environ, PYTHONHASHSEED=seed), timeout=60, check=True)
        seen.add(done.stdout.strip())
    assert seen == {version((ROOT / "examples" / "policy.toml").read_text())}


def test_the_canonical_form_is_json_with_durations_in_milliseconds_and_no_source() -> None:
    form = json.loads(canonical_form(parse_policy('[sla.first_touch]\nwithin = "90m"\n', "x.toml")))
    assert form["slas"]["first_touch"]["within"] == 90 * 60_000
    assert form["slas"]["qualification"]["within"] == {"business_days": 5}
    assert "source" not in form and "default_team" not in form and "policy_version" not in form
