"""Pending SLA deadlines, one per lead, ordered by due time.

A binary heap with lazy deletion: ``set`` is O(log n), cancelling is O(1) (the stale heap entry is
skipped when it surfaces), and finding what is due never scans leads. The heap is rebuilt when stale
entries outnumber live ones, so memory stays proportional to the pending timers.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Iterator


class TimerSet:
    __slots__ = ("_heap", "_live", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, str]] = []
        self._live: dict[str, tuple[int, int]] = {}  # lead_id -> (due, seq) of its live entry
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, lead_id: object) -> bool:
        return lead_id in self._live

    def set(self, lead_id: str, due: int | None) -> None:
        """Schedule the lead's wake-up at ``due`` (epoch ms), replacing any earlier one; None cancels."""
        current = self._live.get(lead_id)
        if current is not None and current[0] == due:
            return
        if due is None:
            if current is not None:
                del self._live[lead_id]
                self._maybe_compact()
            return
        seq = next(self._seq)
        self._live[lead_id] = (due, seq)
        heapq.heappush(self._heap, (due, seq, lead_id))
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
        """Remove and yield ``(lead_id, due)`` for every timer due by ``until``, earliest first.

        Timers set while iterating are seen too, so a lead rescheduled to a time still due fires again.
        """
        heap = self._heap
        while True:
            self._drop_stale()
            if not heap:
                return
            due, _, lead_id = heap[0]
            if due > until or (due == until and not inclusive):
                return
            heapq.heappop(heap)
            del self._live[lead_id]
            yield lead_id, due

    def items(self) -> Iterator[tuple[str, int]]:
        """Live ``(lead_id, due)`` pairs, in no particular order."""
        for lead_id, (due, _) in self._live.items():
            yield lead_id, due

    def _drop_stale(self) -> None:
        heap, live = self._heap, self._live
        while heap:
            due, seq, lead_id = heap[0]
            if live.get(lead_id) == (due, seq):
                return
            heapq.heappop(heap)

    def _maybe_compact(self) -> None:
        if len(self._heap) > 64 and len(self._heap) > 2 * len(self._live):
            self._heap = [(due, seq, lead_id) for lead_id, (due, seq) in self._live.items()]
            heapq.heapify(self._heap)
