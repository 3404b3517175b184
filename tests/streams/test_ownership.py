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
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.app import LeadTable
from streams.faust_patches import forget
from streams.ownership import (DONE, DROP, EARLY, EPOCH_SHIFT, HOLD, NEXT, OK, UNSTARTED, Frontier, Ownership,
                               newest_rows, stamped)
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


def test_a_row_written_after_a_takeover_outranks_a_stalled_owners_late_write_of_the_same_step() -> None:
    """Both continue version 4 (generation 2): the stalled owner applied a timer, the new owner (in
    generation 5) an event. By step number alone they tie and the first in the log wins, so the
    late write landing first would have hidden the event; the generation decides instead."""
    base = stamped(4, 2)
    late = stamped(base + 1, 2)                           # the stalled owner, generation 2
    owner = stamped(base + 1, 5)                          # the new owner, generation 5
    assert late == base + 1 and owner == 6 << EPOCH_SHIFT
    kept = newest([change("L", row(late, "timer")), change("L", row(owner, "event"))], {"L": base})
    assert [orjson.loads(e.message.value)["lead"]["stage"] for e in kept] == ["event"]
    assert stamped(owner + 1, 5) == owner + 1             # then it counts on within its generation


def test_stamping_never_lowers_a_version() -> None:
    """Generations that restart (a group deleted and made anew) keep the rows' epoch: a row still
    outranks its predecessor. Rows written before epochs existed (small versions) are outranked."""
    old = stamped(9, 7)
    assert stamped(old + 1, 0) == old + 1
    assert stamped(3, 0) == 1 << EPOCH_SHIFT > 3 and stamped(3, None) == 3


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


def test_admits_is_true_only_where_admit_would_return_true_at_once() -> None:
    own = serving()
    assert own.check(msg()) == OK and own.admits(msg())
    assert not own.admits(msg(generation=4))             # fetched in another generation: admit drops it
    own._state = (5, frozenset({0}), time.monotonic() - 0.1)   # lapsed lease: admit holds
    assert own.check(msg()) == HOLD and not own.admits(msg())
    own.renew(5, time.monotonic())
    own._held_since = time.monotonic()                   # admit has a message held: it logs the resume
    assert own.check(msg()) == OK and not own.admits(msg())
    assert asyncio.run(own.admit(msg())) is True and own._held_since is None
    assert own.admits(msg())
    own.on_revoke()
    assert not own.admits(msg())
    dropped = msg()
    assert asyncio.run(own.admit(dropped)) is False and dropped.acked is True


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


# -- log order: the frontier -------------------------------------------------------------------------

TP = ("lead.sales_activity", 2)


def test_a_partition_is_applied_from_where_it_was_positioned_and_in_log_order() -> None:
    f = Frontier()
    assert f.verdict(TP, 0) == UNSTARTED and f.cap(TP, 10) is None   # nothing before the seek
    f.start(TP, 259)
    assert f.position(TP) == 259 and f.cap(TP, 300) == 259
    # faust resumed the partition before seeking it: records from the old position come first
    assert f.verdict(TP, 1116) == EARLY
    f.fetched(TP, [259, 260, 262])                       # 261 holds no record (a transaction marker)
    assert [f.verdict(TP, o) for o in (259, 260, 262)] == [NEXT, EARLY, EARLY]
    f.applied(TP, 259)
    assert f.verdict(TP, 259) == DONE and f.verdict(TP, 260) == NEXT
    f.applied(TP, 260)
    assert f.position(TP) == 262 and f.verdict(TP, 262) == NEXT      # the marker is stepped over
    assert f.cap(TP, 263) == 262
    f.applied(TP, 262)
    assert f.position(TP) == 263 and f.cap(TP, 263) == 263
    f.stop([TP])
    assert f.verdict(TP, 263) == UNSTARTED


def test_a_record_at_the_committed_offset_that_faust_never_delivered_holds_every_commit() -> None:
    """Seen: 847 given up at a revocation, 848 applied in the next generation, and faust committed
    849 (its rule accepts a gap of one after the committed offset). The frontier stays at 847."""
    f = Frontier()
    f.start(TP, 847)
    f.fetched(TP, [847, 848, 849])
    assert f.verdict(TP, 848) == EARLY                   # 847 was dropped on the way
    assert f.cap(TP, 849) == 847
    f.fetched(TP, [847, 848])                            # read again: nothing new to the frontier
    assert f.verdict(TP, 847) == NEXT


def test_records_delivered_without_a_fetch_the_frontier_saw_are_applied_only_when_next() -> None:
    f = Frontier()
    f.start(TP, 5)
    assert f.verdict(TP, 5) == NEXT and f.verdict(TP, 6) == EARLY
    f.applied(TP, 5)
    assert f.verdict(TP, 6) == NEXT and f.position(TP) == 6


@settings(max_examples=300, deadline=None)
@given(start=st.integers(0, 50), records=st.lists(st.integers(1, 3), min_size=1, max_size=60),
       losses=st.lists(st.tuples(st.integers(0, 200), st.sampled_from(["drop", "stale", "dup"])),
                       max_size=30),
       batch=st.integers(1, 9))
def test_whatever_faust_drops_or_repeats_each_record_is_applied_once_in_log_order(
    start: int, records: list[int], losses: list[tuple[int, str]], batch: int
) -> None:
    """A partition's records (gaps: offsets with no record) are fetched in batches and handed to
    the agent through a lossy pipe: some dropped, some stale ones from far ahead slipped in, some
    repeated. The agent applies only ``NEXT``; when it sees an ``EARLY`` one it reads the partition
    again from the frontier. Every record ends up applied exactly once, in log order, and no commit
    ever passes a record not yet applied."""
    offsets, o = [], start
    for step in records:
        offsets.append(o)
        o += step
    f = Frontier()
    f.start(TP, start)
    mischief = dict(losses)
    applied: list[int] = []
    position, rounds = start, 0
    while (not applied or applied[-1] != offsets[-1]) and rounds < 500:
        rounds += 1
        todo = [x for x in offsets if x >= position][:batch]
        f.fetched(TP, todo)
        delivered: list[int] = []
        for x in todo:
            trick = mischief.pop(x, None) if rounds < 50 else None
            if trick == "drop":
                continue
            if trick == "stale":
                delivered.append(offsets[-1])
            delivered.append(x)
            if trick == "dup":
                delivered.append(x)
        for x in delivered:
            verdict = f.verdict(TP, x)
            if verdict == NEXT:
                first_unapplied = min(y for y in offsets if y not in applied)
                assert f.cap(TP, 10**9) == first_unapplied
                applied.append(x)
                f.applied(TP, x)
            elif verdict == EARLY:
                break                                    # read again from the frontier
        assert f.cap(TP, 10**9) <= min([y for y in offsets if y not in applied], default=10**9)
        position = f.position(TP)
    assert applied == offsets
