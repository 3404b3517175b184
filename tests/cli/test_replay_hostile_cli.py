"""``leadflow replay`` and ``report`` fed as an attacker or a careless producer would (issue 10):
every run ends with a clear exit status, nothing from the data drives the terminal, no secret is
printed. Each test runs the CLI as a subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.cli.test_replay_cli import SAMPLE, SCRIPT, lines

RFC3339_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def leadflow(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    command = [str(SCRIPT)] if SCRIPT.exists() else ["python", "-m", "leadflow"]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    return subprocess.run([*command, *args], capture_output=True, timeout=120,
                          env={**clean, "COLUMNS": "200", **(env or {})})


def event(event_id: str, lead_id: str, occurred_at: str, event_type: str = "form_fill", **fields: object) -> dict:
    body = {"event_id": event_id, "event_type": event_type, "lead_id": lead_id, "occurred_at": occurred_at}
    if event_type == "form_fill":
        body["form_type"] = "demo_request"
    return {**body, **fields}


def write(path: Path, events: list[dict]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def test_calendar_edge_dates_never_abort_a_replay_and_every_time_is_rfc3339(tmp_path: Path) -> None:
    source = write(tmp_path / "edge.jsonl", [
        event("e1", "A", "0001-01-01T00:00:00+14:00"),
        event("e2", "B", "0001-01-01T00:00:00Z"),
        event("e3", "C", "9999-12-31T10:00:00Z"),
        event("e4", "C", "9999-12-31T10:00:00Z", "lead_assigned", owner_id="rep-1"),
        event("e5", "D", "2026-03-02T09:00:00Z"),
        event("e6", "D", "2026-03-02T09:05:00Z", "lead_assigned", owner_id="rep-1"),
        event("e7", "E", "9989-12-29T10:00:00Z"),     # the last day: in range, deadlines clamped
        event("e8", "E", "9989-12-29T10:00:00Z", "lead_assigned", owner_id="rep-2"),
    ])
    done = leadflow("replay", str(source), "--out", str(tmp_path / "out"), "--until", "9989-12-31T23:59:59.999Z")
    assert done.returncode == 0, done.stderr
    dlq = lines(tmp_path / "out" / "dlq.jsonl")
    assert [(d["source_offset"], d["error"]) for d in dlq] == [
        (1, "invalid_timestamp"), (2, "invalid_timestamp"), (3, "invalid_timestamp"), (4, "invalid_timestamp")]
    moves = lines(tmp_path / "out" / "lifecycle.jsonl")
    assert {m["lead_id"] for m in moves} == {"D", "E"}          # leads after the bad lines were processed
    alerts = lines(tmp_path / "out" / "alerts.jsonl")
    assert {a["lead_id"] for a in alerts} == {"D", "E"}
    for record in (*moves, *alerts):
        for key in ("occurred_at", "started_at", "due_at", "detected_at"):
            if record.get(key) is not None:
                assert RFC3339_MS.fullmatch(record[key]), record
    assert max(a["detected_at"] for a in alerts) <= "9989-12-31T23:59:59.999Z"
    report = leadflow("report", str(tmp_path / "out"), "--format", "json")
    assert report.returncode == 0, report.stderr


HOSTILE = {
    "lead": "lead[/]x[link=https://evil.example]click[/link]\x1b]0;owned\x07",
    "owner": "rep[/]1\x1b[31m",
    "event_type": "[/]\x1b[31m",
}


def test_markup_and_terminal_escapes_in_the_data_are_printed_as_text(tmp_path: Path) -> None:
    source = write(tmp_path / "hostile.jsonl", [
        event("h1", HOSTILE["lead"], "2026-03-02T09:00:00Z"),
        event("h2", HOSTILE["lead"], "2026-03-02T09:01:00Z", "lead_assigned", owner_id=HOSTILE["owner"]),
        event("h3", "[link=https://evil.example]L2", "2026-03-02T09:02:00Z", HOSTILE["event_type"]),
        event("h4", "L3", "2026-03-02T16:00:00Z"),          # the owner's SLA fires before it
    ])
    done = leadflow("replay", str(source), "--out", str(tmp_path / "out"), "--show")
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode() + done.stderr.decode()
    for control in ("\x1b", "\x07"):
        assert control not in out
    assert "lead[/]x[link=https://evil.example]click[/link]]0;owned" in out
    assert "rep[/]1[31m" in out and "unknown_event_type" in out and "'[/]" in out
    assert "L3" in out                                              # the rest of the file was processed

    report = leadflow("report", str(tmp_path / "out"))
    assert report.returncode == 0, report.stderr
    text = report.stdout.decode()
    assert "rep[/]1[31m" in text and "\x1b" not in text


def test_a_far_future_event_makes_the_summary_warn_about_the_clock(tmp_path: Path) -> None:
    events = [event("f1", "FUTURE", "2030-01-01T00:00:00Z")]
    for i in range(5):
        events.append(event(f"a{i}", f"L{i}", f"2026-03-02T09:0{i}:00Z"))
        events.append(event(f"b{i}", f"L{i}", f"2026-03-02T09:1{i}:00Z", "lead_assigned", owner_id="rep"))
    done = leadflow("replay", str(write(tmp_path / "f.jsonl", events)), "--out", str(tmp_path / "o"), "--no-show")
    assert done.returncode == 0, done.stderr
    warning = done.stderr.decode()
    assert "warning" in warning and "2030-01-01T00:00:00.000Z" in warning and "f.jsonl:1" in warning
    assert "10 later events" in warning
    # time-ordered input with gaps of days between events never warns
    calm = leadflow("replay", str(SAMPLE), "--out", str(tmp_path / "calm"), "--no-show")
    assert calm.returncode == 0 and "warning" not in calm.stderr.decode()
    tight = leadflow("replay", str(write(tmp_path / "f.jsonl", events)), "--out", str(tmp_path / "o2"),
                     "--no-show", env={"LEADFLOW_FUTURE_MARGIN": "3000d"})
    assert tight.returncode == 0 and "warning" not in tight.stderr.decode()


@pytest.fixture
def refusing_webhook() -> Iterator[str]:
    """A local HTTP server that answers every POST with 400 (the sink does not retry it)."""

    class Refuse(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(400)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def test_the_summary_counts_the_dead_letters_a_sink_produced(tmp_path: Path, refusing_webhook: str) -> None:
    done = leadflow("replay", str(SAMPLE), "--out", str(tmp_path / "o"), "--no-show", "--until",
                    "2026-06-01T00:00:00Z", "--webhook", refusing_webhook,
                    env={"LEADFLOW_WEBHOOK_SECRET": "s3cret-for-hmac"})
    assert done.returncode == 0, done.stderr
    dead = lines(tmp_path / "o" / "dlq.jsonl")
    failed = sum(d["error"] == "webhook_failed" for d in dead)
    assert failed == len(lines(tmp_path / "o" / "alerts.jsonl")) > 0
    summary = done.stdout.decode()
    assert re.search(rf"dead-lettered\s+{len(dead):,}\b", summary), summary
    assert re.search(rf"webhook_failed\s+{failed:,}\b", summary), summary


def test_a_directory_is_refused_dev_null_is_empty_and_a_fifo_is_read(tmp_path: Path) -> None:
    folder = leadflow("replay", str(tmp_path), "--out", str(tmp_path / "o"))
    assert folder.returncode == 2 and b"is a directory" in folder.stderr
    assert folder.stderr.count(b"\n") == 1
    empty = leadflow("replay", "/dev/null", "--out", str(tmp_path / "o"), "--no-show")
    assert empty.returncode == 0, empty.stderr
    assert re.search(rb"events read\s+0\b", empty.stdout)
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(SAMPLE.read_bytes()), daemon=True)
    writer.start()
    piped = leadflow("replay", str(fifo), "--out", str(tmp_path / "f"), "--no-show")
    writer.join(10)
    assert piped.returncode == 0, piped.stderr
    assert (tmp_path / "f" / "lifecycle.jsonl").read_bytes() != b""


def test_a_closed_standard_input_is_a_usage_error(tmp_path: Path) -> None:
    command = [str(SCRIPT)] if SCRIPT.exists() else ["python", "-m", "leadflow"]
    done = subprocess.run([*command, "replay", "-", "--out", str(tmp_path / "o")], capture_output=True,
                          stdin=subprocess.DEVNULL, preexec_fn=lambda: os.close(0), timeout=60)
    assert done.returncode == 2, done.stderr
    assert b"standard input is closed" in done.stderr and b"Traceback" not in done.stderr


@pytest.mark.parametrize("url", ["mysql://lf:pw-secret@db/leadflow", "sqlite:///", "sqlite://",
                                 "postgresql://lf:pw%secret@127.0.0.1/test"])
def test_a_bad_sql_url_is_a_usage_error_without_its_password(tmp_path: Path, url: str) -> None:
    done = leadflow("replay", str(SAMPLE), "--out", str(tmp_path / "o"), "--sql", url)
    assert done.returncode == 2, done.stderr
    assert b"--sql" in done.stderr and b"secret" not in done.stderr
    assert not (tmp_path / "o").exists()                      # refused before anything started


def test_a_database_that_cannot_be_reached_is_named_without_its_password(tmp_path: Path) -> None:
    done = leadflow("replay", str(SAMPLE), "--out", str(tmp_path / "o"),
                    "--sql", "postgresql://lf:pw-secret@127.0.0.1:1/test?password=other-secret")
    assert done.returncode == 1
    assert b"cannot connect to postgresql://lf:********@127.0.0.1:1/test" in done.stderr
    assert b"secret" not in done.stderr


def test_a_policy_nested_100k_deep_is_exit_status_2_with_file_and_line(tmp_path: Path) -> None:
    policy = tmp_path / "deep.toml"
    policy.write_text('[sla.first_touch]\nwithin = "4h"\nx = ' + "[" * 100_000 + "]" * 100_000 + "\n")
    done = leadflow("replay", str(SAMPLE), "--out", str(tmp_path / "o"), "--policy", str(policy))
    assert done.returncode == 2
    assert f"{policy}:3:".encode() in done.stderr and b"nested" in done.stderr
    assert done.stderr.count(b"\n") == 1
