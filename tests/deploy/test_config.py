"""streams.config: environment + file -> one frozen, validated Settings; every bad value reported."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lifecycle.errors import ConfigError
from streams.config import (
    ENV_VARS,
    OPTIONS,
    Secret,
    SettingsError,
    configuration_table,
    faust_kwargs,
    kafka_python_kwargs,
    load_settings,
)

SASL = {
    "LEADFLOW_SECURITY_PROTOCOL": "sasl_plaintext",
    "LEADFLOW_SASL_MECHANISM": "scram-sha-512",
    "LEADFLOW_SASL_USERNAME": "leadflow",
    "LEADFLOW_SASL_PASSWORD": "hunter2-secret",
}


def test_defaults_are_valid_and_frozen() -> None:
    settings = load_settings({})
    assert settings.broker is None
    assert settings.format == "json"
    assert settings.topics.form_fills == "lead.form_fills"
    assert settings.topics.partitions == settings.partitions == 4
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.partitions = 8  # type: ignore[misc]


def test_environment_values_are_parsed() -> None:
    settings = load_settings({
        "LEADFLOW_BROKER": "kafka://k1:9092,k2:9092", "LEADFLOW_PARTITIONS": "12",
        "LEADFLOW_APP_ID": "lf-prod", "LEADFLOW_FORMAT": "AVRO",
        "LEADFLOW_SCHEMA_REGISTRY_URL": "http://registry:8081/", "LEADFLOW_TOPIC_DLQ": "crm.dead",
        "LEADFLOW_REPLICATION_FACTOR": "3", "LEADFLOW_SECURITY_PROTOCOL": "",  # empty = unset
    })
    assert settings.broker == "k1:9092,k2:9092"
    assert settings.topics.partitions == 12 and settings.topics.app_id == "lf-prod"
    assert settings.topics.dlq == "crm.dead"
    assert settings.topics.events_by_lead == "lf-prod.events-by-lead"
    assert settings.format == "avro" and settings.schema_registry_url == "http://registry:8081"
    assert settings.replication_factor == 3 and settings.security_protocol == "PLAINTEXT"


def test_every_bad_value_is_reported_at_once_naming_its_variable() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"LEADFLOW_PARTITIONS": "zero", "LEADFLOW_FORMAT": "xml",
                       "LEADFLOW_BROKER": "not a broker", "LEADFLOW_TOPIC_ALERTS": "bad topic!",
                       "LEADFLOW_REPLICATION_FACTOR": "0", "LEADFLOW_POLICY": "/no/such/policy.toml"})
    problems = caught.value.problems
    assert len(problems) == 6
    for name in ("LEADFLOW_PARTITIONS", "LEADFLOW_FORMAT", "LEADFLOW_BROKER", "LEADFLOW_TOPIC_ALERTS",
                 "LEADFLOW_REPLICATION_FACTOR", "LEADFLOW_POLICY"):
        assert sum(p.startswith(name + "=") for p in problems) == 1, (name, problems)
    assert isinstance(caught.value, ConfigError)     # exit status 2 in the CLI
    assert "6 bad configuration values" in str(caught.value)


def test_combinations_are_checked() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"LEADFLOW_SECURITY_PROTOCOL": "SASL_SSL", "LEADFLOW_FORMAT": "avro",
                       "LEADFLOW_TOPIC_ALERTS": "lead.dlq"})
    text = str(caught.value)
    for expected in ("LEADFLOW_SASL_MECHANISM: required", "LEADFLOW_SASL_USERNAME: required",
                     "LEADFLOW_SASL_PASSWORD: required", "LEADFLOW_SCHEMA_REGISTRY_URL: required",
                     "LEADFLOW_TOPIC_DLQ: topic 'lead.dlq' is also LEADFLOW_TOPIC_ALERTS"):
        assert expected in text
    with pytest.raises(SettingsError, match="LEADFLOW_SASL_USERNAME: set, but LEADFLOW_SECURITY_PROTOCOL=PLAINTEXT"):
        load_settings({"LEADFLOW_SASL_USERNAME": "u"})


def test_a_bad_value_does_not_cause_follow_up_errors() -> None:
    env = dict(SASL, LEADFLOW_SASL_MECHANISM="GSSAPI")
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    assert caught.value.problems == ["LEADFLOW_SASL_MECHANISM='GSSAPI': expected one of PLAIN, "
                                     "SCRAM-SHA-256, SCRAM-SHA-512"]


def test_secrets_never_show() -> None:
    settings = load_settings(dict(SASL, LEADFLOW_SQL_URL="postgresql://lf:pg-secret@db/leadflow"))
    shown = repr(settings) + str(settings)
    assert "hunter2-secret" not in shown and "pg-secret" not in shown
    assert "postgresql://lf:********@db/leadflow" in shown
    assert isinstance(settings.sasl_password, Secret) and settings.sasl_password.reveal() == "hunter2-secret"
    with pytest.raises(SettingsError) as caught:
        load_settings(SASL, sasl_password="  ")
    assert "LEADFLOW_SASL_PASSWORD='********'" in str(caught.value)


def test_kafka_python_and_faust_kwargs() -> None:
    assert kafka_python_kwargs(load_settings({})) == {"security_protocol": "PLAINTEXT"}
    assert faust_kwargs(load_settings({})) == {}
    settings = load_settings(SASL)
    assert kafka_python_kwargs(settings) == {
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "leadflow", "sasl_plain_password": "hunter2-secret"}
    credentials = faust_kwargs(settings)["broker_credentials"]
    assert credentials.username == "leadflow" and credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.protocol.value == "SASL_PLAINTEXT"


def test_ssl_files_must_exist_and_come_in_pairs(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read until a client connects")
    settings = load_settings({"LEADFLOW_SECURITY_PROTOCOL": "SSL", "LEADFLOW_SSL_CAFILE": str(ca)})
    assert kafka_python_kwargs(settings) == {"security_protocol": "SSL", "ssl_check_hostname": True,
                                             "ssl_cafile": str(ca)}
    with pytest.raises(SettingsError) as caught:
        load_settings({"LEADFLOW_SECURITY_PROTOCOL": "SSL", "LEADFLOW_SSL_CAFILE": str(tmp_path / "x.pem"),
                       "LEADFLOW_SSL_CERTFILE": str(ca)})
    assert caught.value.problems == [
        f"LEADFLOW_SSL_CAFILE='{tmp_path / 'x.pem'}': no such file",
        "LEADFLOW_SSL_CERTFILE and LEADFLOW_SSL_KEYFILE: give both or neither"]


def test_config_file_with_environment_and_overrides_winning(tmp_path: Path) -> None:
    path = tmp_path / "leadflow.toml"
    path.write_text('broker = "file-broker:9092"\npartitions = 6\nformat = "json"\n'
                    '[topics]\nform_fills = "crm.forms"\n[sinks]\nwebhook_url = "https://hooks.test/x"\n')
    settings = load_settings({"LEADFLOW_PARTITIONS": "8"}, config_file=path)
    assert settings.broker == "file-broker:9092" and settings.partitions == 8
    assert settings.topics.form_fills == "crm.forms" and settings.webhook_url == "https://hooks.test/x"
    assert settings.sources["partitions"] == "env" and settings.sources["broker"] == "file"
    assert load_settings({}, config_file=path, broker="cli:1").broker == "cli:1"
    assert load_settings({"LEADFLOW_CONFIG": str(path)}).partitions == 6


def test_config_file_errors_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('partitions = "many"\nbrokers = "typo:9092"\n[security]\nprotocol = true\n')
    with pytest.raises(SettingsError) as caught:
        load_settings({}, config_file=path)
    text = str(caught.value)
    assert f"partitions (config file {path})='many': not an integer" in text
    assert "brokers (config file" in text and "unknown key" in text
    assert "security.protocol (config file" in text and "got bool" in text
    with pytest.raises(SettingsError, match="no such file"):
        load_settings({}, config_file=tmp_path / "missing.toml")
    path.write_text("partitions = [")
    with pytest.raises(SettingsError, match="bad.toml"):
        load_settings({}, config_file=path)


def test_every_option_is_documented_once() -> None:
    assert len(set(ENV_VARS)) == len(ENV_VARS) == len(OPTIONS)
    assert all(name.startswith("LEADFLOW_") for name in ENV_VARS)
    table = configuration_table()
    for name in ENV_VARS:
        assert table.count(f"`{name}`") == 1


def test_urls_hosts_ports_and_numbers_are_checked_and_every_problem_is_listed_at_once() -> None:
    env = {
        "LEADFLOW_SQL_URL": "mysql://lf:sql-secret@db/leadflow",
        "LEADFLOW_SCHEMA_REGISTRY_URL": "http://reg:reg-secret@registry:99999",
        "LEADFLOW_WEBHOOK_URL": "ftp://hooks.example/x?token=hook-secret",
        "LEADFLOW_WEB_HOST": "bad host",
        "LEADFLOW_WEB_BIND": "not/an/address",
        "LEADFLOW_PARTITIONS": "12345678901234567890",
        "LEADFLOW_REPLICATION_FACTOR": "40000",
        "LEADFLOW_BROKER": "bad host:9092",
        "LEADFLOW_WEB_TOKEN": "short",
        "LEADFLOW_WEB_DEBUG_VIEWS": "maybe",
        "LEADFLOW_FUTURE_MARGIN": "soon",
    }
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    problems = caught.value.problems
    assert len(problems) == len(env), problems
    for name in env:
        assert sum(p.startswith(name + "=") for p in problems) == 1, (name, problems)
    text = str(caught.value)
    for secret in ("sql-secret", "reg-secret", "hook-secret", "short"):
        assert secret not in text
    assert "LEADFLOW_SCHEMA_REGISTRY_URL='http://reg:********@registry:99999': the port" in text
    assert "LEADFLOW_PARTITIONS='12345678901234567890': not an integer from 1 to 10000" in text


@pytest.mark.parametrize("url", ["sqlite:///", "sqlite://", "sqlite://host/x.db", "mysql://u@h/db",
                                 "postgresql://u:p%zz@h/db", "postgresql://h:0/db", "db.sqlite"])
def test_sql_urls_outside_sqlite_and_postgresql_are_refused(url: str) -> None:
    with pytest.raises(SettingsError, match="LEADFLOW_SQL_URL"):
        load_settings({"LEADFLOW_SQL_URL": url})


@pytest.mark.parametrize("url", ["sqlite:///leadflow.db", "sqlite:////var/lib/lf.db", "postgresql:///test",
                                 "postgresql://lf:p%40ss@127.0.0.1:5432/test?sslmode=require",
                                 "postgres://db/x"])
def test_sql_urls_of_both_databases_are_accepted(url: str) -> None:
    assert load_settings({"LEADFLOW_SQL_URL": url}).sql_url == url


def test_web_settings_and_the_future_margin() -> None:
    settings = load_settings({})
    assert (settings.web_bind, settings.web_token, settings.web_debug_views) == ("127.0.0.1", None, False)
    assert settings.future_margin_ms == 3_600_000
    settings = load_settings({"LEADFLOW_WEB_BIND": "0.0.0.0", "LEADFLOW_WEB_TOKEN": "t" * 32,
                              "LEADFLOW_WEB_DEBUG_VIEWS": "1", "LEADFLOW_FUTURE_MARGIN": "90s"})
    assert settings.web_bind == "0.0.0.0" and settings.web_debug_views is True
    assert isinstance(settings.web_token, Secret) and settings.web_token.reveal() == "t" * 32
    assert settings.future_margin_ms == 90_000
    assert "t" * 32 not in repr(settings)
    assert load_settings({"LEADFLOW_WEB_BIND": "::1"}).web_bind == "::1"


def test_every_url_is_shown_redacted() -> None:
    settings = load_settings({
        "LEADFLOW_SCHEMA_REGISTRY_URL": "http://reg:reg-secret@registry:8081",
        "LEADFLOW_SQL_URL": "postgresql://lf@db/leadflow?password=sql-secret",
        "LEADFLOW_WEBHOOK_URL": "https://hooks.example/x?token=hook-secret",
    })
    shown = repr(settings) + str(settings)
    for secret in ("reg-secret", "sql-secret", "hook-secret"):
        assert secret not in shown
    assert "http://reg:********@registry:8081" in shown
    assert "password=********" in shown and "token=********" in shown
    assert settings.schema_registry_url == "http://reg:reg-secret@registry:8081"   # the client gets it


# -- resource bounds: a hostile file or value gives a message of a screen, never of megabytes -------------

def test_a_config_file_with_thousands_of_unknown_keys_names_five_and_counts_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "many.toml"
    path.write_text("".join(f"k{i} = 1\n" for i in range(50_000)))
    with pytest.raises(SettingsError) as caught:
        load_settings({}, config_file=path)
    text = str(caught.value)
    assert "k0 (config file" in text and "k4 (config file" in text and "k5 (config file" not in text
    assert f"config file {path}: 49,995 more unknown keys" in text
    assert len(text) < 5_000


def test_a_config_file_over_a_megabyte_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.toml"
    path.write_text('broker = "' + "x" * 2_000_000 + '"\n')
    with pytest.raises(SettingsError, match=r"over 1,048,576 bytes") as caught:
        load_settings({}, config_file=path)
    assert len(str(caught.value)) < 500


def test_a_long_bad_value_is_echoed_truncated_and_many_problems_are_capped() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"LEADFLOW_PARTITIONS": "9" * 100_000 + "x"})
    text = str(caught.value)
    assert "100,001 characters" in text and len(text) < 500
    many = SettingsError([f"problem {i}" for i in range(1000)])
    assert str(many).startswith("1,000 bad configuration values:")
    assert "problem 19" in str(many) and "problem 20\n" not in str(many) and str(many).endswith("… and 980 more")


def test_leadflow_config_with_a_huge_file_is_one_short_message() -> None:
    import os
    import subprocess
    import sys
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
        f.write("".join(f"key_{i} = {i}\n" for i in range(300_000)))
        f.flush()
        done = subprocess.run([sys.executable, "-m", "leadflow", "config"], capture_output=True, text=True,
                              env={**os.environ, "LEADFLOW_CONFIG": f.name}, timeout=60)
    assert done.returncode == 2
    assert "over 1,048,576 bytes" in done.stderr and len(done.stderr) < 1_000
