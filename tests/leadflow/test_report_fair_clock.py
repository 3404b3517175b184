"""The report under SPEC 9: late evidence and holds, from records the engine really emits.

Each history runs through the replay driver (``tests.lifecycle.scenario``) with the default policy
(UTC, Monday-Friday 09:00-17:00, first touch within 4 business hours, warning at 75%), so the alerts
the report reads are the ones ``leadflow replay`` writes. 2026-03-02 is a Monday.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from lifecycle.events import SalesDispositioned
from leadflow.report import Report, SlaClock, build_report, render_json, render_text
from leadflow.report_html import render_html
from leadflow.report_sources import load_sql
from sinks.sql import SqlSink
from tests.lifecycle.scenario import Scenario, assign, disposition, email, form_fill, t, touch

HOUR = 3_600_000
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("leadflow")


def report_of(scenario: Scenario) -> Report:
    scenario.records.extend(scenario.processor.finish())
    return build_report(scenario.transitions, scenario.alerts)


def first_touch(report: Report) -> tuple[int, int, int, int]:
    row = next(c for c in report.compliance_by_sla if c.group == "first_touch")
    return row.met, row.late, row.open, row.in_progress


def clock(report: Report, sla: str = "first_touch") -> SlaClock:
    return next(k for k in report.clock_by_sla if k.sla == sla)


def hold(lead: str, at: str, until: str | None = None, event_id: str | None = None) -> SalesDispositioned:
    return SalesDispositioned(event_id=event_id or f"hold-{lead}-{at}", lead_id=lead, occurred_at=t(at),
                              decision="hold", reason="customer travelling",
                              until=t(until) if until is not None else None)


def mql_at_ten(scenario: Scenario, lead: str = "L1") -> None:
    scenario.send(form_fill(lead, "2026-03-02 10:00", "demo_request"), assign(lead, "2026-03-02 10:00", "rep-1"))


# -- late evidence --------------------------------------------------------------------------------

def issue_11_history() -> Scenario:
    """The issue's repro: the 13:50 touch arrives after another lead's 14:30 event fired the breach."""
    s = Scenario()
    mql_at_ten(s)
    s.send(email("L2", "2026-03-02 14:30", "open"))
    s.send(touch("L1", "2026-03-02 13:50"))
    return s


def test_a_retracted_breach_counts_as_met_on_time_not_late() -> None:
    s = issue_11_history()
    assert [a.type for a in s.alerts] == ["sla_warning", "follow_up_overdue", "sla_resolved", "sla_retracted"]
    report = report_of(s)
    assert first_touch(report) == (1, 0, 0, 0)
    assert next(c for c in report.compliance_by_sla if c.group == "first_touch").rate == 1.0
    owner = next(c for c in report.compliance_by_owner if c.group == "rep-1")
    assert (owner.late, owner.open) == (0, 0)
    assert clock(report).retracted == 1


def test_a_touch_after_the_deadline_that_arrives_late_is_still_late() -> None:
    s = Scenario()
    mql_at_ten(s)
    s.send(email("L2", "2026-03-02 14:30", "open"))
    s.send(touch("L1", "2026-03-02 14:10"))  # after the 14:00 deadline: the breach was true
    assert [a.type for a in s.alerts].count("sla_retracted") == 0
    report = report_of(s)
    assert first_touch(report) == (0, 1, 0, 0)
    assert clock(report).retracted == 0


def test_retraction_is_counted_whatever_the_order_of_the_alerts() -> None:
    s = issue_11_history()
    report = report_of(s)
    # (lifecycle records of one millisecond keep their order: it is the report's tie-break)
    assert build_report(s.transitions, list(reversed(s.alerts))) == report


# -- holds ----------------------------------------------------------------------------------------

def test_time_on_hold_moves_the_deadline_and_is_not_counted_against_the_owner() -> None:
    s = Scenario()
    mql_at_ten(s)
    s.send(hold("L1", "2026-03-02 11:00"))
    s.send(disposition("L1", "2026-03-02 13:00", "resume"))
    s.send(touch("L1", "2026-03-02 15:30"))  # after 14:00, before the moved 16:00 deadline
    assert [a.type for a in s.alerts] == ["sla_held", "sla_resumed", "sla_warning", "sla_resolved"]
    assert s.alerts[2].due_at == t("2026-03-02 16:00")
    report = report_of(s)
    assert first_touch(report) == (1, 0, 0, 0)
    assert clock(report) == SlaClock("first_touch", retracted=0, holds=1, held_ms=2 * HOUR, on_hold=0)


def test_two_holds_add_up() -> None:
    s = Scenario()
    mql_at_ten(s)
    s.send(hold("L1", "2026-03-02 10:30"), disposition("L1", "2026-03-02 11:00", "resume"))
    s.send(hold("L1", "2026-03-02 12:00", until="2026-03-02 13:30"))  # ends by itself
    s.send(touch("L1", "2026-03-02 15:00"))
    report = report_of(s)
    assert [a.type for a in s.alerts].count("sla_resumed") == 2
    assert clock(report) == SlaClock("first_touch", 0, 1, HOUR // 2 + 3 * HOUR // 2, 0)
    assert first_touch(report) == (1, 0, 0, 0)


def test_a_hold_still_running_counts_until_the_data_ends() -> None:
    s = Scenario()
    mql_at_ten(s)
    s.send(hold("L1", "2026-03-02 11:00"))
    s.send(email("L2", "2026-03-02 15:00", "open"))  # the data ends at 15:00
    report = report_of(s)
    assert first_touch(report) == (0, 0, 0, 1)  # held: no breach at 14:00, still running
    assert clock(report) == SlaClock("first_touch", 0, 1, 4 * HOUR, 1)


def test_a_hold_ended_by_a_stage_change_counts_until_the_change() -> None:
    s = Scenario()
    mql_at_ten(s)
    s.send(hold("L1", "2026-03-02 11:00"))
    s.send(disposition("L1", "2026-03-02 12:00", "disqualify", reason="no budget"))
    s.send(email("L2", "2026-03-02 16:00", "open"))
    report = report_of(s)
    assert clock(report) == SlaClock("first_touch", 0, 1, HOUR, 0)


def test_a_hold_on_a_lead_with_no_running_sla_shows_nothing() -> None:
    s = Scenario()
    s.send(email("L1", "2026-03-02 10:00", "open"), hold("L1", "2026-03-02 10:30"))
    report = report_of(s)
    assert all(k == SlaClock(k.sla, 0, 0, 0, 0) for k in report.clock_by_sla)


# -- rendering ------------------------------------------------------------------------------------

def held_and_retracted() -> Scenario:
    """The issue's history, and a second lead held for 30 minutes."""
    s = issue_11_history()
    s.send(form_fill("L3", "2026-03-02 14:40", "demo_request"), assign("L3", "2026-03-02 14:40", "rep-2"))
    s.send(hold("L3", "2026-03-02 14:45"), disposition("L3", "2026-03-02 15:15", "resume"))
    return s


def test_json_text_and_html_show_retractions_and_time_on_hold() -> None:
    report = report_of(held_and_retracted())
    data = json.loads(render_json(report))
    assert data["clock_by_sla"][1] == {"sla": "first_touch", "retracted": 1, "holds": 1, "held_ms": 1_800_000,
                                       "on_hold": 0}
    console = Console(record=True, width=160)
    render_text(report, console)
    text = console.export_text()
    assert "Late evidence and holds by SLA" in text
    row = next(line for line in text.splitlines() if "first_touch" in line and "30m" in line)
    assert [cell.strip() for cell in row.split("│")[1:-1]] == ["first_touch", "1", "1", "30m", "0"]
    html = render_html(report)
    assert "<h2>Late evidence and holds</h2>" in html
    assert "<tr><td>first_touch</td><td>1</td><td>1</td><td>30m</td><td>0</td></tr>" in html


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_sql_sink_gives_back_retractions_and_time_on_hold(backend: str, tmp_path: Path,
                                                            request: pytest.FixtureRequest) -> None:
    s = held_and_retracted()
    report = report_of(s)
    url = f"sqlite:///{tmp_path / 'r.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    with SqlSink(url, batch_size=4) as sink:
        sink.add_all([*s.transitions, *s.alerts])
    lifecycle, alerts = load_sql(url)
    assert {a.alert_id: a for a in alerts} == {a.alert_id: a for a in s.alerts}
    assert build_report(lifecycle, alerts) == report
    assert clock(report) == SlaClock("first_touch", 1, 1, 1_800_000, 0)


# -- the command, as a user runs it ---------------------------------------------------------------

def leadflow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "leadflow"]
    return subprocess.run([*command, *args], capture_output=True, cwd=cwd, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})


ISSUE_11_EVENTS = """\
{"event_id":"e1","event_type":"form_fill","lead_id":"L1","occurred_at":"2026-03-02T10:00:00Z","form_type":"demo_request","form_id":"f1"}
{"event_id":"e2","event_type":"lead_assigned","lead_id":"L1","occurred_at":"2026-03-02T10:00:00Z","owner_id":"rep-1","team":"na"}
{"event_id":"e3","event_type":"email_engagement","lead_id":"L2","occurred_at":"2026-03-02T14:30:00Z","action":"open","campaign_id":"c1"}
{"event_id":"e4","event_type":"sales_touch","lead_id":"L1","occurred_at":"2026-03-02T13:50:00Z","rep_id":"rep-1","channel":"call","outcome":"connected"}
"""


def test_replay_then_report_counts_the_late_touch_as_met(tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_text(ISSUE_11_EVENTS)
    done = leadflow("replay", "events.jsonl", "--out", "out", "--no-show", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    alerts = [json.loads(line) for line in (tmp_path / "out" / "alerts.jsonl").read_text().splitlines()]
    retraction = next(a for a in alerts if a["type"] == "sla_retracted")
    assert (retraction["evidence_event_id"], retraction["reason"]) == ("e4", "late_event")

    done = leadflow("report", "out", "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    by_sla = {row["group"]: row for row in json.loads(done.stdout)["compliance_by_sla"]}
    assert (by_sla["first_touch"]["met"], by_sla["first_touch"]["late"], by_sla["first_touch"]["open"]) == (1, 0, 0)

    done = leadflow("report", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.decode().splitlines() if "first_touch" in x and "%" in x)
    assert [cell.strip() for cell in line.split("│")[1:-1]] == ["first_touch", "1", "0", "0", "0", "100.0%"]
