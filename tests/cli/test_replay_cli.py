"""``leadflow replay`` as a user runs it: a subprocess, its exit status, its files and its messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "sample-events.jsonl"
SCRIPT = Path(sys.executable).with_name("leadflow")


def leadflow(*args: str, stdin: bytes | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "leadflow"]
    return subprocess.run(
        [*command, *args], input=stdin, capture_output=True, cwd=cwd, timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def test_replay_writes_the_three_files_and_a_summary(tmp_path):
    done = leadflow("replay", str(SAMPLE), "--out", str(tmp_path), "--no-show")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alerts.jsonl", "dlq.jsonl", "lifecycle.jsonl", "manifest.json"]
    summary = done.stdout.decode()
    assert "events read" in summary and "dead-lettered" in summary and "stage changes" in summary
    transitions = lines(tmp_path / "lifecycle.jsonl")
    assert {t["to_stage"] for t in transitions} >= {"new", "mql", "sal", "sql"}
    assert all(t["occurred_at"].endswith("Z") for t in transitions)


def test_default_output_directory_is_leadflow_out(tmp_path):
    done = leadflow("replay", str(SAMPLE), "--no-show", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "leadflow-out" / "lifecycle.jsonl").stat().st_size > 0


def test_replay_is_byte_for_byte_deterministic(tmp_path):
    for run in ("a", "b"):
        assert leadflow("replay", str(SAMPLE), "--out", str(tmp_path / run), "--until", "2026-06-01T00:00:00Z").returncode == 0
    for name in ("lifecycle.jsonl", "alerts.jsonl", "dlq.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_splitting_the_input_into_files_or_stdin_changes_nothing(tmp_path):
    data = SAMPLE.read_bytes().splitlines(keepends=True)
    first, second = tmp_path / "part1.jsonl", tmp_path / "part2.jsonl"
    first.write_bytes(b"".join(data[:150]))
    second.write_bytes(b"".join(data[150:]))
    assert leadflow("replay", str(SAMPLE), "--out", str(tmp_path / "whole")).returncode == 0
    assert leadflow("replay", str(first), "-", "--out", str(tmp_path / "split"), stdin=second.read_bytes()).returncode == 0
    for name in ("lifecycle.jsonl", "alerts.jsonl"):
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "split" / name).read_bytes()
    whole = [(d["error"], d["original"]) for d in lines(tmp_path / "whole" / "dlq.jsonl")]
    split = [(d["error"], d["original"]) for d in lines(tmp_path / "split" / "dlq.jsonl")]
    assert whole == split and whole


def test_until_moves_the_clock_so_due_timers_fire(tmp_path):
    event = b'{"event_id":"e1","event_type":"form_fill","lead_id":"L1","occurred_at":"2026-03-02T10:00:00Z","form_type":"demo_request"}\n'
    assert leadflow("replay", "-", "--out", str(tmp_path / "stop"), stdin=event).returncode == 0
    assert lines(tmp_path / "stop" / "alerts.jsonl") == []  # the clock stops at the last event
    assert leadflow("replay", "-", "--out", str(tmp_path / "later"), "--until", "2026-03-02T10:15:00Z", stdin=event).returncode == 0
    (alert,) = lines(tmp_path / "later" / "alerts.jsonl")
    assert (alert["type"], alert["reason"], alert["due_at"]) == ("handoff_broken", "unassigned", "2026-03-02T10:15:00.000Z")


def test_bad_lines_go_to_the_dlq_with_code_source_and_original_bytes(tmp_path):
    data = b'{"event_id":"e1","event_type":"form_fill","lead_id":"L1","occurred_at":"2026-03-02T10:00:00Z","form_type":"webinar"}\n{not json\n'
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    done = leadflow("replay", str(path), "--out", str(tmp_path / "out"))
    assert done.returncode == 0
    (dead,) = lines(tmp_path / "out" / "dlq.jsonl")
    assert dead["error"] == "invalid_json"
    assert dead["source_topic"] == str(path) and dead["source_offset"] == 2
    import base64

    assert base64.b64decode(dead["original"]) == b"{not json"


def test_every_input_is_accounted_for_in_the_summary(tmp_path):
    done = leadflow("replay", str(SAMPLE), "--out", str(tmp_path), "--no-show")
    figures = {}
    for row in done.stdout.decode().splitlines():
        parts = row.split()
        if len(parts) >= 2 and parts[-1].replace(",", "").isdigit():
            figures[" ".join(parts[:-1])] = int(parts[-1].replace(",", ""))
    assert figures["events read"] == figures["applied"] + figures["duplicates"] + figures["dead-lettered"]
    assert figures["duplicates"] > 0 and figures["dead-lettered"] > 0
    assert figures["events read"] == len([l for l in SAMPLE.read_bytes().splitlines() if l.strip()])


def test_the_summary_counts_late_events_and_the_largest_lateness(tmp_path):
    events = b"".join(json.dumps({"event_id": f"e{i}", "event_type": "email_engagement", "lead_id": "L1",
                                  "action": "open", "occurred_at": at}).encode() + b"\n"
                      for i, at in enumerate(["2026-03-02T12:00:00Z", "2026-03-02T10:30:00Z",
                                              "2026-03-02T11:00:00Z", "2026-03-02T12:05:00Z"]))
    done = leadflow("replay", "-", "--out", str(tmp_path), "--no-show", stdin=events)
    assert done.returncode == 0, done.stderr
    row = next(r for r in done.stdout.decode().splitlines() if "late for their lead" in r)
    assert row.split()[4:] == ["2", "(at", "most", "1h", "30m", "late)"], row


def test_show_prints_stage_changes_and_alerts(tmp_path):
    done = leadflow("replay", str(SAMPLE), "--out", str(tmp_path), "--show", "--until", "2026-06-01T00:00:00Z")
    out = done.stdout.decode()
    assert "→" in out and "follow_up_overdue" in out and "DLQ" in out


# -- bad usage and bad policy: exit status 2, one line on stderr -------------------------------
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["replay"], "Missing argument"),
        (["replay", "no-such-file.jsonl"], "no such file"),
        (["replay", str(SAMPLE), "--until", "yesterday"], "RFC 3339"),
        (["replay", str(SAMPLE), "--bogus"], "No such option"),
        (["frobnicate"], "No such command"),
    ],
)
def test_bad_usage_exits_2_with_one_line(args, needle, tmp_path):
    done = leadflow(*args, "--out", str(tmp_path)) if args[:1] == ["replay"] and len(args) > 1 else leadflow(*args)
    assert done.returncode == 2
    err = done.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and needle in err


def test_bad_policy_exits_2_naming_file_line_and_key(tmp_path):
    policy = tmp_path / "policy.toml"
    policy.write_text('[scoring]\nmql_threshold = 40\n\n[sla.first_touch]\nwithn = "4h"\n')
    done = leadflow("replay", str(SAMPLE), "--policy", str(policy), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    err = done.stderr.decode().strip()
    assert len(err.splitlines()) == 1
    assert f"{policy}:5" in err and "sla.first_touch.withn" in err


def test_missing_policy_file_exits_2(tmp_path):
    done = leadflow("replay", str(SAMPLE), "--policy", str(tmp_path / "nope.toml"), "--out", str(tmp_path))
    assert done.returncode == 2 and "nope.toml" in done.stderr.decode()


def test_policy_changes_the_outcome(tmp_path):
    policy = tmp_path / "policy.toml"
    policy.write_text('[sla.assignment]\nwithin = "1m"\n')
    event = b'{"event_id":"e1","event_type":"form_fill","lead_id":"L1","occurred_at":"2026-03-02T10:00:00Z","form_type":"pricing"}\n'
    done = leadflow("replay", "-", "--policy", str(policy), "--out", str(tmp_path / "o"), "--until", "2026-03-02T10:01:00Z", stdin=event)
    assert done.returncode == 0, done.stderr
    (alert,) = lines(tmp_path / "o" / "alerts.jsonl")
    assert alert["due_at"] == "2026-03-02T10:01:00.000Z"


def test_unwritable_output_is_a_failure_with_status_1(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    done = leadflow("replay", str(SAMPLE), "--out", str(blocker / "sub"))
    assert done.returncode == 1
    assert len(done.stderr.decode().strip().splitlines()) == 1


def test_an_event_the_output_could_not_encode_is_dead_lettered_and_replay_goes_on(tmp_path):
    data = (
        b'{"event_id":"e1","event_type":"form_fill","lead_id":"L\\ud800","occurred_at":"2026-03-02T10:00:00Z","form_type":"webinar"}\n'
        b'{"event_id":"e2","event_type":"form_fill","lead_id":"L2","occurred_at":"2026-03-02T10:01:00Z","form_type":"webinar"}\n'
    )
    done = leadflow("replay", "-", "--out", str(tmp_path), stdin=data)
    assert done.returncode == 0, done.stderr
    assert [d["error"] for d in lines(tmp_path / "dlq.jsonl")] == ["invalid_json"]
    assert {t["lead_id"] for t in lines(tmp_path / "lifecycle.jsonl")} == {"L2"}


def test_worker_refuses_bad_configuration_at_start_up_with_status_2():
    import os as _os

    env = {**_os.environ, "LEADFLOW_PARTITIONS": "many", "LEADFLOW_SECURITY_PROTOCOL": "CARRIER_PIGEON"}
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "leadflow"]
    done = subprocess.run([*command, "worker", "--broker", "127.0.0.1:1"], capture_output=True, env=env, timeout=60)
    assert done.returncode == 2
    err = done.stderr.decode()
    assert "LEADFLOW_PARTITIONS" in err and "LEADFLOW_SECURITY_PROTOCOL" in err


@pytest.mark.parametrize("port", ["0", "70000", "http"])
def test_worker_refuses_a_web_port_out_of_range_with_status_2(port):
    done = leadflow("worker", "--broker", "127.0.0.1:1", "--web-port", port)
    assert done.returncode == 2
    assert b"--web-port" in done.stderr and b"Traceback" not in done.stderr


def test_the_readme_by_channel_excerpt_is_real_output(tmp_path):
    """README's Report section shows rows of the by-channel tables of the two samples' replay."""
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index("By first-touch channel — pipeline and revenue"):]
    block = block[: block.index("```")]
    rows = [line.rstrip() for line in block.splitlines()
            if line.startswith(" ") and line.split()[0] in ("email", "form", "paid_social", "cpc", "organic")]
    assert len(rows) >= 8
    attribution = SAMPLE.with_name("sample-events-attribution.jsonl")
    done = leadflow("replay", str(SAMPLE), str(attribution), "--until", "2026-07-01T00:00:00Z", "--no-show",
                    "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    report = leadflow("report", str(tmp_path))
    assert report.returncode == 0, report.stderr
    shown = {line.rstrip() for line in report.stdout.decode().splitlines()}
    assert [row for row in rows if row not in shown] == []


def test_jobs_3_writes_the_bytes_of_jobs_1(tmp_path):
    """Leads shared among three processes, merged: the same three files as one process, on a mixed
    stream (duplicates, bad lines, late events) under a reorder window and grace, with --until."""
    import random

    from leadflow.traffic import TrafficShape, json_lines

    data = list(json_lines(300, seed=3, shape=TrafficShape(duplicate_share=0.05, bad_share=0.02)))
    rng = random.Random(3)
    for i in range(0, len(data) - 10, 7):  # late events: some lines a few places after their time
        j = i + rng.randrange(1, 10)
        data[i], data[j] = data[j], data[i]
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(data) + b"\n")
    policy = tmp_path / "policy.toml"
    policy.write_text('[lateness]\nreorder = "5m"\ngrace = "10m"\n')
    for jobs in ("1", "3"):
        done = leadflow("replay", str(events), "--policy", str(policy), "--out", str(tmp_path / jobs),
                        "--until", "2026-06-01T00:00:00Z", "--jobs", jobs, "--no-show")
        assert done.returncode == 0, done.stderr
    for name in ("lifecycle.jsonl", "alerts.jsonl", "dlq.jsonl"):
        assert (tmp_path / "3" / name).read_bytes() == (tmp_path / "1" / name).read_bytes(), name
    assert (tmp_path / "1" / "dlq.jsonl").stat().st_size > 0
    assert b"sla_" in (tmp_path / "1" / "alerts.jsonl").read_bytes()
    assert done.stdout.decode().count("events read") == 1
