"""``leadflow produce`` against a real broker, as a user runs it: a progress bar on large files, a
bounded failure with a count when the broker goes away, lines too long, signals."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from leadflow.broker import EmbeddedBroker

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("leadflow")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "leadflow"]
pytestmark = pytest.mark.kafka   # every test here needs a real broker, the session's or its own

EVENT = (b'{"event_id":"e%d","event_type":"form_fill","lead_id":"L%d","occurred_at":"2026-03-02T10:00:00Z",'
         b'"form_type":"webinar"}\n')


def generated(path: Path, leads: int) -> Path:
    from leadflow.traffic import json_lines

    with open(path, "wb") as f:
        for line in json_lines(leads):
            f.write(line + b"\n")
    return path


@pytest.fixture(scope="module")
def large_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~95k events, ~17 MB: several seconds of producing."""
    return generated(tmp_path_factory.mktemp("produce") / "events.jsonl", 15_000)


def start(args: list[str], env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([*COMMAND, "produce", *args], env={**os.environ, **(env or {})}, **kwargs)


def finish(proc: subprocess.Popen, timeout: float) -> tuple[bytes, bytes]:
    """``communicate``, killing the process when it does not end in time (nothing outlives a test)."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"produce did not end within {timeout} s: {err.decode()[-500:]}")


def has_open(pid: int, path: Path) -> bool:
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(path) for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def wait_until(condition: Callable[[], bool], proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"produce ended ({proc.returncode}) too early"
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("produce never got going")
        time.sleep(0.02)


def test_a_broker_that_goes_away_mid_file_fails_it_within_seconds_saying_how_far_it_got(
        large_file: Path, tmp_path: Path) -> None:
    total = sum(1 for line in large_file.read_bytes().splitlines() if line.strip())
    broker = EmbeddedBroker(log_dir=tmp_path).start()
    try:
        proc = start([str(large_file), "--broker", broker.bootstrap], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_until(lambda: has_open(proc.pid, large_file), proc)
        time.sleep(1.5)
    finally:
        broker.stop()
    stopped = time.monotonic()
    _, err = finish(proc, 60)
    took = time.monotonic() - stopped
    assert proc.returncode == 1, err
    (line,) = err.decode().splitlines()
    found = re.fullmatch(rf"leadflow: {broker.bootstrap} stopped answering \(\w+\): sent ([\d,]+) of ([\d,]+) "
                         r"events; re-running is safe: repeats are dropped by event_id", line)
    assert found, line
    sent, of = (int(g.replace(",", "")) for g in found.groups())
    assert 0 < sent < of == total
    assert took < 15, f"{took:.1f} s after the broker stopped"


def test_a_large_file_shows_a_progress_bar_on_a_terminal(bootstrap: str, unique_name, tmp_path: Path) -> None:
    path = generated(tmp_path / "events.jsonl", 4_500)
    assert path.stat().st_size > 5_000_000
    master, slave = pty.openpty()
    proc = start([str(path), "--broker", bootstrap], env={"LEADFLOW_TOPIC_PREFIX": unique_name("p"), "TERM": "xterm",
                                                          "COLUMNS": "100"},
                 stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    shown = b""
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            proc.kill()
            pytest.fail("produce wrote nothing to its terminal for 60 s")
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the other end closed
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    out, _ = finish(proc, 60)
    assert proc.returncode == 0, shown
    assert b"producing" in shown and re.search(rb"\d+%", shown), shown[-500:]
    assert out.decode().startswith("produced ")


def test_a_line_over_the_limit_is_not_sent_and_named(bootstrap: str, unique_name, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(EVENT % (1, 1) + b'{"pad":"' + b"x" * (2 * 1024 * 1024) + b'"}\n' + EVENT % (2, 2))
    proc = start([str(path), "--broker", bootstrap], env={"LEADFLOW_TOPIC_PREFIX": unique_name("p")},
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = finish(proc, 60)
    assert proc.returncode == 1
    assert out.decode().startswith(f"produced 2 events to {bootstrap}")
    assert err.decode().splitlines() == ["leadflow: 1 line over 1,048,576 bytes not sent (line 2)"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_stops_produce_with_one_line_and_128_plus_the_signal(
        sig: signal.Signals, large_file: Path, bootstrap: str, unique_name) -> None:
    proc = start([str(large_file), "--broker", bootstrap], env={"LEADFLOW_TOPIC_PREFIX": unique_name("p")},
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_until(lambda: has_open(proc.pid, large_file), proc)
    time.sleep(0.3)
    proc.send_signal(sig)
    _, err = finish(proc, 30)
    assert proc.returncode == 128 + sig, err
    assert err.decode().splitlines() == [f"leadflow: stopped by {sig.name}"]


SECURED = {
    "SASL_PLAINTEXT": {"LEADFLOW_SASL_MECHANISM": "PLAIN", "LEADFLOW_SASL_USERNAME": "loader",
                       "LEADFLOW_SASL_PASSWORD": "hunter2-never-printed"},
    "SSL": {},
}


@pytest.mark.parametrize("protocol", sorted(SECURED))
def test_produce_speaks_the_deployments_security_protocol(
        protocol: str, bootstrap: str, unique_name, tmp_path: Path) -> None:
    """``leadflow produce`` uses the TLS/SASL settings the worker uses: against the (plaintext)
    test broker it fails with one line naming the protocol, quickly (kafka-python alone waits for
    ever on a TLS handshake a plaintext listener never answers), and never shows the password.
    Before, it ignored them and sent in plaintext."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(EVENT % (1, 1))
    env = {"LEADFLOW_TOPIC_PREFIX": unique_name("p"), "LEADFLOW_SECURITY_PROTOCOL": protocol,
           **SECURED[protocol]}
    started = time.monotonic()
    proc = start([str(path), "--broker", bootstrap], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = finish(proc, 90)
    assert proc.returncode == 1, (out, err)
    lines = err.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"leadflow: cannot reach broker {bootstrap} with "
                                                   f"security protocol {protocol}"), lines
    assert b"hunter2" not in out + err and out == b""
    assert time.monotonic() - started < 45
