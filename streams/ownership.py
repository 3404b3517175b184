"""Which row wins when a changelog is replayed: the highest version of each lead, not the last written.

A worker that stops for longer than its session timeout (a GC pause, a VM stall, a network cut) is
dropped from its consumer group and its partitions go to other workers; writes it made, or had queued,
can reach the changelog *behind* the new owner's (issue 10 item 8: a lead saved at version 14, then a
late version 4 of the stalled worker). Replayed in log order, such a row rolls the lead back. Each row
carries ``v`` (``Row.version``: its predecessor's + 1), and recovery and standby replicas keep, for each
lead, the row with the highest version (``LeadTable.apply_changelog_batch``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


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
