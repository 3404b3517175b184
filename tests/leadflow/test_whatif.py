"""``leadflow.whatif`` beyond the CLI: two processes, the comparison's edges, breaches in words."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from leadflow.whatif import Run, compare, lead_outcomes, run, span
from lifecycle.policy import Policy
from schemas.policy_file import parse_policy
from tests.cli.test_whatif_cli import EVENTS, FOUR_HOURS, TWO_HOURS
from tests.sinks.sample_records import HOUR, T0, make_alert, make_transition


def test_both_replays_run_in_two_processes_of_their_own(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(EVENTS)
    current, candidate = run([str(events)], (FOUR_HOURS, "four.toml"), (TWO_HOURS, "two.toml"), None)
    assert len({current.pid, candidate.pid, os.getpid()}) == 3
    assert (current.source, candidate.source) == ("four.toml", "two.toml")
    assert current.version == parse_policy(FOUR_HOURS).policy_version
    assert current.tally.read == candidate.tally.read == 14


def test_the_built_in_policy_is_the_default_side(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(EVENTS)
    current, _ = run([str(events)], (None, None), (TWO_HOURS, "two.toml"), None)
    assert current.version == Policy().policy_version


def test_at_most_twenty_changed_leads_are_listed_the_total_is_given(tmp_path: Path) -> None:
    lines = []
    for i in range(25):   # each touched 3 h after its MQL: met under 4 h, breached under 2 h
        lead = f"L{i:02d}"
        lines.append({"event_id": f"{lead}a", "event_type": "lead_assigned", "lead_id": lead,
                      "occurred_at": "2026-03-02T10:00:00Z", "owner_id": "rep"})
        lines.append({"event_id": f"{lead}f", "event_type": "form_fill", "lead_id": lead,
                      "occurred_at": "2026-03-02T10:00:00Z", "form_type": "pricing"})
        lines.append({"event_id": f"{lead}t", "event_type": "sales_touch", "lead_id": lead,
                      "occurred_at": "2026-03-02T13:00:00Z", "rep_id": "rep", "channel": "call"})
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(line) + "\n" for line in lines))
    current, candidate = run([str(events)], (FOUR_HOURS, "four.toml"), (TWO_HOURS, "two.toml"), None)
    diff = compare(current, candidate, (parse_policy(FOUR_HOURS), parse_policy(TWO_HOURS)))["diff"]
    assert diff["leads_changed_total"] == 25
    assert [lead["lead_id"] for lead in diff["leads_changed"]] == [f"L{i:02d}" for i in range(20)]


class _WithChannels:
    """A report as SPEC 10 shapes it: the same document, and ``by_channel``."""

    def __init__(self, report: Any, channels: list[dict[str, Any]]) -> None:
        self.report, self.channels = report, channels

    def as_dict(self) -> dict[str, Any]:
        return {**self.report.as_dict(), "by_channel": self.channels}


def test_by_channel_is_compared_when_both_reports_have_it_and_left_out_otherwise(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(EVENTS)
    current, candidate = run([str(events)], (FOUR_HOURS, "four.toml"), (TWO_HOURS, "two.toml"), None)
    policies = (parse_policy(FOUR_HOURS), parse_policy(TWO_HOURS))

    class _WithoutChannels:
        """A report from before SPEC 10: no ``by_channel``."""

        def __init__(self, report: Any) -> None:
            self.report = report

        def as_dict(self) -> dict[str, Any]:
            return {k: v for k, v in self.report.as_dict().items() if k != "by_channel"}

    older = Run(current.source, current.version, _WithoutChannels(current.report), current.leads,  # type: ignore[arg-type]
                current.tally, current.pid)
    assert "by_channel" not in compare(older, candidate, policies)["diff"]
    assert "by_channel" in compare(current, candidate, policies)["diff"]

    def with_channels(r: Run, channels: list[dict[str, Any]]) -> Run:
        return Run(r.source, r.version, _WithChannels(r.report, channels), r.leads, r.tally, r.pid)  # type: ignore[arg-type]

    a = with_channels(current, [{"group": "paid", "mqls": 10, "sals": 5, "sal_rate": 0.5}])
    b = with_channels(candidate, [{"group": "paid", "mqls": 12, "sals": 9, "sal_rate": 0.75},
                                  {"group": "email", "mqls": 2, "sals": 0, "sal_rate": 0.0}])
    channels = compare(a, b, policies)["diff"]["by_channel"]
    assert channels == [
        {"group": "paid", "mqls": {"current": 10, "candidate": 12, "difference": 2},
         "sals": {"current": 5, "candidate": 9, "difference": 4},
         "sal_rate": {"current": 0.5, "candidate": 0.75, "difference": 0.25}},
        {"group": "email", "mqls": {"current": 0, "candidate": 2, "difference": 2},
         "sals": {"current": 0, "candidate": 0, "difference": 0},
         "sal_rate": {"current": None, "candidate": 0.0, "difference": None}},
    ]


def test_a_retracted_breach_is_no_breach_and_an_unanswered_one_says_so() -> None:
    mql = make_transition("L1", "new", "mql", at=T0, owner_id="rep-1")
    breach = make_alert("L1", started_at=T0, due_at=T0 + 4 * HOUR, alert_id="b1")
    retraction = make_alert("L1", type_="sla_retracted", resolves="b1", alert_id="r1")
    assert lead_outcomes([mql], [breach, retraction])["L1"].breaches == ()
    (kept,) = lead_outcomes([mql], [breach])["L1"].breaches
    assert (kept.sla, kept.ended_at, kept.ended_by) == ("first_touch", None, None)


def test_spans_read_as_the_two_largest_units() -> None:
    assert [span(ms) for ms in (0, 45_000, 9_000_000, 10_800_000, 93_784_000)] == \
        ["0 s", "45 s", "2 h 30 m", "3 h", "1 d 2 h"]


def test_a_business_time_breach_says_how_much_of_the_wait_was_working_time() -> None:
    from leadflow.whatif import Breach, LeadOutcome, explain_breach
    from schemas.wire import parse_time

    friday_4pm, monday_1030 = parse_time("2026-03-06T16:00:00Z"), parse_time("2026-03-09T10:30:00Z")
    due = parse_time("2026-03-09T10:00:00Z")                 # 2 h of business time: 1 h Friday, 1 h Monday
    outcome = LeadOutcome("sal", (("new", 0, "form_fill", 0), ("mql", 0, "form_fill", 60)), ())
    breach = Breach("first_touch", friday_4pm, due, None, monday_1030, "sales_touch")
    two_hours = parse_policy('[sla.first_touch]\nwithin = "2h"\n')
    assert explain_breach(breach, outcome, two_hours, "candidate") == (
        "first_touch breach at 2026-03-09 10:00 UTC under the candidate only: touch came 2 d 18 h after "
        "assignment, 2 h 30 m of it business time (limit 2h of business time)")
