"""``leadflow replay`` and ``leadflow report`` on an operator's bad day, as a user runs them: signals,
two runs at once, a full disk, symlinks, a directory that is not a complete output, huge lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli.test_replay_cli import SAMPLE, SCRIPT, leadflow

#: Replaying this many generated leads takes a few seconds: long enough to be caught mid-run.
BIG_LEADS = 6000


@pytest.fixture(scope="module")
def big_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from leadflow.traffic import json_lines

    path = tmp_path_factory.mktemp("big") / "events.jsonl"
    with open(path, "wb") as f:
        for line in json_lines(BIG_LEADS):
            f.write(line + b"\n")
    return path


def contents(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def complete_output(directory: Path) -> dict[str, bytes]:
    """A finished replay of the sample in ``directory``; its files, byte for byte."""
    done = leadflow("replay", str(SAMPLE), "--out", str(directory), "--no-show")
    assert done.returncode == 0, done.stderr
    return contents(directory)


def start_replay(*args: str) -> subprocess.Popen:
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "leadflow"]
    return subprocess.Popen([*command, "replay", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "COLUMNS": "200"})


def wait_for(condition: Callable[[], bool], what: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the command ended ({proc.returncode}) before {what}: {proc.stderr.read().decode()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {what} within {timeout} s")
        time.sleep(0.02)


def finish(proc: subprocess.Popen, timeout: float = 60) -> bytes:
    """Standard error of ``proc`` once it ended; killed (and the test failed) if it does not end in time."""
    try:
        return proc.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"the command did not end within {timeout} s")


def writing(directory: Path) -> Callable[[], bool]:
    """True once the run's temporary lifecycle file exists (its records come in 256 KiB writes; with
    --jobs the merge writes them only at the end), and a moment has passed."""
    def check() -> bool:
        if not any(directory.glob(".lifecycle.jsonl.*.tmp")):
            return False
        time.sleep(0.5)
        return True
    return check


@pytest.mark.parametrize("sig, jobs", [(signal.SIGINT, 1), (signal.SIGTERM, 1), (signal.SIGHUP, 1),
                                       (signal.SIGTERM, 2)], ids=lambda v: v.name if isinstance(v, signal.Signals) else f"jobs{v}")
def test_a_signal_mid_run_stops_cleanly_with_128_plus_the_signal_and_the_previous_output_stays(
        sig: signal.Signals, jobs: int, big_input: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    before = complete_output(out)
    proc = start_replay(str(big_input), "--out", str(out), "--no-show", "--jobs", str(jobs))
    wait_for(writing(out), "records written", proc)
    proc.send_signal(sig)
    err = finish(proc)
    assert proc.returncode == 128 + sig, err
    assert err.decode().splitlines() == [f"leadflow: stopped by {sig.name}"]
    assert contents(out) == before                      # no temporary file, no lock, nothing changed
    report = leadflow("report", str(out))
    assert report.returncode == 0 and b"60 leads" in report.stdout, report.stderr


def test_sigterm_stops_a_report_like_sigint(big_input: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = leadflow("replay", str(big_input), "--out", str(out), "--no-show")
    assert done.returncode == 0, done.stderr
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "leadflow"]
    proc = subprocess.Popen([*command, "report", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def reading() -> bool:
        try:
            return any(os.readlink(f"/proc/{proc.pid}/fd/{fd}") == str(out / "lifecycle.jsonl")
                       for fd in os.listdir(f"/proc/{proc.pid}/fd"))
        except OSError:
            return False

    wait_for(reading, "the report reading lifecycle.jsonl", proc)
    proc.send_signal(signal.SIGTERM)
    err = finish(proc)
    assert proc.returncode == 143, err
    assert err.decode().splitlines() == ["leadflow: stopped by SIGTERM"]


def test_a_second_run_on_the_same_directory_is_refused_naming_the_first(big_input: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = start_replay(str(big_input), "--out", str(out), "--no-show")
    try:
        wait_for(writing(out), "records written", first)
        second = leadflow("replay", str(SAMPLE), "--out", str(out), "--no-show")
        assert second.returncode == 1
        assert second.stderr.decode().splitlines() == [
            f"leadflow: {out} is in use by pid {first.pid} (another leadflow replay writes there)"]
    finally:
        first.send_signal(signal.SIGINT)
        finish(first)
    assert first.returncode == 130
    assert contents(out) == {}


def test_a_full_disk_is_one_line_naming_the_file_and_the_previous_output_stays(big_input: Path, tmpfs) -> None:
    out = tmpfs("2m") / "out"
    before = complete_output(out)
    done = leadflow("replay", str(big_input), "--out", str(out), "--no-show")
    assert done.returncode == 1
    (line,) = done.stderr.decode().splitlines()
    assert line.startswith(f"leadflow: cannot write {out}/.") and line.endswith(": No space left on device"), line
    assert contents(out) == before


def test_an_unwritable_output_directory_is_one_line(tmpfs) -> None:
    disk = tmpfs("1m", ro=True)
    done = leadflow("replay", str(SAMPLE), "--out", str(disk / "out"), "--no-show")
    assert done.returncode == 1
    assert done.stderr.decode().splitlines() == [
        f"leadflow: cannot create the output directory {disk / 'out'}: Read-only file system"]


def test_a_dangling_symlink_as_out_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "out").symlink_to(tmp_path / "nowhere")
    done = leadflow("replay", str(SAMPLE), "--out", str(tmp_path / "out"))
    assert done.returncode == 1
    assert done.stderr.decode().splitlines() == [
        f"leadflow: {tmp_path / 'out'} is a symlink to {tmp_path / 'nowhere'}, which does not exist"]


def test_a_symlinked_output_file_is_replaced_and_its_target_left_alone(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "dlq.jsonl").symlink_to(victim)
    done = leadflow("replay", str(SAMPLE), "--out", str(out), "--no-show")
    assert done.returncode == 0, done.stderr
    assert victim.read_bytes() == b"precious"
    assert not (out / "dlq.jsonl").is_symlink() and b'"error"' in (out / "dlq.jsonl").read_bytes()


def test_a_line_over_the_limit_is_dead_lettered_and_the_run_goes_on(tmp_path: Path) -> None:
    event = (b'{"event_id":"e%d","event_type":"form_fill","lead_id":"L%d","occurred_at":"2026-03-02T10:00:00Z",'
             b'"form_type":"webinar"}\n')
    data = event % (1, 1) + b'{"pad":"' + b"x" * (2 * 1024 * 1024) + b'"}\n' + event % (2, 2)
    done = leadflow("replay", "-", "--out", str(tmp_path), stdin=data)
    assert done.returncode == 0, done.stderr
    (dead,) = [json.loads(line) for line in (tmp_path / "dlq.jsonl").read_bytes().splitlines()]
    assert dead["error"] == "line_too_long" and "a line of 2,097,162 bytes" in dead["detail"]
    assert len(dead["original"]) < 10_000
    leads = {json.loads(line)["lead_id"] for line in (tmp_path / "lifecycle.jsonl").read_bytes().splitlines()}
    assert leads == {"L1", "L2"}


# -- report on what is not a complete output ------------------------------------------------------------

def test_report_refuses_a_directory_without_its_manifest_or_with_files_of_another_run(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    complete_output(first)
    done = leadflow("replay", str(SAMPLE), "--out", str(second), "--until", "2026-06-01T00:00:00Z", "--no-show")
    assert done.returncode == 0, done.stderr
    (first / "alerts.jsonl").write_bytes((second / "alerts.jsonl").read_bytes())     # mixed runs
    mixed = leadflow("report", str(first))
    assert mixed.returncode == 2
    assert mixed.stderr.decode().splitlines() == [
        f"leadflow report: {first / 'alerts.jsonl'}: {(second / 'alerts.jsonl').stat().st_size:,} bytes, "
        f"but manifest.json says {json.loads((first / 'manifest.json').read_bytes())['files']['alerts.jsonl']['bytes']:,} "
        "(a file of another run, or changed since)"]
    only_lifecycle = tmp_path / "c"
    only_lifecycle.mkdir()
    (only_lifecycle / "lifecycle.jsonl").write_bytes((second / "lifecycle.jsonl").read_bytes())
    alone = leadflow("report", str(only_lifecycle))
    assert alone.returncode == 2 and b"no manifest.json: not a complete replay output" in alone.stderr
    assert len(alone.stderr.splitlines()) == 1


def test_report_on_a_2_gb_sparse_file_stays_small(tmp_path: Path) -> None:
    """A manifest that matches the size, so the file is read: the first line over the limit stops it."""
    out = tmp_path / "out"
    complete_output(out)
    size = 2 * 1024 ** 3
    with open(out / "lifecycle.jsonl", "wb") as f:
        f.truncate(size)
    manifest = json.loads((out / "manifest.json").read_bytes())
    manifest["files"]["lifecycle.jsonl"]["bytes"] = size
    (out / "manifest.json").write_text(json.dumps(manifest))
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "leadflow"]
    proc = subprocess.Popen([*command, "report", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    try:
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)      # wait4: the child's own peak memory
    finally:
        watchdog.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 2, err
    assert err.decode().splitlines() == [
        f"leadflow report: {out / 'lifecycle.jsonl'}:1: a line of more than 1,048,576 bytes (not a replay output)"]
    assert usage.ru_maxrss < 200 * 1024, f"max RSS {usage.ru_maxrss:,} KB"


# -- SQL: report creates nothing, a newer schema is refused before anything is written -----------------

def _schema_version(path: Path, version: int) -> str:
    import sqlite3

    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (?)", (version,))
    return f"sqlite:///{path}"


def test_report_on_a_missing_sqlite_database_creates_nothing(tmp_path: Path) -> None:
    done = leadflow("report", "sqlite:///typo.db", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.decode().splitlines() == ["leadflow report: sqlite:///typo.db: no such database file"]
    assert list(tmp_path.iterdir()) == []


def test_a_database_at_a_newer_schema_is_refused_by_report_and_by_replay_before_any_output(tmp_path: Path) -> None:
    from sinks.sql import MIGRATIONS

    url = _schema_version(tmp_path / "future.db", 99)
    report = leadflow("report", url)
    assert report.returncode == 2
    assert report.stderr.decode().splitlines() == [
        f"leadflow report: {url}: schema version 99 is newer than this leadflow knows ({len(MIGRATIONS)}); "
        "use the leadflow that wrote it, or a newer one"]
    out = tmp_path / "out"
    before = complete_output(out)
    done = leadflow("replay", str(SAMPLE), "--out", str(out), "--sql", url, "--no-show")
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1 and b"schema version 99 is newer" in done.stderr
    assert contents(out) == before
