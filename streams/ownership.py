"""Who may write, and which row wins: the worker's defences against a stall past its session timeout.

A worker that stops for longer than its session timeout (a GC pause, a VM stall, a network cut to the
broker) is dropped from its consumer group, and its partitions go to other workers, which recover the
lead rows from the changelog and carry on. When it wakes it still holds the messages it had fetched
and, until a heartbeat tells it otherwise, believes it owns their partitions. Measured before this
module existed (issue 10 item 8): it went on processing them against its outdated rows and wrote the
results to the changelog *after* the new owner's rows, so the next worker to recover the partition
rolled those leads back (one to a lead created anew), and later events then produced stage changes
that ``leadflow replay`` does not.

Two defences:

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

2. **Row versions** (:func:`newest_rows`). A check cannot be atomic with the write it guards: a write
   checked just before a stall reaches the broker after it (seen: a row produced before a 20 s pause
   landed behind the new owner's rows). Each row carries ``v`` (``Row.version``: its predecessor's + 1)
   and a changelog replay, recovery and standby replicas alike, keeps the highest version of each lead
   rather than the last one written. A late row of a stalled worker carries a version that the owner
   has reached or passed, so it cannot roll a lead back.

A takeover serves a partition only once faust's recovery of it has completed (``serve`` is called
from the table's recovery hook, before faust resumes the partition): its rows are then complete,
because a previous owner commits an offset only after the writes it covers are acknowledged
(``faust_patches.DurableBuffer``), recovery reads the changelog to its exact end (``exact_end_offsets``)
and keeps the highest versions; what a stalled owner wrote late belongs to uncommitted messages, which
the new owner processes again.

This module is pure (no faust): ``streams.faust_patches`` feeds it heartbeats and rebalances.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("leadflow.ownership")

#: The lease is this share of min(session timeout, rebalance timeout), from a successful heartbeat's send.
LEASE_FACTOR = 0.8
#: How often a message held for a lapsed lease looks again, seconds.
HOLD_POLL = 0.05

OK, HOLD, DROP = "ok", "hold", "drop"


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
        #: messages given up so far; acknowledgements refused so far
        self.dropped = 0
        self.refused_acks = 0
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

    def may_ack(self, message: Any) -> bool:
        """Whether acknowledging ``message`` may let its offset be committed: only in the generation
        that fetched it, and not once a revocation has begun.

        faust acknowledges the messages it *skips* too (fetched in an older generation, or read
        while a rebalance has suspended the flow), and an acknowledged offset is committed if the
        partition is assigned again: a worker that kept its partition across a lost membership
        committed past events it never processed (seen: a lead's deal event lost after a broker
        stall, the next one applied). A refused acknowledgement costs a reprocessing at most."""
        generation = self._state[0]
        if generation is not None and message.generation_id == generation:
            return True
        self.refused_acks += 1
        if self.refused_acks == 1 or self.refused_acks % 1000 == 0:
            log.warning("%d acknowledgement(s) refused for messages not processed in this "
                        "generation (e.g. %s/%s@%s, generation %s; now %s)", self.refused_acks,
                        message.topic, message.partition, message.offset, message.generation_id,
                        generation)
        return False

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


# -- row versions -------------------------------------------------------------------------------

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
