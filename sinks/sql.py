"""SQL sink: lifecycle, alerts and DLQ records into SQLite (stdlib) or PostgreSQL (psycopg 3).

Tables (created and migrated by the sink: ``schema_version`` + the ordered ``MIGRATIONS``):

- ``lead_transitions`` — one row per lifecycle record, PK ``transition_id``;
- ``lead_alerts``      — one row per alert, PK ``alert_id``;
- ``leads``            — current state per lead, upserted from lifecycle records (latest
  ``occurred_at`` wins; on a tie, the record that continues from the stored stage wins, so a
  re-added older record of the same millisecond never moves a lead back);
- ``dlq_records``      — PK ``dlq_id`` (``sinks.base.record_id``).

Times are epoch milliseconds (BIGINT), as in ``lifecycle.records``. Writes are idempotent (``ON
CONFLICT DO NOTHING`` / guarded upsert) and batched: ``add`` buffers, ``flush`` writes the buffer with
one ``executemany`` per table inside ONE transaction, and ``add`` flushes by itself at ``batch_size``
(what that flush finds is reported by the next ``flush``).

Failures are the driver's, mapped (``classify``) the way eventsourcing's ``DataError`` /
``OperationalError`` split them: a value the database will not take (PostgreSQL: a NUL in text, an
integer out of range; SQLite: an integer beyond 64 bits, a string or blob too big; either: a
constraint) is the record's fault. Then the batch is written again one record at a time, each under
a savepoint, in one transaction: the refused records are dropped and raised as ``RecordRejected``,
the rest is committed. Anything else (database down, locked, read-only, disk full, a dropped
connection) is the store's: the transaction is rolled back, the buffer kept, ``StoreUnavailable``
raised, and the next flush reconnects if it must. An error nobody recognises counts as the store's,
so no record is ever given up on a guess.

URLs: ``sqlite:///relative/or/absolute/path.db`` (``sqlite:///:memory:`` too) or
``postgresql://user@host:port/db`` — any libpq URI; pick a schema with
``?options=-csearch_path%3Dmy_schema``.

``SqlSink(url, read_only=True)`` (``leadflow report``) creates and migrates nothing: a missing
database, one without leadflow's tables or at another schema version raises :class:`SchemaError`.
A database at a version newer than ``MIGRATIONS`` is refused by writers too, before anything is written.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from lifecycle.errors import ConfigError
from lifecycle.records import AlertRecord, DlqRecord, LifecycleRecord, Record
from schemas.secrets import redact_text, redact_url
from sinks.base import (
    Position,
    RecordRejected,
    Rejection,
    Sink,
    SinkClosed,
    SinkError,
    SinkFull,
    StoreUnavailable,
    record_id,
)

DEFAULT_BATCH_SIZE: Final = 1000


class SchemaError(SinkError, ConfigError):
    """The database is not one this code can use as it is: missing, without leadflow's tables, or at
    a schema version it does not know (exit status 2)."""


@dataclass(frozen=True)
class Dialect:
    """What differs between SQLite and PostgreSQL for this sink."""

    name: str
    placeholder: str
    blob: str


SQLITE: Final = Dialect("sqlite", "?", "BLOB")
POSTGRESQL: Final = Dialect("postgresql", "%s", "BYTEA")


@dataclass(frozen=True)
class Migration:
    """One schema step; ``statements`` builds the DDL for a dialect. Never edit a released step:
    append a new one."""

    version: int
    description: str
    statements: Callable[[Dialect], Sequence[str]]


def _v1_tables(d: Dialect) -> Sequence[str]:
    return (
        """CREATE TABLE lead_transitions (
            transition_id TEXT PRIMARY KEY,
            lead_id TEXT NOT NULL,
            from_stage TEXT,
            to_stage TEXT NOT NULL,
            trigger_event_id TEXT NOT NULL,
            trigger_event_type TEXT NOT NULL,
            occurred_at BIGINT NOT NULL,
            owner_id TEXT,
            team TEXT,
            score INTEGER NOT NULL,
            skipped_stages TEXT NOT NULL,
            time_in_previous_stage_ms BIGINT,
            reason TEXT)""",
        """CREATE TABLE lead_alerts (
            alert_id TEXT PRIMARY KEY,
            type TEXT NOT NULL,
            lead_id TEXT NOT NULL,
            sla TEXT,
            reason TEXT,
            level INTEGER NOT NULL,
            stage TEXT NOT NULL,
            owner_id TEXT,
            team TEXT,
            started_at BIGINT,
            due_at BIGINT,
            detected_at BIGINT NOT NULL,
            overdue_by_ms BIGINT NOT NULL,
            resolves_alert_id TEXT)""",
        """CREATE TABLE leads (
            lead_id TEXT PRIMARY KEY,
            stage TEXT NOT NULL,
            from_stage TEXT,
            owner_id TEXT,
            team TEXT,
            score INTEGER NOT NULL,
            stage_entered_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL)""",
        f"""CREATE TABLE dlq_records (
            dlq_id TEXT PRIMARY KEY,
            error TEXT NOT NULL,
            detail TEXT NOT NULL,
            source_topic TEXT NOT NULL,
            source_partition INTEGER,
            source_offset BIGINT,
            record_key {d.blob},
            original {d.blob} NOT NULL)""",
    )


def _v2_indexes(d: Dialect) -> Sequence[str]:
    return (
        "CREATE INDEX lead_transitions_by_lead ON lead_transitions (lead_id, occurred_at)",
        "CREATE INDEX lead_alerts_by_lead ON lead_alerts (lead_id, sla, started_at)",
        "CREATE INDEX leads_by_stage ON leads (stage, team)",
    )


def _v3_arrival_order(d: Dialect) -> Sequence[str]:
    """Rows are read back in the order they were written, which is the engine's processing order:
    two records of one lead can share a millisecond (a lead's creation and its first move) and late
    events arrive out of time order, so ordering by time would not give back what happened.
    SQLite keeps that order in ``rowid``; PostgreSQL gets a sequence column."""
    if d.name == "sqlite":
        return ()
    return (
        "ALTER TABLE lead_transitions ADD COLUMN seq BIGSERIAL",
        "ALTER TABLE lead_alerts ADD COLUMN seq BIGSERIAL",
    )


def _v4_attribution(d: Dialect) -> Sequence[str]:
    """SPEC section 10: attribution, grade and deal amount on every stage change, and the lead's
    current attribution and grade in ``leads``. Nullable, so rows written before stay as they were."""
    real = "REAL" if d.name == "sqlite" else "DOUBLE PRECISION"
    texts = ("first_channel", "first_campaign", "mql_channel", "mql_campaign", "grade")
    return (
        *(f"ALTER TABLE lead_transitions ADD COLUMN {c} TEXT" for c in texts),
        f"ALTER TABLE lead_transitions ADD COLUMN amount {real}",
        *(f"ALTER TABLE leads ADD COLUMN {c} TEXT" for c in texts),
    )


def _v5_fair_clock_alerts(d: Dialect) -> Sequence[str]:
    """SPEC 9: ``sla_retracted`` names the late event that proves its alert false, ``sla_resumed``
    says how long the hold lasted. Rows written before stay valid (both columns null)."""
    return (
        "ALTER TABLE lead_alerts ADD COLUMN evidence_event_id TEXT",
        "ALTER TABLE lead_alerts ADD COLUMN held_ms BIGINT",
    )


def _v6_policy_version(d: Dialect) -> Sequence[str]:
    """Which policy judged each record (SPEC 11); rows written before stay NULL."""
    return (
        "ALTER TABLE lead_transitions ADD COLUMN policy_version TEXT",
        "ALTER TABLE lead_alerts ADD COLUMN policy_version TEXT",
    )


#: Ordered; the sink applies every step above the stored ``schema_version``, each in a transaction.
MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(1, "tables: lead_transitions, lead_alerts, leads, dlq_records", _v1_tables),
    Migration(2, "indexes for per-lead and per-stage reads", _v2_indexes),
    Migration(3, "read rows back in arrival order", _v3_arrival_order),
    Migration(4, "attribution, grade and deal amount (SPEC section 10)", _v4_attribution),
    Migration(5, "alerts: evidence_event_id, held_ms (sla_retracted, sla_resumed)", _v5_fair_clock_alerts),
    Migration(6, "policy_version on transitions and alerts (SPEC 11)", _v6_policy_version),
)

TRANSITION_COLUMNS: Final = (
    "transition_id", "lead_id", "from_stage", "to_stage", "trigger_event_id", "trigger_event_type",
    "occurred_at", "owner_id", "team", "score", "skipped_stages", "time_in_previous_stage_ms", "reason",
    "first_channel", "first_campaign", "mql_channel", "mql_campaign", "grade", "amount",
    "policy_version",
)
ALERT_COLUMNS: Final = (
    "alert_id", "type", "lead_id", "sla", "reason", "level", "stage", "owner_id", "team", "started_at",
    "due_at", "detected_at", "overdue_by_ms", "resolves_alert_id", "evidence_event_id", "held_ms",
    "policy_version",
)
LEAD_COLUMNS: Final = (
    "lead_id", "stage", "from_stage", "owner_id", "team", "score", "stage_entered_at", "updated_at",
    "first_channel", "first_campaign", "mql_channel", "mql_campaign", "grade",
)
DLQ_COLUMNS: Final = (
    "dlq_id", "error", "detail", "source_topic", "source_partition", "source_offset", "record_key", "original",
)


def _insert_ignoring(table: str, columns: Sequence[str], key: str, ph: str) -> str:
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([ph] * len(columns))}) "
        f"ON CONFLICT ({key}) DO NOTHING"
    )


def _upsert_lead(ph: str) -> str:
    updates = ", ".join(f"{c} = excluded.{c}" for c in LEAD_COLUMNS[1:])
    return (
        f"INSERT INTO leads ({', '.join(LEAD_COLUMNS)}) VALUES ({', '.join([ph] * len(LEAD_COLUMNS))}) "
        f"ON CONFLICT (lead_id) DO UPDATE SET {updates} "
        "WHERE excluded.updated_at > leads.updated_at "
        "OR (excluded.updated_at = leads.updated_at AND excluded.from_stage = leads.stage)"
    )


def transition_row(r: LifecycleRecord) -> tuple[Any, ...]:
    return (r.transition_id, r.lead_id, r.from_stage, r.to_stage, r.trigger_event_id, r.trigger_event_type,
            r.occurred_at, r.owner_id, r.team, r.score, ",".join(r.skipped_stages),
            r.time_in_previous_stage_ms, r.reason, r.first_channel, r.first_campaign, r.mql_channel,
            r.mql_campaign, r.grade, r.amount, r.policy_version)


def alert_row(r: AlertRecord) -> tuple[Any, ...]:
    return (r.alert_id, r.type, r.lead_id, r.sla, r.reason, r.level, r.stage, r.owner_id, r.team,
            r.started_at, r.due_at, r.detected_at, r.overdue_by_ms, r.resolves_alert_id, r.evidence_event_id,
            r.held_ms, r.policy_version)


def lead_row(r: LifecycleRecord) -> tuple[Any, ...]:
    return (r.lead_id, r.to_stage, r.from_stage, r.owner_id, r.team, r.score, r.occurred_at, r.occurred_at,
            r.first_channel, r.first_campaign, r.mql_channel, r.mql_campaign, r.grade)


def dlq_row(r: DlqRecord) -> tuple[Any, ...]:
    return (record_id(r), r.error, r.detail, r.source_topic, r.source_partition, r.source_offset, r.key,
            r.original)


def transition_from_row(row: Sequence[Any]) -> LifecycleRecord:
    values = dict(zip(TRANSITION_COLUMNS, row))
    skipped = values["skipped_stages"]
    values["skipped_stages"] = tuple(skipped.split(",")) if skipped else ()
    return LifecycleRecord(**values)


def alert_from_row(row: Sequence[Any]) -> AlertRecord:
    return AlertRecord(**dict(zip(ALERT_COLUMNS, row)))


def dlq_from_row(row: Sequence[Any]) -> DlqRecord:
    v = dict(zip(DLQ_COLUMNS, row))
    key = v["record_key"]
    return DlqRecord(error=v["error"], detail=v["detail"], source_topic=v["source_topic"],
                     source_partition=v["source_partition"], source_offset=v["source_offset"],
                     key=bytes(key) if key is not None else None, original=bytes(v["original"]))


def _dialect_of(url: str) -> Dialect:
    if url.startswith("sqlite:///"):
        return SQLITE
    if url.startswith(("postgresql://", "postgres://")):
        return POSTGRESQL
    raise SinkError(f"unsupported SQL URL {redact_url(url)!r}: use sqlite:///PATH or postgresql://...")


#: SQLite result codes that mean "this record": too big, a constraint, a type or a range refused
_SQLITE_RECORD_FAULTS: Final = ("SQLITE_TOOBIG", "SQLITE_CONSTRAINT", "SQLITE_MISMATCH", "SQLITE_RANGE")


def classify(exc: BaseException) -> type[RecordRejected] | type[StoreUnavailable]:
    """Whose fault ``exc`` is: the record's (``RecordRejected``) or the store's (``StoreUnavailable``).

    The record's: PostgreSQL ``DataError`` (NUL in text, numeric out of range, bad encoding) and
    ``IntegrityError`` (a constraint); SQLite's too-big / constraint / mismatch / range codes; and
    a value the driver cannot convert (``OverflowError``: an integer beyond 64 bits for SQLite).
    Everything else — connection refused or lost, locks, timeouts, read-only, disk full, a table
    that is gone, an error we do not know — is the store's: retried, never given up on.
    """
    if isinstance(exc, (OverflowError, UnicodeError)):
        return RecordRejected
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", "") or ""
        if name.startswith(_SQLITE_RECORD_FAULTS) or isinstance(exc, sqlite3.IntegrityError):
            return RecordRejected
        return StoreUnavailable
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return StoreUnavailable
    if isinstance(exc, (psycopg.DataError, psycopg.IntegrityError)):
        return RecordRejected
    return StoreUnavailable


def connect(url: str, *, read_only: bool = False) -> tuple[Dialect, Any]:
    """A DB-API connection for ``url`` (autocommit off; the caller commits); ``StoreUnavailable``
    when the database cannot be reached or opened. ``read_only``: a SQLite file is opened, never
    created (``mode=ro``); a PostgreSQL session is read-only."""
    dialect = _dialect_of(url)
    if read_only and dialect is SQLITE:
        path = url.removeprefix("sqlite:///")
        if path != ":memory:" and not os.path.isfile(path):
            raise SchemaError(f"{redact_url(url)}: no such database file")
    try:
        if dialect is SQLITE:
            path = url.removeprefix("sqlite:///")
            if read_only:
                conn = sqlite3.connect(f"file:{urllib.parse.quote(path)}?mode=ro", uri=True, check_same_thread=False)
                return dialect, conn
            conn = sqlite3.connect(path, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            return dialect, conn
        import psycopg

        conn = psycopg.connect(url, connect_timeout=10)
        conn.read_only = read_only
        return dialect, conn
    except Exception as exc:
        # psycopg may quote the password (a bad percent-encoding): the message is scrubbed, and
        # raised outside this block so that no exception chain keeps the original
        problem = f"cannot connect to {redact_url(url)}: {redact_text(str(exc), url)}"
        missing = "does not exist" in str(exc)  # PostgreSQL: database "x" does not exist
    raise (SchemaError if missing else StoreUnavailable)(problem)


def schema_version(conn: Any, dialect: Dialect) -> int:
    cur = conn.cursor()
    cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    cur.execute("SELECT MAX(version) FROM schema_version")
    (version,) = cur.fetchone()
    conn.commit()
    return int(version or 0)


def stored_version(conn: Any, dialect: Dialect) -> int | None:
    """The database's schema version, creating nothing; None when it has no ``schema_version`` table."""
    cur = conn.cursor()
    if dialect is SQLITE:
        cur.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'")
    else:
        cur.execute("SELECT to_regclass('schema_version')")
    (found,) = cur.fetchone() or (None,)
    if found is None:
        conn.commit()
        return None
    cur.execute("SELECT MAX(version) FROM schema_version")
    (version,) = cur.fetchone()
    conn.commit()
    return int(version or 0)


def check_known(version: int, url: str, migrations: Sequence[Migration] = MIGRATIONS) -> None:
    """Refuse a database written by a newer leadflow: its tables may mean something else."""
    latest = max((m.version for m in migrations), default=0)
    if version > latest:
        raise SchemaError(f"{redact_url(url)}: schema version {version} is newer than this leadflow knows "
                          f"({latest}); use the leadflow that wrote it, or a newer one")


def migrate(conn: Any, dialect: Dialect, migrations: Sequence[Migration] = MIGRATIONS, url: str = "the database") -> int:
    """Apply every migration above the stored version, each in its own transaction; return the
    version reached. Safe to call on every start (a no-op when up to date). A version newer than
    ``migrations`` know raises :class:`SchemaError` before anything is written."""
    current = schema_version(conn, dialect)
    check_known(current, url, migrations)
    for step in sorted(migrations, key=lambda m: m.version):
        if step.version <= current:
            continue
        cur = conn.cursor()
        try:
            for statement in step.statements(dialect):
                cur.execute(statement)
            cur.execute(f"INSERT INTO schema_version (version) VALUES ({dialect.placeholder})", (step.version,))
            conn.commit()
        except Exception as exc:
            conn.rollback()
            raise classify(exc)(f"migration {step.version} ({step.description}) failed: {exc}") from exc
        current = step.version
    return current


def _readable_version(conn: Any, dialect: Dialect, url: str, migrations: Sequence[Migration]) -> int:
    version = stored_version(conn, dialect)
    if version is None:
        raise SchemaError(f"{redact_url(url)}: no leadflow tables (no schema_version table): "
                          "not a database a leadflow SQL sink wrote")
    check_known(version, url, migrations)
    latest = max((m.version for m in migrations), default=0)
    if version < latest:
        raise SchemaError(f"{redact_url(url)}: schema version {version}, older than this leadflow's ({latest}); "
                          "a `leadflow replay --sql` or a worker with this URL upgrades it")
    return version


class SqlSink(Sink):
    """Batched, idempotent writes of every record type; see the module docstring for the tables
    and for what a failure means."""

    def __init__(self, url: str = "sqlite:///leadflow.db", *, batch_size: int = DEFAULT_BATCH_SIZE,
                 migrations: Sequence[Migration] = MIGRATIONS, read_only: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.url = url
        self.batch_size = batch_size
        self.dialect, self._conn = connect(url, read_only=read_only)
        try:
            if read_only:
                self.version = _readable_version(self._conn, self.dialect, url, migrations)
            else:
                self.version = migrate(self._conn, self.dialect, migrations, url)
        except BaseException:
            self._conn.close()
            raise
        self._arrival = "rowid" if self.dialect.name == "sqlite" else "seq"
        ph = self.dialect.placeholder
        self._sql_transition = _insert_ignoring("lead_transitions", TRANSITION_COLUMNS, "transition_id", ph)
        self._sql_alert = _insert_ignoring("lead_alerts", ALERT_COLUMNS, "alert_id", ph)
        self._sql_dlq = _insert_ignoring("dlq_records", DLQ_COLUMNS, "dlq_id", ph)
        self._sql_lead = _upsert_lead(ph)
        self._buffer: list[tuple[Record, Position | None]] = []
        self._rejected: list[Rejection] = []    # found by a flush of ``add``, raised by the next ``flush``
        self._failing: StoreUnavailable | None = None  # the last flush failed: ``add`` waits for ``flush``
        self.closed = False

    def add(self, record: Record, position: Position | None = None) -> None:
        if self.closed:
            raise SinkClosed("add on a closed SqlSink")
        if self._failing is not None and len(self._buffer) >= self.batch_size:
            raise SinkFull(1.0, f"{len(self._buffer)} records wait for a store that failed ({self._failing})")
        self._buffer.append((record, position))
        if len(self._buffer) >= self.batch_size and self._failing is None:
            try:
                self._write()
            except StoreUnavailable as exc:
                self._failing = exc        # kept; ``flush`` tries again and says so

    def flush(self) -> None:
        """Write the buffer; ``RecordRejected`` for what the database refused (the rest is
        committed), ``StoreUnavailable`` if it failed (the buffer is kept)."""
        if self.closed:
            raise SinkClosed("flush on a closed SqlSink")
        if self._buffer:
            try:
                self._write()
            except StoreUnavailable as exc:
                self._failing = exc
                raise
        self._failing = None
        if self._rejected:
            rejected, self._rejected = self._rejected, []
            raise RecordRejected(rejected)

    def _write(self) -> None:
        """The buffer in one transaction; on a record's fault, one record at a time (module docstring)."""
        count = len(self._buffer)
        conn = self._connection()
        try:
            self._write_batch(conn.cursor(), [record for record, _ in self._buffer])
            conn.commit()
        except Exception as exc:
            self._rollback()
            if classify(exc) is StoreUnavailable:
                raise StoreUnavailable(f"writing {count} records to {redact_url(self.url)} failed: {exc}") from exc
        else:
            self._buffer.clear()
            return
        rejected: list[Rejection] = []
        cur = conn.cursor()
        try:
            if self.dialect is SQLITE:
                cur.execute("BEGIN")  # else the outermost RELEASE would commit each record alone
            for record, position in self._buffer:
                cur.execute("SAVEPOINT leadflow_record")
                try:
                    self._write_batch(cur, [record])
                except Exception as exc:
                    cur.execute("ROLLBACK TO SAVEPOINT leadflow_record")
                    if classify(exc) is StoreUnavailable:
                        raise
                    rejected.append(Rejection(record, position, f"{type(exc).__name__}: {exc}"))
                cur.execute("RELEASE SAVEPOINT leadflow_record")
            conn.commit()
        except Exception as exc:
            self._rollback()
            raise StoreUnavailable(f"writing {count} records one by one to {redact_url(self.url)} failed: "
                                   f"{exc}") from exc
        self._buffer.clear()
        self._rejected.extend(rejected)

    def _write_batch(self, cur: Any, records: Sequence[Record]) -> None:
        transitions = [r for r in records if isinstance(r, LifecycleRecord)]
        alerts = [alert_row(r) for r in records if isinstance(r, AlertRecord)]
        dlq = [dlq_row(r) for r in records if isinstance(r, DlqRecord)]
        if transitions:
            cur.executemany(self._sql_transition, [transition_row(r) for r in transitions])
            # in occurred_at order, so the guarded upsert sees each lead's records in time order
            ordered = sorted(transitions, key=lambda r: r.occurred_at)
            cur.executemany(self._sql_lead, [lead_row(r) for r in ordered])
        if alerts:
            cur.executemany(self._sql_alert, alerts)
        if dlq:
            cur.executemany(self._sql_dlq, dlq)

    def _connection(self) -> Any:
        """The connection; a new one after the store failed (a killed server connection, a
        database file that was read-only: SQLite would keep it read-only)."""
        if self._failing is not None or getattr(self._conn, "closed", False) or getattr(self._conn, "broken", False):
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - it is broken already
                pass
            self.dialect, self._conn = connect(self.url)
            self._failing = None
        return self._conn

    def _rollback(self) -> None:
        try:
            self._conn.rollback()
        except Exception:  # noqa: BLE001 - a lost connection: the server rolled back by itself
            pass

    def _release(self) -> None:
        self._conn.close()

    # -- reading back (reports, tests) ---------------------------------------------------------
    def _select(self, sql: str) -> Iterator[Sequence[Any]]:
        cur = self._conn.cursor()
        cur.execute(sql)
        yield from cur.fetchall()
        self._conn.commit()

    def transitions(self) -> list[LifecycleRecord]:
        return [transition_from_row(r) for r in self._select(
            f"SELECT {', '.join(TRANSITION_COLUMNS)} FROM lead_transitions ORDER BY {self._arrival}")]

    def alerts(self) -> list[AlertRecord]:
        return [alert_from_row(r) for r in self._select(
            f"SELECT {', '.join(ALERT_COLUMNS)} FROM lead_alerts ORDER BY {self._arrival}")]

    def dlq_records(self) -> list[DlqRecord]:
        return [dlq_from_row(r) for r in self._select(
            f"SELECT {', '.join(DLQ_COLUMNS)} FROM dlq_records ORDER BY dlq_id")]

    def leads(self) -> dict[str, dict[str, Any]]:
        return {row[0]: dict(zip(LEAD_COLUMNS, row)) for row in self._select(
            f"SELECT {', '.join(LEAD_COLUMNS)} FROM leads ORDER BY lead_id")}

    def count(self, table: str) -> int:
        if table not in ("lead_transitions", "lead_alerts", "leads", "dlq_records"):
            raise ValueError(f"unknown table {table!r}")
        return int(next(iter(self._select(f"SELECT COUNT(*) FROM {table}")))[0])

    def __repr__(self) -> str:
        return f"SqlSink({redact_url(self.url)!r}, batch_size={self.batch_size}, version={self.version})"
