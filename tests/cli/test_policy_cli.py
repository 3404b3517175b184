"""The policy's version and publication as a user sees them: ``leadflow config``, the replay
summary, ``leadflow policy publish`` — subprocesses, exit status and messages (SPEC 11)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from schemas.policy_file import load_policy
from tests.cli.test_replay_cli import ROOT, SAMPLE, leadflow, lines
from tests.kafka_helpers import consume_all

EXAMPLE = ROOT / "examples" / "policy.toml"
BAD = '[scoring]\nmql_threshold = 40\n\n[sla.first_touch]\nwithn = "4h"\n'


def bad_policy(tmp_path: Path) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(BAD)
    return path


def test_config_prints_the_policys_version(tmp_path: Path) -> None:
    version = load_policy(EXAMPLE).policy_version
    done = leadflow("config", "--policy", str(EXAMPLE))
    assert done.returncode == 0, done.stderr
    assert f"policy {EXAMPLE}: version {version}" in done.stdout.decode()
    builtin = leadflow("config")
    assert builtin.returncode == 0 and "policy <built-in defaults>: version " in builtin.stdout.decode()
    env = {**os.environ, "LEADFLOW_POLICY": str(EXAMPLE)}
    from_env = subprocess.run([sys.executable, "-m", "leadflow", "config"], env=env, cwd=ROOT,
                              capture_output=True, timeout=60)
    assert f"version {version}" in from_env.stdout.decode()


def test_config_refuses_a_bad_policy_with_status_2_naming_file_line_and_key(tmp_path: Path) -> None:
    bad = bad_policy(tmp_path)
    done = leadflow("config", "--policy", str(bad))
    assert done.returncode == 2
    err = done.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and f"{bad}:5: sla.first_touch.withn: unknown key 'withn'" in err


def test_replay_summary_and_every_record_carry_the_version(tmp_path: Path) -> None:
    version = load_policy(EXAMPLE).policy_version
    done = leadflow("replay", str(SAMPLE), "--policy", str(EXAMPLE), "--out", str(tmp_path), "--no-show")
    assert done.returncode == 0, done.stderr
    assert f"{EXAMPLE}, version {version}" in done.stdout.decode()
    written = lines(tmp_path / "lifecycle.jsonl") + lines(tmp_path / "alerts.jsonl")
    assert written and {r["policy_version"] for r in written} == {version}


def test_publish_refuses_a_bad_policy_before_touching_the_broker(tmp_path: Path) -> None:
    bad = bad_policy(tmp_path)
    done = leadflow("policy", "publish", str(bad), "--broker", "127.0.0.1:1")
    assert done.returncode == 2
    err = done.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and f"{bad}:5: sla.first_touch.withn" in err
    missing = leadflow("policy", "publish", str(tmp_path / "nope.toml"), "--broker", "127.0.0.1:1")
    assert missing.returncode == 2 and "nope.toml" in missing.stderr.decode()


def test_publish_needs_a_broker(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LEADFLOW_BROKER"}
    done = subprocess.run([sys.executable, "-m", "leadflow", "policy", "publish", str(EXAMPLE)], env=env,
                          cwd=ROOT, capture_output=True, timeout=60)
    assert done.returncode == 2 and "no broker" in done.stderr.decode()


def test_publish_writes_the_files_text_under_key_policy(bootstrap: str, unique_name: Callable[..., str]) -> None:
    app_id = unique_name("pub")
    env = {**os.environ, "LEADFLOW_APP_ID": app_id}
    done = subprocess.run([sys.executable, "-m", "leadflow", "policy", "publish", str(EXAMPLE), "--broker", bootstrap],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    version = load_policy(EXAMPLE).policy_version
    assert done.stdout.strip() == f"published {EXAMPLE} version {version} to {app_id}.policy at offset 0"
    (record,) = consume_all(bootstrap, f"{app_id}.policy", expected_count=1, timeout=10)
    assert (record.key, record.value, record.partition) == (b"policy", EXAMPLE.read_bytes(), 0)
