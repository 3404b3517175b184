"""A replay lands in SQLite and PostgreSQL, and ``leadflow report`` gives the same figures from either."""

from __future__ import annotations

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


@pytest.mark.postgres
def test_report_from_sqlite_postgresql_and_files_is_the_same(tmp_path, pg_schema):
    sqlite = f"sqlite:///{tmp_path / 'leadflow.db'}"
    args = [str(SAMPLE), "--until", "2026-06-01T00:00:00Z", "--no-show"]
    assert leadflow("replay", *args, "--out", str(tmp_path / "a"), "--sql", sqlite).returncode == 0
    assert leadflow("replay", *args, "--out", str(tmp_path / "b"), "--sql", pg_schema).returncode == 0
    reports = [leadflow("report", source, "--format", "json") for source in (str(tmp_path / "a"), sqlite, pg_schema)]
    assert all(r.returncode == 0 for r in reports), [r.stderr for r in reports]
    files, from_sqlite, from_postgres = (r.stdout for r in reports)
    assert b'"funnel"' in files or b"funnel" in files
    assert from_sqlite == files and from_postgres == files


def test_replaying_again_into_the_same_database_adds_no_row(tmp_path):
    import sqlite3

    sqlite = f"sqlite:///{tmp_path / 'leadflow.db'}"
    for _ in range(2):
        assert leadflow("replay", str(SAMPLE), "--out", str(tmp_path / "o"), "--sql", sqlite, "--no-show").returncode == 0
    with sqlite3.connect(tmp_path / "leadflow.db") as db:
        rows = db.execute("SELECT COUNT(*) FROM lead_transitions").fetchone()[0]
    assert rows == len((tmp_path / "o" / "lifecycle.jsonl").read_bytes().splitlines())
