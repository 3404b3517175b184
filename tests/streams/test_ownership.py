"""streams.ownership without a broker: the highest-version-wins replay.

The end-to-end checks (a worker or the broker stopped past the session timeout while events
stream) are in test_worker_stall.py.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import faust
import orjson

from streams.app import LeadTable
from streams.ownership import newest_rows
from streams.rows import version_of as row_version


def newest(batch: list[Any], stored: dict[str, int] | None = None) -> list[Any]:
    return newest_rows(batch, str, row_version, lambda key: (stored or {}).get(key, -1))


def row(v: int | None, stage: str = "new") -> bytes:
    """A row as the worker writes it (``v`` first), or as one written before versions existed."""
    doc: dict[str, Any] = {} if v is None else {"v": v}
    doc.update(wake=None, lead={"stage": stage}, outbox=[])
    return orjson.dumps(doc)


def change(key: str, value: bytes | None, offset: int = 0) -> Any:
    message = SimpleNamespace(key=key.encode(), value=value, partition=0, offset=offset,
                              tp=("leads-changelog", 0))
    return SimpleNamespace(key=key, value=value, message=message)


# -- row versions -----------------------------------------------------------------------------------

def test_the_row_version_is_read_from_the_rows_first_bytes_and_an_unversioned_row_is_zero() -> None:
    assert row_version(row(12)) == 12
    assert row_version(row(None)) == 0
    assert row_version(None) == -1 and row_version(b"") == -1
    assert row_version(b'{"wake":null,"v":3}') == 3      # not first: parsed


def test_a_replay_keeps_the_highest_version_of_each_lead_not_the_last_written() -> None:
    batch = [change("A", row(5, "mql"), 0), change("A", row(7, "sql"), 1),
             change("A", row(6, "mql"), 2),            # a stalled worker's late write
             change("B", row(1), 3)]
    kept = newest(batch)
    assert [(e.key, row_version(e.message.value)) for e in kept] == [("A", 7), ("B", 1)]


def test_a_replay_never_replaces_a_stored_row_with_an_older_or_equal_version() -> None:
    batch = [change("A", row(7, "other")), change("B", row(3)), change("C", row(1))]
    kept = newest(batch, {"A": 7, "B": 2})
    assert [e.key for e in kept] == ["B", "C"]
    # of equal versions the first written stays
    first, second = change("D", row(4, "first")), change("D", row(4, "second"))
    assert newest([first, second]) == [first]


def test_unversioned_rows_replace_each_other_in_log_order_as_before() -> None:
    old, new = change("A", row(None, "new")), change("A", row(None, "mql"))
    assert newest([old, new]) == [new]
    assert newest([new], {"A": 0}) == [new]
    assert newest([change("A", row(None))], {"A": 3}) == []


def test_a_tombstone_deletes_and_a_row_after_it_applies() -> None:
    tomb = change("A", None)
    assert newest([change("A", row(9)), tomb], {"A": 9}) == [tomb]
    again = change("A", row(1))
    assert newest([tomb, again], {"A": 9}) == [again]


def test_the_lead_table_applies_only_the_newest_rows_of_a_changelog_batch() -> None:
    app = faust.App("ownership-test", store="memory://", autodiscover=False)
    table = app.tables.add(LeadTable(app, name="leads", default=None, partitions=1, key_type=str,
                                     value_type=bytes))
    table.apply_changelog_batch([change("A", row(1)), change("A", row(3, "sql")), change("A", row(2))])
    assert row_version(table.data["A"]) == 3
    table.apply_changelog_batch([change("A", row(2, "mql"))])           # a late, stale write
    assert orjson.loads(table.data["A"])["lead"]["stage"] == "sql"
    table.apply_changelog_batch([change("A", row(4, "won"))])
    assert orjson.loads(table.data["A"])["lead"]["stage"] == "won"
