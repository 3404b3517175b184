"""SqlSink beyond the contract: every record type, the ``leads`` current-state table, migrations,
idempotent re-adds (row counts), batching — on SQLite and on PostgreSQL alike."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from sinks.base import Position, RecordRejected, SinkError
from lifecycle.records import LifecycleRecord
from sinks.sql import (
    ALERT_COLUMNS,
    MIGRATIONS,
    TRANSITION_COLUMNS,
    SchemaError,
    SqlSink,
    alert_row,
    connect,
    migrate,
    schema_version,
    transition_row,
)
from tests.sinks.sample_records import DAY, HOUR, PG_BASE, T0, fair_clock_alerts, make_alert, make_dlq, make_transition


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'sink.db'}"
    else:
        yield request.getfixturevalue("postgres_url")


ATTRIBUTED = {"first_channel": "cpc", "first_campaign": "brand", "grade": "B"}
MQL_TOUCH = {"mql_channel": "cpc", "mql_campaign": "brand"}


def journey(lead: str = "L1") -> list:
    """new -> mql (same millisecond, one hand-raiser form) -> sal -> recycled."""
    return [
        make_transition(lead, None, "new", at=T0, time_in_previous=None, **ATTRIBUTED),
        make_transition(lead, "new", "mql", at=T0, owner_id="rep-1", team="emea", score=0, **ATTRIBUTED, **MQL_TOUCH),
        make_transition(lead, "mql", "sal", at=T0 + HOUR, owner_id="rep-1", team="emea", time_in_previous=HOUR,
                        event_type="sales_touch", **ATTRIBUTED, **MQL_TOUCH),
        make_transition(lead, "sal", "recycled", at=T0 + 3 * DAY, owner_id="rep-1", team="emea",
                        time_in_previous=3 * DAY - HOUR, event_type="sales_disposition", reason="no_budget", score=0,
                        **ATTRIBUTED, **MQL_TOUCH),
    ]


def test_migrates_an_empty_database_to_the_latest_version(sql_url: str) -> None:
    with SqlSink(sql_url) as sink:
        assert sink.version == MIGRATIONS[-1].version
        for table in ("lead_transitions", "lead_alerts", "leads", "dlq_records"):
            assert sink.count(table) == 0
    with SqlSink(sql_url) as again:  # re-opening an up-to-date database applies nothing
        assert again.version == MIGRATIONS[-1].version
    dialect, conn = connect(sql_url)
    cur = conn.cursor()
    cur.execute("SELECT version FROM schema_version ORDER BY version")
    assert [v for (v,) in cur.fetchall()] == [m.version for m in MIGRATIONS]
    conn.close()


def write_before_policy_versions(sql_url: str) -> tuple:
    """A database at the schema before ``policy_version`` holding one transition and one alert,
    written with the columns it had (as an older leadflow wrote them)."""
    version = next(m.version for m in MIGRATIONS if "policy_version" in m.description) - 1
    transition, alert = make_transition(), make_alert()
    dialect, conn = connect(sql_url)
    assert migrate(conn, dialect, MIGRATIONS[:version]) == version
    old_transition = TRANSITION_COLUMNS[: TRANSITION_COLUMNS.index("policy_version")]
    old_alert = ALERT_COLUMNS[: ALERT_COLUMNS.index("policy_version")]
    ph = dialect.placeholder
    cur = conn.cursor()
    cur.execute(f"INSERT INTO lead_transitions ({', '.join(old_transition)}) "
                f"VALUES ({', '.join([ph] * len(old_transition))})", transition_row(transition)[: len(old_transition)])
    cur.execute(f"INSERT INTO lead_alerts ({', '.join(old_alert)}) VALUES ({', '.join([ph] * len(old_alert))})",
                alert_row(alert)[: len(old_alert)])
    conn.commit()
    conn.close()
    return transition, alert


#: The columns of ``lead_transitions`` before migration 4 (the SPEC section 10 columns).
V1_TRANSITION_COLUMNS = TRANSITION_COLUMNS[:13]


def write_as_before(sql_url: str, migrations: int, record: LifecycleRecord) -> None:
    """A database at schema version ``migrations`` holding ``record`` as a sink of that version wrote it."""
    with SqlSink(sql_url, migrations=MIGRATIONS[:migrations]) as old:
        assert old.version == migrations
    dialect, conn = connect(sql_url)
    ph = ", ".join([dialect.placeholder] * len(V1_TRANSITION_COLUMNS))
    conn.cursor().execute(f"INSERT INTO lead_transitions ({', '.join(V1_TRANSITION_COLUMNS)}) VALUES ({ph})",
                          transition_row(record)[:len(V1_TRANSITION_COLUMNS)])
    conn.commit()
    conn.close()


def test_migrates_from_an_older_version_keeping_rows(sql_url: str) -> None:
    write_as_before(sql_url, 1, make_transition())
    dialect, conn = connect(sql_url)
    assert schema_version(conn, dialect) == 1
    assert migrate(conn, dialect) == MIGRATIONS[-1].version
    conn.close()
    with SqlSink(sql_url) as sink:
        assert sink.count("lead_transitions") == 1


def test_rows_written_before_policy_versions_read_back_with_none_and_new_rows_carry_theirs(sql_url: str) -> None:
    transition, alert = write_before_policy_versions(sql_url)
    newer = dataclasses.replace(make_transition("L2"), policy_version="0123456789ab")
    newer_alert = dataclasses.replace(make_alert("L2"), policy_version="0123456789ab")
    with SqlSink(sql_url) as sink:
        assert sink.version == MIGRATIONS[-1].version
        sink.add(newer)
        sink.add(newer_alert)
        sink.flush()
        assert [t.policy_version for t in sink.transitions()] == [None, "0123456789ab"]
        assert [a.policy_version for a in sink.alerts()] == [None, "0123456789ab"]
        assert sink.transitions() == [transition, newer] and sink.alerts() == [alert, newer_alert]


def test_rows_written_before_migration_4_read_back_without_attribution(sql_url: str) -> None:
    """Old rows keep working: the section-10 columns are added nullable and read back as None."""
    old_record = make_transition("OLD", None, "new", at=T0, time_in_previous=None, transition_id="tr-old")
    write_as_before(sql_url, 3, old_record)
    won = make_transition("NEW", "opportunity", "customer", at=T0 + DAY, event_type="deal_stage_change",
                          amount=40000.5, **ATTRIBUTED, **MQL_TOUCH)
    with SqlSink(sql_url) as sink:
        assert sink.version == MIGRATIONS[-1].version
        sink.add(won)
        sink.flush()
        assert {r.transition_id: r for r in sink.transitions()} == {"tr-old": old_record, won.transition_id: won}
        assert sink.leads()["NEW"]["grade"] == "B"


def test_round_trips_every_record_type(sql_url: str) -> None:
    transitions = journey()
    alert = make_alert(reason=None)
    resolved = make_alert(type_="sla_resolved", resolves=alert.alert_id, alert_id="al-resolved")
    dlq = make_dlq()
    no_key = make_dlq(2, original=b"\x00\xff binary", error="unknown_schema_id")
    with SqlSink(sql_url) as sink:
        for r in (*transitions, alert, resolved, dlq, no_key):
            sink.add(r)
        sink.flush()
        assert sorted(sink.transitions(), key=lambda r: r.transition_id) == sorted(transitions, key=lambda r: r.transition_id)
        assert sorted(sink.alerts(), key=lambda a: a.alert_id) == sorted([alert, resolved], key=lambda a: a.alert_id)
        assert sorted(sink.dlq_records(), key=lambda d: d.source_offset or 0) == [dlq, no_key]


def test_round_trips_the_fair_clock_alert_fields(sql_url: str) -> None:
    alerts = fair_clock_alerts()
    with SqlSink(sql_url) as sink:
        sink.add_all(alerts)
        sink.flush()
        back = {a.alert_id: a for a in sink.alerts()}
    assert [back[a.alert_id] for a in alerts] == alerts
    assert back["al-retracted"].evidence_event_id == "touch-1350" and back["al-resumed"].held_ms == 2 * HOUR


def test_a_database_of_version_3_gains_the_fair_clock_columns_and_its_alerts_still_read(sql_url: str) -> None:
    old_alert = make_alert("OLD")
    with SqlSink(sql_url, migrations=MIGRATIONS[:3]) as old:
        assert old.version == 3
    dialect, conn = connect(sql_url)  # a row as a version-3 sink wrote it: fourteen columns
    ph = dialect.placeholder
    conn.cursor().execute(
        f"INSERT INTO lead_alerts (alert_id, type, lead_id, sla, reason, level, stage, owner_id, team, started_at,"
        f" due_at, detected_at, overdue_by_ms, resolves_alert_id) VALUES ({', '.join([ph] * 14)})",
        (old_alert.alert_id, old_alert.type, old_alert.lead_id, old_alert.sla, old_alert.reason, old_alert.level,
         old_alert.stage, old_alert.owner_id, old_alert.team, old_alert.started_at, old_alert.due_at,
         old_alert.detected_at, old_alert.overdue_by_ms, old_alert.resolves_alert_id))
    conn.commit()
    conn.close()
    with SqlSink(sql_url) as sink:
        assert sink.version == len(MIGRATIONS)
        sink.add_all(fair_clock_alerts())
        sink.flush()
        back = {a.alert_id: a for a in sink.alerts()}
    assert back[old_alert.alert_id] == old_alert  # evidence_event_id and held_ms read as None
    assert back["al-resumed"].held_ms == 2 * HOUR


def test_leads_table_holds_the_latest_state_and_re_adds_never_move_a_lead_back(sql_url: str) -> None:
    records = journey("L1") + journey("L2")[:3]
    with SqlSink(sql_url, batch_size=3) as sink:
        for r in records:
            sink.add(r)
        sink.flush()
        for r in reversed(records):  # a replay of everything, newest first
            sink.add(r)
        sink.flush()
        sink.add(records[0])  # the "new" record, same millisecond as "mql"
        sink.add(records[1])
        sink.flush()
        leads = sink.leads()
        assert sink.count("lead_transitions") == len(records)
        assert sink.count("leads") == 2
    assert leads["L1"] == {"lead_id": "L1", "stage": "recycled", "from_stage": "sal", "owner_id": "rep-1",
                           "team": "emea", "score": 0, "stage_entered_at": T0 + 3 * DAY, "updated_at": T0 + 3 * DAY,
                           "first_channel": "cpc", "first_campaign": "brand", "mql_channel": "cpc",
                           "mql_campaign": "brand", "grade": "B"}
    assert leads["L2"]["stage"] == "sal"
    assert leads["L2"]["stage_entered_at"] == T0 + HOUR


def test_same_millisecond_records_chain_in_one_batch_and_across_batches(sql_url: str) -> None:
    new, mql = journey()[:2]
    with SqlSink(sql_url, batch_size=1) as sink:  # every add is its own transaction
        sink.add(new)
        sink.add(mql)
        assert sink.leads()["L1"]["stage"] == "mql"
        sink.add(new)
        assert sink.leads()["L1"]["stage"] == "mql"


def test_auto_flushes_at_batch_size(sql_url: str) -> None:
    with SqlSink(sql_url, batch_size=3) as sink:
        for i in range(7):
            sink.add(make_transition(f"L{i}", at=T0 + i))
        assert sink.count("lead_transitions") == 6  # two full batches written, one record buffered
        sink.flush()
        assert sink.count("lead_transitions") == 7


def test_a_refused_record_is_dropped_and_the_rest_of_its_batch_committed(sql_url: str) -> None:
    """The batch fails as a whole; written again one record at a time, only the refused one is left out."""
    ok, bad, also_ok = make_transition("ok"), make_transition("bad", score=None), make_alert("ok")  # type: ignore[arg-type]
    sink = SqlSink(sql_url)
    for offset, record in enumerate((ok, bad, also_ok)):
        sink.add(record, Position("in.jsonl", None, offset + 1))
    with pytest.raises(RecordRejected, match="NOT NULL|null value") as raised:
        sink.flush()
    assert [(r.record, r.position) for r in raised.value.rejections] == [(bad, Position("in.jsonl", None, 2))]
    assert sink.count("lead_transitions") == 1 and sink.count("lead_alerts") == 1 and sink.count("leads") == 1
    sink.close()                     # nothing left: the refused record is not held any more


def test_what_an_automatic_flush_finds_is_raised_by_the_next_flush(tmp_path: Path) -> None:
    sink = SqlSink(f"sqlite:///{tmp_path / 'sink.db'}", batch_size=2)
    huge = make_transition("huge", score=2**70)
    sink.add(huge)
    sink.add(make_transition("ok"))   # the batch is full: written here, ``add`` raises nothing
    assert sink.count("lead_transitions") == 1
    with pytest.raises(RecordRejected) as raised:
        sink.flush()
    assert raised.value.rejections[0].record == huge
    sink.close()


def test_unsupported_url_is_refused() -> None:
    with pytest.raises(SinkError, match="unsupported SQL URL"):
        SqlSink("mysql://root:hunter2@localhost/x")
    with pytest.raises(SinkError) as info:
        SqlSink("mysql://root:hunter2@localhost/x")
    assert "hunter2" not in str(info.value)


def test_a_connection_error_never_quotes_the_password(postgres_url: str) -> None:
    base = postgres_url.split("?")[0].replace("postgresql://postgres@", "")   # host:port/db
    for url in (f"postgresql://postgres:p%zzsecret@{base}",                  # psycopg quotes the token
                f"postgresql://nobody:pw-secret@{base}?password=other-secret&sslmode=disable"):
        with pytest.raises(SinkError) as info:
            SqlSink(url)
        shown = str(info.value) + repr(info.value) + repr(info.value.__cause__) + repr(info.value.__context__)
        assert "secret" not in shown, shown
        assert "cannot connect to postgresql://" in shown


# -- reading only (leadflow report): nothing created, nothing migrated; unknown versions refused ----------

def tables_of(sql_url: str) -> set[str]:
    if sql_url.startswith("sqlite:///"):
        import sqlite3

        path = sql_url.removeprefix("sqlite:///")
        if not Path(path).exists():
            return set()
        with sqlite3.connect(path) as conn:
            return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    import psycopg

    with psycopg.connect(sql_url) as conn:
        return {name for (name,) in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")}


def test_a_reader_creates_nothing_in_a_missing_or_empty_database(sql_url: str) -> None:
    expected = "no such database file" if sql_url.startswith("sqlite") else "no leadflow tables"
    with pytest.raises(SchemaError, match=expected):
        SqlSink(sql_url, read_only=True)
    assert tables_of(sql_url) == set()
    if sql_url.startswith("sqlite:///"):
        assert not Path(sql_url.removeprefix("sqlite:///")).exists()


def test_a_reader_reads_what_a_writer_wrote(sql_url: str) -> None:
    with SqlSink(sql_url) as sink:
        sink.add_all(journey())
    with SqlSink(sql_url, read_only=True) as reader:
        assert [r.to_stage for r in reader.transitions()] == ["new", "mql", "sal", "recycled"]


def test_a_newer_schema_is_refused_by_readers_and_writers_before_anything_is_written(sql_url: str) -> None:
    with SqlSink(sql_url):
        pass
    dialect, conn = connect(sql_url)
    conn.cursor().execute(f"INSERT INTO schema_version (version) VALUES ({dialect.placeholder})", (99,))
    conn.commit()
    conn.close()
    latest = MIGRATIONS[-1].version
    for read_only in (True, False):
        with pytest.raises(SchemaError, match=rf"schema version 99 is newer than this leadflow knows \({latest}\)"):
            SqlSink(sql_url, read_only=read_only)
    dialect, conn = connect(sql_url)
    assert schema_version(conn, dialect) == 99
    cur = conn.cursor()
    cur.execute("SELECT COUNT(*) FROM schema_version")
    assert cur.fetchone()[0] == latest + 1            # nothing migrated, nothing written
    conn.close()


def test_an_older_schema_is_refused_by_a_reader_with_the_remedy(sql_url: str) -> None:
    write_as_before(sql_url, 3, make_transition())
    with pytest.raises(SchemaError, match=r"schema version 3, older than this leadflow's .* upgrades it"):
        SqlSink(sql_url, read_only=True)
    dialect, conn = connect(sql_url)
    assert schema_version(conn, dialect) == 3
    conn.close()


@pytest.mark.postgres
def test_a_missing_postgresql_database_is_a_schema_error(pg_available: bool) -> None:
    assert pg_available, "PostgreSQL is not reachable"
    with pytest.raises(SchemaError, match="does not exist"):
        SqlSink(PG_BASE.rsplit("/", 1)[0] + "/no_such_leadflow_db", read_only=True)
