"""A replay lands in SQLite and PostgreSQL, and ``leadflow report`` gives the same figures from either; what a
sink cannot store is dead-lettered and counted, in bounded time, Ctrl-C included."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid

import psycopg
import pytest

from tests.cli.test_replay_cli import SAMPLE, leadflow, lines

PG = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def pg_schema():
    name = f"lf_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    yield f"{PG}?options=-csearch_path%3D{name}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {name} CASCADE")


ATTRIBUTION_SAMPLE = SAMPLE.with_name("sample-events-attribution.jsonl")
GRADING_POLICY = SAMPLE.parent / "policy-grading.toml"


@pytest.mark.postgres
def test_report_from_sqlite_postgresql_kafka_and_files_is_the_same(tmp_path, pg_schema, bootstrap, unique_name):
    """One replay (both samples, under the grading policy) read back from its files, SQLite, PostgreSQL
    and the output topics gives the same report, by-channel, by-campaign, by-grade and by-week included."""
    from streams.topics import ensure_topics
    from tests.kafka_helpers import produce

    sqlite = f"sqlite:///{tmp_path / 'leadflow.db'}"
    args = [str(SAMPLE), str(ATTRIBUTION_SAMPLE), "--policy", str(GRADING_POLICY), "--until", "2026-07-01T00:00:00Z",
            "--no-show"]
    assert leadflow("replay", *args, "--out", str(tmp_path / "a"), "--sql", sqlite).returncode == 0
    assert leadflow("replay", *args, "--out", str(tmp_path / "b"), "--sql", pg_schema).returncode == 0
    lifecycle_topic, alerts_topic = unique_name("lifecycle"), unique_name("alerts")
    ensure_topics(bootstrap, [lifecycle_topic, alerts_topic], partitions=3)
    for topic, name in ((lifecycle_topic, "lifecycle.jsonl"), (alerts_topic, "alerts.jsonl")):
        lines = (tmp_path / "a" / name).read_bytes().splitlines()
        produce(bootstrap, topic, [(json.loads(line)["lead_id"], line) for line in lines])
    kafka = f"kafka://{bootstrap}?lifecycle={lifecycle_topic}&alerts={alerts_topic}"
    sources = (str(tmp_path / "a"), sqlite, pg_schema, kafka)
    reports = [leadflow("report", source, "--format", "json") for source in sources]
    assert all(r.returncode == 0 for r in reports), [r.stderr for r in reports]
    files, from_sqlite, from_postgres, from_kafka = (r.stdout for r in reports)
    assert from_sqlite == files and from_postgres == files and from_kafka == files
    data = json.loads(files)
    assert {"cpc", "paid_social", "organic", "referral", "email", "form"} <= {row["group"] for row in data["by_channel"]}
    assert {"A", "B", "C", "D"} <= {row["group"] for row in data["by_grade"]}
    assert sum(row["revenue"] for row in data["by_channel"]) > 0 and len(data["by_week"]) >= 4
    assert sum(row["leads"] for row in data["by_campaign"]) == data["leads"]


def test_replaying_again_into_the_same_database_adds_no_row(tmp_path):
    import sqlite3

    sqlite = f"sqlite:///{tmp_path / 'leadflow.db'}"
    for _ in range(2):
        assert leadflow("replay", str(SAMPLE), "--out", str(tmp_path / "o"), "--sql", sqlite, "--no-show").returncode == 0
    with sqlite3.connect(tmp_path / "leadflow.db") as db:
        rows = db.execute("SELECT COUNT(*) FROM lead_transitions").fetchone()[0]
    assert rows == len((tmp_path / "o" / "lifecycle.jsonl").read_bytes().splitlines())


# -- what a sink cannot store ----------------------------------------------------------------------

def _with_nul_reason(tmp_path):
    """The sample, with a NUL inside one disposition reason (valid JSON, refused by PostgreSQL text)."""
    data = SAMPLE.read_bytes()
    assert b'"reason":"student"' in data
    path = tmp_path / "events.jsonl"
    path.write_bytes(data.replace(b'"reason":"student"', b'"reason":"stu\\u0000dent"', 1))
    number = next(i for i, line in enumerate(path.read_bytes().splitlines(), start=1) if b"stu\\u0000dent" in line)
    return path, number


@pytest.mark.postgres
def test_a_record_postgresql_refuses_is_dead_lettered_and_the_rest_of_its_batch_stored(tmp_path, pg_schema):
    events, number = _with_nul_reason(tmp_path)
    out = tmp_path / "out"
    done = leadflow("replay", str(events), "--out", str(out), "--sql", pg_schema, "--no-show")
    assert done.returncode == 0, done.stderr
    refused = [d for d in lines(out / "dlq.jsonl") if d["error"] == "sink_refused"]
    assert len(refused) == 1
    (dead,) = refused
    assert (dead["source_topic"], dead["source_partition"], dead["source_offset"]) == (str(events), None, number)
    assert "NUL" in dead["detail"]
    summary = done.stdout.decode()
    assert re.search(r"sink_refused\s+1\b", summary), summary
    transitions = lines(out / "lifecycle.jsonl")
    with psycopg.connect(pg_schema) as db:
        stored = {r for (r,) in db.execute("SELECT transition_id FROM lead_transitions")}
        errors = [r for (r,) in db.execute("SELECT error FROM dlq_records")]
    nul = [t["transition_id"] for t in transitions if t["reason"] == "stu\x00dent"]
    assert len(nul) == 1 and stored == {t["transition_id"] for t in transitions} - set(nul)
    assert errors.count("sink_refused") == 1


def _wait(check, timeout):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_a_replay_with_a_webhook_that_never_answers_ends_in_bounded_time_and_counts_its_dead_letters(
    tmp_path, monkeypatch
):
    from leadflow.replay import WEBHOOK_DEADLINE, WEBHOOK_GIVE_UP_AFTER
    from tests.sinks.conftest import RawServer

    server = RawServer("silent")
    try:
        started = time.monotonic()
        monkeypatch.setenv("LEADFLOW_WEBHOOK_SECRET", "s3cr3t")
        done = leadflow("replay", str(SAMPLE), "--out", str(tmp_path), "--webhook", server.url, "--no-show")
        took = time.monotonic() - started
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    assert took < WEBHOOK_GIVE_UP_AFTER + WEBHOOK_DEADLINE + 5, took
    alerts = {a["alert_id"] for a in lines(tmp_path / "alerts.jsonl")}
    dead = [d for d in lines(tmp_path / "dlq.jsonl") if d["error"] == "webhook_failed"]
    assert sorted(json.loads(base64.b64decode(d["original"]))["alert_id"] for d in dead) == sorted(alerts)
    assert server.requests >= 4
    summary = done.stdout.decode()
    assert re.search(rf"webhook_failed\s+{len(alerts)}\b", summary), summary


def test_ctrl_c_dead_letters_every_alert_the_webhook_still_holds(tmp_path):
    from tests.cli.test_replay_cli import SCRIPT
    from tests.sinks.conftest import RawServer

    server = RawServer("silent")
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "leadflow"]
    proc = subprocess.Popen([*command, "replay", str(SAMPLE), "--out", str(tmp_path), "--webhook", server.url,
                             "--no-show"], env={**os.environ, "LEADFLOW_WEBHOOK_SECRET": "s3cr3t"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as a terminal would
    try:
        _wait(lambda: server.requests >= 4, timeout=30)    # every worker is stuck on a silent server
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.stop()
    assert proc.returncode == 130 and b"stopped by SIGINT" in stderr, stderr
    assert took < 5, took
    # the interrupted run publishes no output files, only what the webhook could not deliver
    assert not (tmp_path / "alerts.jsonl").exists()
    dead = lines(tmp_path / "dlq.interrupted.jsonl")
    said = next(l for l in stderr.decode().splitlines() if "did not take" in l)
    assert said.startswith(f"leadflow: {len(dead)} records") and len(dead) >= 4
    ids = [json.loads(base64.b64decode(d["original"]))["alert_id"] for d in dead]
    assert {d["error"] for d in dead} == {"webhook_failed"} and len(set(ids)) == len(ids)
    complete = leadflow("replay", str(SAMPLE), "--out", str(tmp_path / "whole"), "--no-show")
    assert complete.returncode == 0 and set(ids) <= {a["alert_id"] for a in lines(tmp_path / "whole" / "alerts.jsonl")}
