"""Pending SLA deadlines, one per lead, ordered by due time, then lead id.

A binary heap with lazy deletion: ``set`` is O(log n), cancelling is O(1) (the stale heap entry is
skipped when it surfaces), and finding what is due never scans leads. The heap is rebuilt when stale
entries outnumber live ones, so memory stays proportional to the pending timers.

Timers due at the same time pop in lead-id order, not in the order they were set: the order then
depends on nothing but the leads' own due times, so shards of a replay that each hold some of the
leads pop their timers in the same relative order as one process holding them all
(``leadflow.replay_jobs``). A heap entry is stale when its due time is not the lead's live one.
"""

from __future__ import annotations

import heapq
from typing import Iterator


class TimerSet:
    __slots__ = ("_heap", "_live")

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._live: dict[str, int] = {}  # lead_id -> due of its live entry

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, lead_id: object) -> bool:
        return lead_id in self._live

    def set(self, lead_id: str, due: int | None) -> None:
        """Schedule the lead's wake-up at ``due`` (epoch ms), replacing any earlier one; None cancels."""
        live = self._live
        current = live.get(lead_id)
        if current == due:
            return
        if due is None:
            del live[lead_id]
            self._maybe_compact()
            return
        live[lead_id] = due
        # an entry (due, lead_id) may still sit in the heap from an earlier set to the same time: it
        # is live again, and the new push makes a second copy, dropped as a stale one when it surfaces
        heapq.heappush(self._heap, (due, lead_id))
        if current is not None:
            self._maybe_compact()

    def any_due(self, until: int) -> bool:
        """Whether a timer may be due before ``until``: O(1), stale entries answer True harmlessly."""
        heap = self._heap
        return bool(heap) and heap[0][0] < until

    def next_due(self) -> int | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, until: int, *, inclusive: bool = True) -> Iterator[tuple[str, int]]:
        """Remove and yield ``(lead_id, due)`` for every timer due by ``until``, earliest first, lead
        ids in order at equal times.

        Timers set while iterating are seen too, so a lead rescheduled to a time still due fires again.
        """
        heap, live = self._heap, self._live
        while True:
            self._drop_stale()
            if not heap:
                return
            due, lead_id = heap[0]
            if due > until or (due == until and not inclusive):
                return
            heapq.heappop(heap)
            del live[lead_id]
            yield lead_id, due

    def items(self) -> Iterator[tuple[str, int]]:
        """Live ``(lead_id, due)`` pairs, in no particular order."""
        return iter(self._live.items())

    def _drop_stale(self) -> None:
        heap, live = self._heap, self._live
        while heap:
            due, lead_id = heap[0]
            if live.get(lead_id) == due:
                return
            heapq.heappop(heap)

    def _maybe_compact(self) -> None:
        if len(self._heap) > 64 and len(self._heap) > 2 * len(self._live):
            self._heap = [(due, lead_id) for lead_id, due in self._live.items()]
            heapq.heapify(self._heap)
