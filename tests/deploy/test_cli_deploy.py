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
    assert len(lines) == 4 + 3 + 2 + 1
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
