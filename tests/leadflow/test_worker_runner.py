"""``leadflow worker`` as a user starts it (leadflow/worker.py): where its policy comes from."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leadflow.broker import EmbeddedBroker, die_with_parent, free_port

ROOT = Path(__file__).resolve().parents[2]


def _banner(bootstrap: str, tmp_path: Path, env: dict[str, str], *args: str) -> str:
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "leadflow", "worker", "--broker", bootstrap,
                                 "--web-port", str(free_port()), *args],
                                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=die_with_parent)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and b"leadflow worker" not in log.read_bytes():
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(10)
    return next(line for line in log.read_text().splitlines() if line.startswith("leadflow worker"))


def test_leadflow_policy_is_used_when_no_policy_option_is_given(
    kafka_broker: EmbeddedBroker, tmp_path: Path, unique_name
) -> None:
    policy = tmp_path / "from-env.toml"
    policy.write_text('[sla.first_touch]\nwithin = "2h"\n')
    prefix = unique_name("pol")
    env = dict(os.environ, LEADFLOW_POLICY=str(policy), LEADFLOW_APP_ID=prefix, LEADFLOW_TOPIC_PREFIX=prefix)
    assert f"policy {policy}" in _banner(kafka_broker.bootstrap, tmp_path, env)


def test_the_policy_option_wins_over_leadflow_policy(kafka_broker: EmbeddedBroker, tmp_path: Path, unique_name) -> None:
    chosen, other = tmp_path / "chosen.toml", tmp_path / "other.toml"
    chosen.write_text("")
    other.write_text("")
    prefix = unique_name("pol")
    env = dict(os.environ, LEADFLOW_POLICY=str(other), LEADFLOW_APP_ID=prefix, LEADFLOW_TOPIC_PREFIX=prefix)
    banner = _banner(kafka_broker.bootstrap, tmp_path, env, "--policy", str(chosen))
    assert f"policy {chosen}" in banner and str(other) not in banner


@pytest.mark.kafka
def test_without_a_broker_the_worker_warns_that_the_embedded_one_keeps_nothing(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    env = {k: v for k, v in os.environ.items() if k != "LEADFLOW_BROKER"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "leadflow", "worker", "--web-port", str(free_port())],
                                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=die_with_parent)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and b"leadflow worker" not in log.read_bytes():
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, 2)           # SIGINT: the worker stops its embedded broker on the way out
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(10)
    warning, banner = log.read_text().splitlines()[:2]
    assert warning.startswith("leadflow: no --broker or LEADFLOW_BROKER: using an embedded Tansu broker at 127.0.0.1:")
    assert "keeps everything in memory" in warning and "gone when this command ends" in warning
    assert banner.startswith("leadflow worker leadflow: embedded broker 127.0.0.1:"), banner


@pytest.mark.parametrize("disk", ["read-only", "full"])
def test_a_data_directory_it_cannot_write_is_one_line_before_anything_starts(disk: str, tmpfs) -> None:
    if disk == "read-only":
        data_dir, why = tmpfs("1m", ro=True), "Read-only file system"
    else:
        data_dir, why = tmpfs("64k"), "the disk is full"
        (data_dir / "filler").write_bytes(b"\0" * 60 * 1024)
    done = subprocess.run([sys.executable, "-m", "leadflow", "worker", "--broker", "127.0.0.1:1", "--web-port",
                           str(free_port()), "--data-dir", str(data_dir)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"leadflow: --data-dir {data_dir}: cannot write there: {why}"]
    assert sorted(p.name for p in data_dir.iterdir()) == ([] if disk == "read-only" else ["filler"])
