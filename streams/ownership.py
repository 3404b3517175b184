"""Who may write, and which row wins: the worker's defences against a stall past its session timeout.

A worker that stops for longer than its session timeout (a GC pause, a VM stall, a network cut to the
broker) is dropped from its consumer group, and its partitions go to other workers, which recover the
lead rows from the changelog and carry on. When it wakes it still holds the messages it had fetched
and, until a heartbeat tells it otherwise, believes it owns their partitions. Measured before this
module existed (issue 10 item 8): it went on processing them against its outdated rows and wrote the
results to the changelog *after* the new owner's rows, so the next worker to recover the partition
rolled those leads back (one to a lead created anew), and later events then produced stage changes
that ``leadflow replay`` does not.

Three defences:

1. **Ownership** (:class:`Ownership`). A message is processed, and its row and output records
   written, only while (a) the worker *serves* the message's partition: assigned to it and recovered
   in the current generation; (b) the message was fetched in that generation; (c) the membership is
   known to hold: a heartbeat (or the SyncGroup) of that generation succeeded less than
   ``min(session timeout, rebalance timeout) * LEASE_FACTOR`` ago, counted from when it was sent (the
   *lease*). A broker drops a member only once those timeouts have passed since it last heard from
   it, so within the lease no other worker owns the partition. While the lease is lapsed a message is
   held until a heartbeat renews it; once the partitions are revoked, or the generation changed, it is
   dropped without being acknowledged (this worker never commits its offset, so the owner processes
   it). Revocation empties the served set at once (in the consumer's thread, before faust's own
   revocation work), so the agent drains whatever it had buffered without writing. No timer commands
   are sent for a partition not served.

2. **Log order** (:class:`Frontier`). In each generation a source partition is applied strictly in
   log order, from the offset faust positioned it at, each record once; an offset is committed only
   up to the first record fetched and not yet applied. faust alone does not keep this under a broker
   stall (measured with the trace of every message, issue 10 item 8): right after a rebalance it
   resumes a partition before seeking it to the committed offset, so records from the fetcher's old
   position were applied first (a lead created by its 7th event, its first six applied late); a
   record of the old generation finished after the seek moves faust's read offset past the
   re-fetched ones, which it then drops unseen; and its commit rule lets the offset pass one record
   never acknowledged (``Consumer._new_offset`` accepts a gap of one after the committed offset), so
   an event was committed unapplied. The frontier takes its facts from the fetcher itself: every
   record the Kafka client returns, in order (only offsets that are no record, such as transaction
   markers, are absent), so a record that is not the next one is *early*: it is given up and the
   partition is read again from the frontier.

3. **Row versions** (:func:`newest_rows`, :func:`stamped`). A check cannot be atomic with the write
   it guards: a write checked just before a stall reaches the broker after it (seen: a row produced
   before a 20 s pause landed behind the new owner's rows). Each row carries ``v`` and a changelog
   replay, recovery and standby replicas alike, keeps the highest version of each lead rather than
   the last one written. ``v`` is ``epoch << EPOCH_SHIFT | counter``: the counter is the step's
   (``Row.version``, its predecessor's + 1), the epoch the consumer generation the row was written in
   (+ 1). So a row written after a takeover outranks every row of an earlier generation, a stalled
   owner's late write included, even when both continue the same predecessor (two rows of one
   version, which the first-of-equals rule alone would settle by log order).

A takeover serves a partition only once faust's recovery of it has completed (``serve`` is called
from the table's recovery hook) and its frontier has started at the committed offset: its rows are then
complete, because a previous owner commits an offset only after the writes it covers are acknowledged
(``faust_patches.DurableBuffer``), recovery reads the changelog to its exact end (``exact_end_offsets``)
and keeps the highest versions; what a stalled owner wrote late belongs to uncommitted messages, which
the new owner processes again.

This module is pure (no faust): ``streams.faust_patches`` feeds it heartbeats, rebalances and fetches.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("leadflow.ownership")

#: The lease is this share of min(session timeout, rebalance timeout), from a successful heartbeat's send.
LEASE_FACTOR = 0.8
#: How often a message held for a lapsed lease looks again, seconds.
HOLD_POLL = 0.05

OK, HOLD, DROP = "ok", "hold", "drop"
#: A record's place in its partition's log, as the frontier sees it (:meth:`Frontier.verdict`).
NEXT, DONE, EARLY, UNSTARTED = "next", "done", "early", "unstarted"


def _mark_acked(message: Any) -> None:
    message.acked = True


class Ownership:
    """The partitions this worker serves, in which generation, and until when its membership holds.

    Updated from the consumer's thread (heartbeats, revocation, assignment) and from the event loop
    (recovery completed); read by the agent before it processes a message and before it writes. The
    state is one tuple, replaced under a lock, so a reader never sees half an update.

    ``forget(message)``: give up a message without acknowledging it (see ``faust_patches.forget``).
    """

    def __init__(self, session_timeout: float, rebalance_timeout: float | None = None,
                 forget: Callable[[Any], None] = _mark_acked) -> None:
        timeouts = [t for t in (session_timeout, rebalance_timeout) if t]
        self.lease_seconds = min(timeouts) * LEASE_FACTOR
        self._forget = forget
        self._lock = threading.Lock()
        #: (generation, or None while revoked; partitions served; lease end, monotonic clock)
        self._state: tuple[int | None, frozenset[int], float] = (None, frozenset(), 0.0)
        #: (generation, sent at) of a SyncGroup that succeeded before its assignment was handed over
        self._synced: tuple[int, float] | None = None
        self._last_generation: int | None = None
        #: the membership was lost (the broker forgot it, or a generation went by without it)
        self.lost = False
        #: messages given up so far
        self.dropped = 0
        self._held_since: float | None = None

    # -- updates -------------------------------------------------------------------------------
    def on_revoke(self, membership_lost: bool = False) -> None:
        """A rebalance begins: serve nothing until the next assignment has recovered.
        ``membership_lost``: the broker no longer knows this member (its generation was reset)."""
        with self._lock:
            generation = self._state[0]
            if generation is None:
                return  # nothing assigned since the last revocation
            if membership_lost:
                self.lost = True
            self._state = (None, frozenset(), 0.0)
        log.info("partitions of generation %s revoked%s: writes stop", generation,
                 " (membership lost)" if membership_lost else "")

    def on_assign(self, generation: int) -> None:
        """A generation's assignment: nothing is served until its recovery completes; the lease runs
        from the SyncGroup that delivered it (else from the generation's first heartbeat)."""
        with self._lock:
            if self._last_generation is not None and generation != self._last_generation + 1:
                self.lost = True  # a generation went by without this worker
            self._last_generation = generation
            synced, self._synced = self._synced, None
            lease = synced[1] + self.lease_seconds if synced is not None and synced[0] == generation else 0.0
            self._state = (generation, frozenset(), lease)

    def serve(self, generation: int | None, partitions: Iterable[int]) -> None:
        """The recovery of ``partitions`` completed in ``generation``: their rows are complete."""
        with self._lock:
            current, _, lease = self._state
            if current is None or current != generation:
                return  # revoked or reassigned meanwhile: that recovery is moot
            self._state = (current, frozenset(partitions), lease)

    def renew(self, generation: int, sent_at: float) -> None:
        """A heartbeat or SyncGroup of ``generation``, sent at ``sent_at`` (monotonic), succeeded."""
        with self._lock:
            current, serving, lease = self._state
            if current is not None and current == generation:
                self._state = (current, serving, max(lease, sent_at + self.lease_seconds))
            else:
                self._synced = (generation, sent_at)

    def take_lost(self) -> bool:
        """Whether the membership was lost since the last call: other workers may then have changed
        this worker's partitions, and whatever it derived from their rows is stale."""
        with self._lock:
            lost, self.lost = self.lost, False
        return lost

    # -- checks --------------------------------------------------------------------------------
    @property
    def generation(self) -> int | None:
        return self._state[0]

    def serves(self, partition: int) -> bool:
        """Whether this worker may write for ``partition`` now (for writes of no message)."""
        generation, serving, lease = self._state
        return generation is not None and partition in serving and time.monotonic() < lease

    def check(self, message: Any) -> str:
        """``OK`` to process and write; ``HOLD`` until the lease is renewed; ``DROP`` for good."""
        generation, serving, lease = self._state
        if generation is None or message.generation_id != generation or message.partition not in serving:
            return DROP
        if time.monotonic() >= lease:
            return HOLD
        return OK

    def admits(self, message: Any) -> bool:
        """The synchronous fast path of :meth:`admit`: True when ``admit`` would return True at once
        (``check`` says ``OK`` and no message is being held). False says nothing: ask ``admit``, as
        in ``admits(m) or await admit(m)``, which holds, drops and logs as it always has."""
        return self._held_since is None and self.check(message) == OK

    async def admit(self, message: Any) -> bool:
        """Whether ``message`` may be processed and its writes made, waiting while the lease is
        lapsed. A message refused is forgotten: never acknowledged, so never committed here."""
        while True:
            verdict = self.check(message)
            if verdict == OK:
                if self._held_since is not None:
                    log.info("membership confirmed after %.1f s: writes resume",
                             time.monotonic() - self._held_since)
                    self._held_since = None
                return True
            if verdict == DROP:
                self._drop(message)
                return False
            if self._held_since is None:
                self._held_since = time.monotonic()
                log.warning("no heartbeat has confirmed the membership for %.1f s (a stall?): writes "
                            "wait for one, or for the partitions' revocation", self.lease_seconds)
            await asyncio.sleep(HOLD_POLL)

    def _drop(self, message: Any) -> None:
        self._held_since = None
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 1000 == 0:
            log.warning("%d message(s) dropped: their partitions are no longer served here (e.g. "
                        "%s/%s@%s, generation %s; now %s)", self.dropped, message.topic,
                        message.partition, message.offset, message.generation_id, self.generation)
        self._forget(message)


# -- log order ------------------------------------------------------------------------------------

#: A partition read again from its frontier is not read again for the same position sooner, seconds.
REWIND_AGAIN = 1.0


class _Partition:
    __slots__ = ("last", "pending", "floor", "rewound")

    def __init__(self, offset: int) -> None:
        #: the highest offset fetched since the start (``offset - 1`` before the first fetch)
        self.last = offset - 1
        #: offsets fetched and not yet applied, in log order
        self.pending: deque[int] = deque()
        #: while the partition is read again: the record it is read from, until that one is applied
        self.floor: int | None = None
        #: (position, monotonic time) of the last time it was read again
        self.rewound: tuple[int, float] | None = None

    @property
    def position(self) -> int:
        return self.pending[0] if self.pending else self.last + 1


class Frontier:
    """Per source partition, how far this worker has applied the log in the current generation.

    ``start(tp, offset)`` once faust has positioned ``tp`` at ``offset`` (its seek to the committed
    offset, in every generation); ``fetched(tp, offsets)`` with the offsets the Kafka client returned,
    in order, while the fetch epoch (``epoch``, bumped by every start) has not changed; the agent asks
    ``verdict(tp, offset)`` for each message (apply it only if ``NEXT``) and says ``applied`` once it
    has. ``position(tp)`` is the next record to apply: the first one fetched and not applied, else
    the offset after the last one fetched; commits stop there (``cap``). ``rewind`` says when the
    partition is to be read again from there, and sets its ``floor`` (the offset faust's read offset
    must not pass) until that record is applied. ``stop`` on revocation.

    The client returns a partition's records in log order from its position, skipping only offsets
    that hold no record, so a fetched offset it did not return before the next one is no record and
    is stepped over; a record delivered before an earlier fetched one was applied is early (faust
    dropped or has not yet delivered the earlier one), and one delivered but never fetched in this
    epoch is early too, unless it is exactly the next offset.
    """

    def __init__(self) -> None:
        self._parts: dict[Any, _Partition] = {}
        #: bumped by every ``start``: a fetch that spans one may hold records of the old position
        self.epoch = 0

    def start(self, tp: Any, offset: int | None) -> None:
        self._parts[tp] = _Partition(offset or 0)
        self.epoch += 1

    def stop(self, tps: Iterable[Any]) -> None:
        for tp in tps:
            self._parts.pop(tp, None)

    def started(self, tp: Any) -> bool:
        return tp in self._parts

    def fetched(self, tp: Any, offsets: Iterable[int]) -> None:
        part = self._parts.get(tp)
        if part is None:
            return
        last, pending = part.last, part.pending
        for offset in offsets:
            if offset > last:
                pending.append(offset)
                last = offset
        part.last = last

    def position(self, tp: Any) -> int | None:
        part = self._parts.get(tp)
        return None if part is None else part.position

    def verdict(self, tp: Any, offset: int) -> str:
        part = self._parts.get(tp)
        if part is None:
            return UNSTARTED
        position = part.position
        if offset == position:
            return NEXT
        return DONE if offset < position else EARLY

    def applied(self, tp: Any, offset: int) -> None:
        """The record at ``offset`` (a ``NEXT``) is applied: the frontier moves past it."""
        part = self._parts.get(tp)
        if part is None:
            return
        if part.pending and part.pending[0] == offset:
            part.pending.popleft()
        elif not part.pending and offset == part.last + 1:
            part.last = offset
        if part.floor == offset:
            part.floor = None

    def floor(self, tp: Any) -> int | None:
        part = self._parts.get(tp)
        return None if part is None else part.floor

    def rewind(self, tp: Any, now: float, again: bool = False) -> int | None:
        """The position to read ``tp`` again from (its floor from now on), or None: not started, or
        read again from that same position less than ``REWIND_AGAIN`` seconds ago (unless ``again``)."""
        part = self._parts.get(tp)
        if part is None:
            return None
        position = part.position
        last = part.rewound
        if not again and last is not None and last[0] == position and now - last[1] < REWIND_AGAIN:
            return None
        part.rewound = (position, now)
        part.floor = position
        return position

    def cap(self, tp: Any, offset: int) -> int | None:
        """The offset that may be committed for ``tp`` when faust would commit ``offset``: never past
        the position (None: nothing may be committed, the partition has not started)."""
        part = self._parts.get(tp)
        if part is None:
            return None
        return min(offset, part.position)


# -- row versions -------------------------------------------------------------------------------

#: A row version is ``epoch << EPOCH_SHIFT | counter`` (see :func:`stamped`).
EPOCH_SHIFT = 32


def stamped(version: int, generation: int | None) -> int:
    """The version to write for a row the step numbered ``version`` (its predecessor's + 1), in
    consumer ``generation``: at least the generation's first version, ``(generation + 1) <<
    EPOCH_SHIFT``, so that it outranks every row written in an earlier generation. Never below
    ``version``: should the group's generations restart (a group deleted and made anew), rows keep
    their epoch and count on from their predecessor."""
    if generation is None or generation < 0:
        return version
    return max(version, (generation + 1) << EPOCH_SHIFT)


def _newer(v: int, than: int) -> bool:
    # -1: no row. Unversioned rows (0) replace each other in log order, as before versions existed.
    return v > than or v == than == 0


def newest_rows(batch: Iterable[Any], key_of: Callable[[Any], Any], version_of: Callable[[bytes | None], int],
                stored_version: Callable[[Any], int]) -> list[Any]:
    """The changelog events of ``batch`` worth applying: for each key the one with the highest row
    version (the first of equals), and only if it is newer than the stored row's.

    ``version_of(raw)`` reads a row's version, ``stored_version(key)`` the stored row's (-1: none).
    A tombstone (no value) deletes whatever is stored, and a row after it in the batch applies.
    """
    chosen: dict[Any, tuple[int, Any, bool]] = {}
    for event in batch:
        key = key_of(event.key)
        raw = event.message.value
        if raw is None:
            chosen[key] = (-1, event, True)
            continue
        v = version_of(raw)
        previous = chosen.get(key)
        if previous is None:
            chosen[key] = (v, event, False)
        elif _newer(v, previous[0]):
            chosen[key] = (v, event, previous[2])
    return [event for key, (v, event, forced) in chosen.items()
            if forced or _newer(v, stored_version(key))]
