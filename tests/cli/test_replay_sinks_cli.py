"""A replay lands in SQLite and PostgreSQL, and ``leadflow report`` gives the same figures from either."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from tests.cli.test_replay_cli import SAMPLE, leadflow

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
