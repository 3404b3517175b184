"""SLA facts shared by the engine and the report: names, the stage each belongs to, what starts it
and what its breach is called."""

from __future__ import annotations

from typing import Final

from lifecycle.stages import Stage

#: Every SLA, in the order reports list them.
SLA_NAMES: Final = ("assignment", "first_touch", "qualification", "opportunity", "nurture")
#: The stage each SLA belongs to: it ends, met, when the lead leaves that stage.
SLA_STAGE: Final = {
    "assignment": Stage.MQL,
    "first_touch": Stage.MQL,
    "qualification": Stage.SAL,
    "opportunity": Stage.SQL,
    "nurture": Stage.RECYCLED,
}
#: The SLA an entered stage starts (``mql`` is special: ``assignment`` without an owner, else
#: ``first_touch``).
STARTS_ON_ENTRY: Final = {Stage.SAL: "qualification", Stage.SQL: "opportunity", Stage.RECYCLED: "nurture"}
#: Breach alert (type, reason) per SLA.
BREACH_ALERT: Final = {
    "assignment": ("handoff_broken", "unassigned"),
    "first_touch": ("follow_up_overdue", None),
    "qualification": ("follow_up_overdue", None),
    "opportunity": ("follow_up_overdue", None),
    "nurture": ("handoff_broken", "recycled_not_nurtured"),
}
#: Breach reasons of deadline SLAs (as opposed to instant broken handoffs).
DEADLINE_REASONS: Final = frozenset(reason for _, reason in BREACH_ALERT.values() if reason)
