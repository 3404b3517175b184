"""``leadflow topics create`` (the compose ``topics`` job) and ``leadflow config``."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from click.testing import CliRunner

from leadflow.cli_deploy import config_command, create_topics, topics
from streams.config import load_settings
from streams.topics import TopicError


def _env(prefix: str, bootstrap: str, partitions: int = 3) -> dict[str, str]:
    return {"LEADFLOW_BROKER": bootstrap, "LEADFLOW_APP_ID": prefix, "LEADFLOW_TOPIC_PREFIX": prefix,
            "LEADFLOW_PARTITIONS": str(partitions)}


def test_topics_create_makes_every_topic_with_compacted_changelogs(
        bootstrap: str, unique_name: Callable[..., str]) -> None:
    prefix = unique_name("deploy")
    runner = CliRunner()
    result = runner.invoke(topics, ["create"], env=_env(prefix, bootstrap))
    assert result.exit_code == 0, result.output
    lines = dict(line.split("\t") for line in result.output.splitlines())
    assert lines[f"{prefix}.lead.form_fills"] == "3 partitions"
    assert lines[f"{prefix}.events-by-lead"] == "3 partitions"
    assert lines[f"{prefix}-leads-changelog"] == "3 partitions cleanup.policy=compact"
    assert lines[f"{prefix}.policy"] == "1 partitions cleanup.policy=compact"   # SPEC 11: one sequence
    assert len(lines) == 4 + 3 + 2 + 1 + 1
    again = runner.invoke(topics, ["create"], env=_env(prefix, bootstrap))   # idempotent
    assert again.exit_code == 0 and again.output == result.output
    other = runner.invoke(topics, ["create"], env=_env(prefix, bootstrap, partitions=5))
    assert isinstance(other.exception, TopicError) and "co-partitioned" in str(other.exception)


def test_topics_create_retries_until_the_wait_is_over() -> None:
    calls: list[str] = []

    def unreachable(bootstrap: str, *args: object, **kwargs: object) -> dict[str, int]:
        calls.append(bootstrap)
        raise TopicError(f"cannot reach broker {bootstrap}")

    settings = load_settings({"LEADFLOW_BROKER": "127.0.0.1:1"})
    with pytest.raises(TopicError, match="cannot reach broker"):
        create_topics(settings, wait=0.01, ensure=unreachable, sleep=lambda s: None)
    assert len(calls) >= 1
    with pytest.raises(TopicError, match="no broker configured"):
        create_topics(load_settings({}))


def test_config_command_validates_and_hides_secrets() -> None:
    runner = CliRunner()
    good = runner.invoke(config_command, [], env={"LEADFLOW_SQL_URL": "postgresql://u:pw-123@db/x"})
    assert good.exit_code == 0 and "pw-123" not in good.output and "u:********@db" in good.output
    bad = runner.invoke(config_command, [], env={"LEADFLOW_PARTITIONS": "-1"})
    assert "LEADFLOW_PARTITIONS='-1': must be >= 1" in str(bad.exception)


def _leadflow(*args: str, env: dict[str, str], timeout: float = 60) -> "subprocess.CompletedProcess[str]":
    import os
    import subprocess
    import sys

    clean = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    return subprocess.run([sys.executable, "-m", "leadflow", *args], capture_output=True, text=True,
                          timeout=timeout, env={**clean, **env})


BAD_ENV = {
    "LEADFLOW_SQL_URL": "mysql://lf:sql-secret@db/leadflow",
    "LEADFLOW_SCHEMA_REGISTRY_URL": "http://reg:reg-secret@registry:99999",
    "LEADFLOW_WEB_HOST": "bad host",
    "LEADFLOW_PARTITIONS": "12345678901234567890",
}


def test_leadflow_config_lists_every_bad_value_and_no_secret_with_exit_status_2() -> None:
    done = _leadflow("config", env=BAD_ENV)
    assert done.returncode == 2, done.stderr
    for name in BAD_ENV:
        assert f"{name}=" in done.stderr
    assert "sql-secret" not in done.stderr + done.stdout and "reg-secret" not in done.stderr + done.stdout
    good = _leadflow("config", env={
        "LEADFLOW_SCHEMA_REGISTRY_URL": "http://reg:reg-secret@registry:8081",
        "LEADFLOW_SQL_URL": "postgresql://lf@db/x?password=sql-secret",
        "LEADFLOW_WEBHOOK_URL": "https://hooks.example/x?token=hook-secret",
        "LEADFLOW_WEB_TOKEN": "web-secret-0123456789"})
    assert good.returncode == 0, good.stderr
    for secret in ("reg-secret", "sql-secret", "hook-secret", "web-secret"):
        assert secret not in good.stdout + good.stderr


def test_a_worker_with_a_bad_configuration_stops_before_it_creates_a_topic(
        bootstrap: str, unique_name: Callable[..., str]) -> None:
    from kafka import KafkaAdminClient

    prefix = unique_name("badcfg")
    done = _leadflow("worker", "--broker", bootstrap, "--web-port", "6999",
                     env={**BAD_ENV, "LEADFLOW_APP_ID": prefix, "LEADFLOW_TOPIC_PREFIX": prefix})
    assert done.returncode == 2, done.stderr
    assert "LEADFLOW_SQL_URL=" in done.stderr and "Traceback" not in done.stderr
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        assert not [t for t in admin.list_topics() if prefix in t]
    finally:
        admin.close()
