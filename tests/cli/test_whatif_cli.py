"""``leadflow whatif`` as a user runs it, on a small crafted day whose numbers are checked by hand.

Monday 2026-03-02, UTC. first_touch is 4 h of calendar time under the current policy and 2 h under
the candidate (no warning, no escalation). Five leads, each MQL with an owner:

| lead | team/owner | first_touch starts        | ended by                 | 4 h       | 2 h       |
|------|------------|---------------------------|--------------------------|-----------|-----------|
| A    | na/ann     | 10:00 (MQL)               | touch 11:00 (1 h)        | met       | met       |
| B    | na/bob     | 10:05 (assigned after MQL)| touch 12:35 (2 h 30 m)   | met       | late      |
| C    | emea/ann   | 10:10 (MQL)               | touch 15:10 (5 h)        | late      | late      |
| D    | emea/bob   | 10:20 (MQL)               | nothing by 18:00         | open      | open      |
| E    | na/ann     | 10:30 (MQL)               | accept 13:30 (3 h)       | met       | late      |

B entered MQL unassigned at 10:00: its assignment SLA (15 m) is met at 10:05 under both.
"""

from __future__ import annotations

import json
from pathlib import Path

from schemas.policy_file import parse_policy
from tests.cli.test_replay_cli import ROOT, leadflow

EVENTS = b"""\
{"event_id":"a1","event_type":"lead_assigned","lead_id":"A","occurred_at":"2026-03-02T10:00:00Z","owner_id":"ann","team":"na"}
{"event_id":"a2","event_type":"form_fill","lead_id":"A","occurred_at":"2026-03-02T10:00:00Z","form_type":"demo_request"}
{"event_id":"b1","event_type":"form_fill","lead_id":"B","occurred_at":"2026-03-02T10:00:00Z","form_type":"demo_request"}
{"event_id":"b2","event_type":"lead_assigned","lead_id":"B","occurred_at":"2026-03-02T10:05:00Z","owner_id":"bob","team":"na"}
{"event_id":"c1","event_type":"lead_assigned","lead_id":"C","occurred_at":"2026-03-02T10:10:00Z","owner_id":"ann","team":"emea"}
{"event_id":"c2","event_type":"form_fill","lead_id":"C","occurred_at":"2026-03-02T10:10:00Z","form_type":"pricing"}
{"event_id":"d1","event_type":"lead_assigned","lead_id":"D","occurred_at":"2026-03-02T10:20:00Z","owner_id":"bob","team":"emea"}
{"event_id":"d2","event_type":"form_fill","lead_id":"D","occurred_at":"2026-03-02T10:20:00Z","form_type":"contact_us"}
{"event_id":"e1","event_type":"lead_assigned","lead_id":"E","occurred_at":"2026-03-02T10:30:00Z","owner_id":"ann","team":"na"}
{"event_id":"e2","event_type":"form_fill","lead_id":"E","occurred_at":"2026-03-02T10:30:00Z","form_type":"demo_request"}
{"event_id":"a3","event_type":"sales_touch","lead_id":"A","occurred_at":"2026-03-02T11:00:00Z","rep_id":"ann","channel":"call"}
{"event_id":"b3","event_type":"sales_touch","lead_id":"B","occurred_at":"2026-03-02T12:35:00Z","rep_id":"bob","channel":"call"}
{"event_id":"e3","event_type":"sales_disposition","lead_id":"E","occurred_at":"2026-03-02T13:30:00Z","decision":"accept","rep_id":"ann"}
{"event_id":"c3","event_type":"sales_touch","lead_id":"C","occurred_at":"2026-03-02T15:10:00Z","rep_id":"ann","channel":"email"}
"""
FOUR_HOURS = '[sla.first_touch]\nwithin = "4h"\nbusiness = false\nwarn_at = false\nescalate_after = false\n'
TWO_HOURS = FOUR_HOURS.replace('"4h"', '"2h"')
UNTIL = "2026-03-02T18:00:00Z"


def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    events, current, candidate = tmp_path / "events.jsonl", tmp_path / "current.toml", tmp_path / "candidate.toml"
    events.write_bytes(EVENTS)
    current.write_text(FOUR_HOURS)
    candidate.write_text("# what sales is asked to sign\n" + TWO_HOURS)
    return events, current, candidate


def whatif_json(tmp_path: Path, *extra: str) -> dict:
    events, current, candidate = setup(tmp_path)
    done = leadflow("whatif", str(events), "--policy", str(current), "--candidate", str(candidate),
                    "--until", UNTIL, "--format", "json", *extra)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_json_holds_both_reports_and_the_hand_checked_differences(tmp_path: Path) -> None:
    document = whatif_json(tmp_path)
    assert set(document) == {"policies", "current", "candidate", "diff"}
    assert document["policies"]["current"]["version"] == parse_policy(FOUR_HOURS).policy_version
    assert document["policies"]["candidate"]["version"] == parse_policy(TWO_HOURS).policy_version
    assert document["current"]["leads"] == document["candidate"]["leads"] == 5   # the report's own JSON
    diff = document["diff"]
    assert {"alerts_by_type", "compliance_by_sla", "funnel", "leads_changed"} <= set(diff)
    assert diff["alerts_by_type"]["follow_up_overdue"] == {"current": 2, "candidate": 4, "difference": 2}
    assert diff["alerts_by_type"]["handoff_broken"] == {"current": 0, "candidate": 0, "difference": 0}
    sla = {row["group"]: row for row in diff["compliance_by_sla"]}
    assert {k: sla["first_touch"][k] for k in ("met", "late", "open")} == {
        "met": {"current": 3, "candidate": 1, "difference": -2},
        "late": {"current": 1, "candidate": 3, "difference": 2},
        "open": {"current": 1, "candidate": 1, "difference": 0},
    }
    assert sla["first_touch"]["rate"] == {"current": 0.6, "candidate": 0.2, "difference": -0.4}
    assert sla["assignment"]["rate"] == {"current": 1.0, "candidate": 1.0, "difference": 0.0}
    teams = {row["group"]: row["rate"] for row in diff["compliance_by_team"]}
    assert teams["na"]["current"] == 1.0 and round(teams["na"]["candidate"], 4) == 0.3333
    assert teams["emea"] == {"current": 0.0, "candidate": 0.0, "difference": 0.0}
    owners = {row["group"]: (row["met"]["current"], row["met"]["candidate"]) for row in diff["compliance_by_owner"]}
    assert owners == {"ann": (2, 1), "bob": (1, 0), "(none)": (1, 1)}   # (none): B's assignment SLA
    funnel = {row["stage"]: row["reached"] for row in diff["funnel"]}
    assert funnel["mql"] == {"current": 5, "candidate": 5, "difference": 0}
    assert funnel["sal"] == {"current": 4, "candidate": 4, "difference": 0}
    conversions = {(c["from_stage"], c["to_stage"]): c["rate"] for c in diff["conversions"]}
    assert conversions[("mql", "sal")] == {"current": 0.8, "candidate": 0.8, "difference": 0.0}
    assert diff["leads_changed_total"] == 2
    assert diff["leads_changed"] == [
        {"lead_id": "B", "final_stage": {"current": "sal", "candidate": "sal"},
         "breaches": {"current": 0, "candidate": 1, "difference": 1},
         "reasons": ["first_touch breach at 2026-03-02 12:05 UTC under the candidate only: "
                     "touch came 2 h 30 m after assignment (limit 2h)"]},
        {"lead_id": "E", "final_stage": {"current": "sal", "candidate": "sal"},
         "breaches": {"current": 0, "candidate": 1, "difference": 1},
         "reasons": ["first_touch breach at 2026-03-02 12:30 UTC under the candidate only: "
                     "disposition came 3 h after the MQL (limit 2h)"]},
    ]
    assert diff["by_channel"] == [   # every lead's first marketing event is a form (SPEC 10)
        {"group": "form", "mqls": {"current": 5, "candidate": 5, "difference": 0},
         "sals": {"current": 4, "candidate": 4, "difference": 0},
         "sal_rate": {"current": 0.8, "candidate": 0.8, "difference": 0.0}}]


def test_swapping_the_policies_swaps_the_sides(tmp_path: Path) -> None:
    events, current, candidate = setup(tmp_path)
    done = leadflow("whatif", str(events), "--policy", str(candidate), "--candidate", str(current),
                    "--until", UNTIL, "--format", "json")
    assert done.returncode == 0, done.stderr
    diff = json.loads(done.stdout)["diff"]
    assert diff["alerts_by_type"]["follow_up_overdue"] == {"current": 4, "candidate": 2, "difference": -2}
    assert [lead["reasons"] for lead in diff["leads_changed"]] == [
        ["first_touch breach at 2026-03-02 12:05 UTC under the current only: touch came 2 h 30 m after "
         "assignment (limit 2h)"],
        ["first_touch breach at 2026-03-02 12:30 UTC under the current only: disposition came 3 h after "
         "the MQL (limit 2h)"],
    ]


def test_text_is_a_side_by_side_table_with_the_changed_leads(tmp_path: Path) -> None:
    events, current, candidate = setup(tmp_path)
    done = leadflow("whatif", str(events), "--policy", str(current), "--candidate", str(candidate), "--until", UNTIL)
    assert done.returncode == 0, done.stderr
    text = done.stdout.decode()
    table, _, leads = text.partition("Leads whose final stage or breach count changes")
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines() if line.strip()}
    assert rows["follow_up_overdue"] == ["2", "4", "+2"]
    assert rows["first_touch"] == ["60.0%", "(3/5)", "20.0%", "(1/5)", "-40.0", "pp"]
    assert rows["na"] == ["100.0%", "(3/3)", "33.3%", "(1/3)", "-66.7", "pp"]
    assert rows["bob"] == ["50.0%", "(1/2)", "0.0%", "(0/2)", "-50.0", "pp"]
    assert "current" in text and "candidate" in text and "difference" in text
    assert leads.startswith(": 2\n")
    assert "touch came 2 h 30 m after assignment (limit 2h)" in leads


def test_standard_input_is_read_once_for_both_replays(tmp_path: Path) -> None:
    _, current, candidate = setup(tmp_path)
    done = leadflow("whatif", "-", "--policy", str(current), "--candidate", str(candidate), "--until", UNTIL,
                    "--format", "json", stdin=EVENTS)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["diff"]["alerts_by_type"]["follow_up_overdue"]["difference"] == 2


def test_html_highlights_the_rows_that_differ(tmp_path: Path) -> None:
    page = tmp_path / "whatif.html"
    whatif_json(tmp_path, "--html", str(page))
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<script" not in html
    assert ('<tr class="worse"><td>follow_up_overdue</td><td>2</td><td>4</td><td class="difference">+2</td></tr>'
            in html)
    assert '<tr class="same"><td>handoff_broken</td>' in html
    assert '<tr class="worse"><td>first_touch</td><td>60.0% (3/5)</td><td>20.0% (1/5)</td>' in html
    assert "touch came 2 h 30 m after assignment (limit 2h)" in html


def test_a_bad_candidate_is_refused_like_any_policy(tmp_path: Path) -> None:
    events, current, _ = setup(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text('[scoring]\nmql_threshold = 40\n\n[sla.first_touch]\nwithn = "2h"\n')
    done = leadflow("whatif", str(events), "--policy", str(current), "--candidate", str(bad))
    assert done.returncode == 2
    err = done.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and f"{bad}:5: sla.first_touch.withn: unknown key 'withn'" in err
    assert done.stdout == b""


def test_bad_usage_exits_2(tmp_path: Path) -> None:
    events, current, candidate = setup(tmp_path)
    for args in (["--candidate", str(tmp_path / "nope.toml")],
                 ["--policy", str(current)],                                   # no candidate
                 ["--candidate", str(candidate), "--until", "tomorrow"],
                 ["--candidate", str(candidate), "--format", "xml"]):
        done = leadflow("whatif", str(events), *args)
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.decode().strip().splitlines()) == 1
    missing = leadflow("whatif", str(tmp_path / "none.jsonl"), "--candidate", str(candidate))
    assert missing.returncode == 2 and "no such file" in missing.stderr.decode()


def test_bad_event_lines_are_dead_lettered_in_both_replays_and_the_exit_status_is_0(tmp_path: Path) -> None:
    events, current, candidate = setup(tmp_path)
    events.write_bytes(EVENTS + b'{"event_id": "x"\n')
    done = leadflow("whatif", str(events), "--policy", str(current), "--candidate", str(candidate),
                    "--until", UNTIL, "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["diff"]["leads_changed_total"] == 2


def test_the_readme_excerpt_is_what_whatif_prints() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index("$ leadflow whatif "):]
    block = block[: block.index("```")]
    command, _, shown = block.partition("\n      ")
    args = (command + " " + shown.split("\n", 1)[0]).replace("\\", " ").split()[2:]
    done = leadflow(*args, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    printed = {" ".join(line.split()) for line in done.stdout.decode().splitlines()}
    excerpt = [" ".join(line.split()) for line in shown.split("\n", 1)[1].splitlines()]
    missing = [line for line in excerpt if line and line != "…" and line not in printed]
    assert len(excerpt) > 20 and missing == []
