"""A broker that refuses connections is one line within about two seconds, for every command that
talks to one (the Kafka clients alone retry a refused bootstrap for 10-30 s)."""

from __future__ import annotations

import time

import pytest

from leadflow.broker import free_port
from tests.cli.test_replay_cli import SAMPLE, leadflow


@pytest.mark.parametrize("command", [
    ["produce", str(SAMPLE), "--broker", "127.0.0.1:{port}"],
    ["report", "kafka://127.0.0.1:{port}"],
    ["topics", "create", "--broker", "127.0.0.1:{port}"],
    ["worker", "--broker", "127.0.0.1:{port}", "--web-port", "{web}"],
], ids=lambda c: c[0])
def test_connection_refused_fails_within_two_seconds(command: list[str]) -> None:
    port, web = free_port(), free_port()
    started = time.monotonic()
    done = leadflow(*(part.format(port=port, web=web) for part in command))
    took = time.monotonic() - started
    assert done.returncode == 1
    (line,) = done.stderr.decode().splitlines()
    assert line.endswith(f"127.0.0.1:{port}: connection refused"), line
    assert took < 3.5, f"{took:.1f} s (Python's start-up included)"
