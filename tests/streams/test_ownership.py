"""streams.ownership without a broker: the write guard's states and the highest-version-wins replay.

The end-to-end checks (a worker or the broker stopped past the session timeout while events
stream) are in test_worker_stall.py.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import faust
import orjson
import pytest

from streams.app import LeadTable
from streams.faust_patches import forget
from streams.ownership import DROP, HOLD, OK, Ownership, newest_rows
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


class Msg:
    """The fields of a faust message the guard reads (hashable, as faust's are)."""

    def __init__(self, partition: int, generation: int) -> None:
        self.topic, self.partition, self.offset = "t", partition, 7
        self.generation_id, self.acked = generation, False


def msg(partition: int = 0, generation: int = 5) -> Msg:
    return Msg(partition, generation)


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


# -- the write guard ----------------------------------------------------------------------------------

def serving(generation: int = 5, partitions: tuple[int, ...] = (0, 1)) -> Ownership:
    own = Ownership(session_timeout=3.0, rebalance_timeout=3.0)
    own.on_assign(generation)
    own.serve(generation, partitions)
    own.renew(generation, time.monotonic())
    return own


def test_nothing_is_written_before_an_assignment_has_recovered_and_its_membership_is_confirmed() -> None:
    own = Ownership(session_timeout=3.0)
    assert own.check(msg()) == DROP                      # nothing assigned
    own.on_assign(5)
    assert own.check(msg()) == DROP                      # assigned, not recovered
    own.serve(5, {0})
    assert own.check(msg()) == HOLD                      # recovered, no heartbeat yet
    own.renew(5, time.monotonic())
    assert own.check(msg()) == OK
    assert own.check(msg(partition=1)) == DROP           # not ours
    assert own.check(msg(generation=4)) == DROP          # fetched in an older generation


def test_a_syncgroup_before_the_assignment_starts_the_lease() -> None:
    own = Ownership(session_timeout=3.0)
    own.renew(6, time.monotonic())                       # SyncGroup of generation 6 succeeded
    own.on_assign(6)
    own.serve(6, {0})
    assert own.check(msg(generation=6)) == OK


def test_a_lapsed_lease_holds_and_a_revocation_drops() -> None:
    own = serving()
    own.renew(5, time.monotonic() - 10)                  # an old heartbeat changes nothing
    assert own.check(msg()) == OK
    own._state = (5, frozenset({0}), time.monotonic() - 0.1)   # the lease ran out (a stall)
    assert own.check(msg()) == HOLD
    assert not own.serves(0)
    own.on_revoke()
    assert own.check(msg()) == DROP
    own.serve(5, {0})                                    # a late recovery hook: ignored
    own.renew(5, time.monotonic())                       # a late heartbeat of the old generation
    assert own.check(msg()) == DROP


def test_admit_waits_for_a_heartbeat_or_gives_the_message_up_on_revocation() -> None:
    async def scenario() -> tuple[bool, bool, Any]:
        own = serving()
        own._state = (5, frozenset({0}), 0.0)
        first = asyncio.ensure_future(own.admit(msg()))
        await asyncio.sleep(0.2)
        assert not first.done()
        own.renew(5, time.monotonic())
        renewed = await asyncio.wait_for(first, 1)
        own._state = (5, frozenset({0}), 0.0)
        dropped_msg = msg()
        second = asyncio.ensure_future(own.admit(dropped_msg))
        await asyncio.sleep(0.2)
        own.on_revoke()
        revoked = await asyncio.wait_for(second, 1)
        return renewed, revoked, dropped_msg

    renewed, revoked, dropped = asyncio.run(scenario())
    assert renewed is True and revoked is False
    assert dropped.acked is True                         # never acknowledged to the consumer


def test_forget_takes_the_message_off_the_consumers_messages_in_flight() -> None:
    m = msg()
    consumer = SimpleNamespace(_unacked_messages={m})
    forget(consumer, m)
    assert m.acked and not consumer._unacked_messages
    forget(None, msg())                                  # no consumer: no error


@pytest.mark.parametrize("previous, generation, lost", [(3, 4, False), (3, 6, True)])
def test_a_generation_gone_by_without_the_worker_counts_as_a_lost_membership(
    previous: int, generation: int, lost: bool
) -> None:
    own = Ownership(session_timeout=3.0)
    own.on_assign(previous)
    own.on_revoke()
    assert not own.take_lost()
    own.on_assign(generation)
    assert own.take_lost() is lost
    own.on_revoke(membership_lost=True)
    assert own.take_lost() is True and own.take_lost() is False


def test_only_a_message_of_the_current_generation_may_be_acknowledged() -> None:
    """faust acknowledges the messages it skips (fetched in an older generation, or read while a
    rebalance suspended the flow): such an acknowledgement must not let the offset be committed."""
    own = serving(generation=5)
    assert own.may_ack(msg(generation=5))
    assert not own.may_ack(msg(generation=4))
    own.on_revoke()
    assert not own.may_ack(msg(generation=5))            # a revocation has begun
    own.on_assign(6)
    assert not own.may_ack(msg(generation=5)) and own.may_ack(msg(generation=6))
    assert own.refused_acks == 3
