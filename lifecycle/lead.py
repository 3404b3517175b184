"""The state of one lead, as the engine keeps it between events.

Kept small on purpose (a worker holds hundreds of thousands): interned strings, tuples instead of
lists, and the idempotency set as a bytes blob of 8-byte event-id digests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from lifecycle.stages import Stage

#: Kinds of step an SLA instance goes through, in order; ``breach`` is always present.
WARNING: Final = "warning"
BREACH: Final = "breach"
ESCALATION: Final = "escalation"
HISTORY_LENGTH: Final = 8
RECENT_SEEN: Final = 64  # digests kept in the compact blob before folding into a set


def _digests(blob: bytes) -> list[int]:
    return [int.from_bytes(blob[i : i + 8], "big") for i in range(0, len(blob), 8)]


@dataclass(frozen=True, slots=True)
class OpenSla:
    """One running SLA instance: the steps still to fire and how many already fired."""

    name: str
    instance: str  # id of the event that started it; with lead and name it identifies the instance
    started_at: int
    due_at: int
    steps: tuple[tuple[str, int], ...]  # (kind, threshold) in time order
    fired: int = 0  # steps[:fired] have fired
    held_since: int | None = None  # paused by a hold since this event time (SPEC 9), else None
    held_ms: int = 0  # time spent on hold by earlier, ended holds

    @property
    def next_at(self) -> int | None:
        return self.steps[self.fired][1] if self.fired < len(self.steps) else None

    @property
    def breached(self) -> bool:
        return any(kind == BREACH for kind, _ in self.steps[: self.fired])


class Lead:
    """Mutable inside the engine only: the engine copies before changing, so callers see values."""

    __slots__ = (
        "lead_id",
        "stage",
        "owner_id",
        "team",
        "score",
        "created_at",
        "stage_entered_at",
        "last_activity_at",
        "slas",
        "mql_owners",
        "history",
        "seen",
        "seen_older",
        "hold_since",
        "hold_until",
    )

    def __init__(
        self,
        lead_id: str,
        stage: Stage = Stage.NEW,
        owner_id: str | None = None,
        team: str | None = None,
        score: int = 0,
        created_at: int = 0,
        stage_entered_at: int = 0,
        last_activity_at: int = 0,
        slas: tuple[OpenSla, ...] = (),
        mql_owners: tuple[str, ...] = (),
        history: tuple[tuple[str, int, str], ...] = (),
        seen: bytes = b"",
        seen_older: tuple[frozenset[int], ...] = (),
        hold_since: int | None = None,
        hold_until: int | None = None,
    ) -> None:
        self.lead_id = lead_id
        self.stage = stage
        self.owner_id = owner_id
        self.team = team
        self.score = score
        self.created_at = created_at
        self.stage_entered_at = stage_entered_at
        self.last_activity_at = last_activity_at
        self.slas = slas  # open SLA instances of the current stage
        self.mql_owners = mql_owners  # distinct owners while waiting for the first touch (ping-pong)
        self.history = history  # the last HISTORY_LENGTH (to_stage, at, trigger_event_type)
        # Event ids applied, as 8-byte digests: up to RECENT_SEEN in a compact blob (most leads never
        # get more), older ones in frozenset levels merged like a binary counter, so adding stays
        # O(log n) amortised for a lead with any number of events; all immutable, so copies of a
        # lead never share a mutable set.
        self.seen = seen
        self.seen_older = seen_older
        self.hold_since = hold_since  # on hold since this event time (SPEC 9), else None
        self.hold_until = hold_until  # the hold ends by itself then, else None (until a resume)

    def copy(self) -> Lead:
        # Every field holds an immutable value, so a shallow copy is a full one.
        clone = Lead.__new__(Lead)
        clone.lead_id = self.lead_id
        clone.stage = self.stage
        clone.owner_id = self.owner_id
        clone.team = self.team
        clone.score = self.score
        clone.created_at = self.created_at
        clone.stage_entered_at = self.stage_entered_at
        clone.last_activity_at = self.last_activity_at
        clone.slas = self.slas
        clone.mql_owners = self.mql_owners
        clone.history = self.history
        clone.seen = self.seen
        clone.seen_older = self.seen_older
        clone.hold_since = self.hold_since
        clone.hold_until = self.hold_until
        return clone

    def has_seen(self, digest: bytes) -> bool:
        seen = self.seen
        index = seen.find(digest)
        while index != -1:
            if index % 8 == 0:
                return True
            index = seen.find(digest, index + 1)
        if self.seen_older:
            key = int.from_bytes(digest, "big")
            return any(key in level for level in self.seen_older)
        return False

    def add_seen(self, digest: bytes) -> None:
        self.seen += digest
        if len(self.seen) >= 8 * RECENT_SEEN:
            levels = list(self.seen_older)
            merged = frozenset(_digests(self.seen))
            while levels and len(levels[-1]) <= len(merged):
                merged = levels.pop() | merged
            self.seen_older = (*levels, merged)
            self.seen = b""

    @property
    def seen_count(self) -> int:
        return len(self.seen) // 8 + sum(map(len, self.seen_older))

    def sla(self, name: str) -> OpenSla | None:
        for sla in self.slas:
            if sla.name == name:
                return sla
        return None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Lead):
            return NotImplemented
        return self.seen_digests() == other.seen_digests() and all(
            getattr(self, n) == getattr(other, n) for n in Lead.__slots__ if not n.startswith("seen")
        )

    def seen_digests(self) -> frozenset[int]:
        """Every applied event id's digest, however it is currently stored."""
        return frozenset(_digests(self.seen)).union(*self.seen_older)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Lead({self.lead_id!r}, {self.stage.value}, owner={self.owner_id!r}, score={self.score})"

    # -- persistence: a plain JSON-able dict, for changelogs and snapshots -----------------------
    def to_state(self) -> dict[str, Any]:
        return {
            "lead_id": self.lead_id,
            "stage": self.stage.value,
            "owner_id": self.owner_id,
            "team": self.team,
            "score": self.score,
            "created_at": self.created_at,
            "stage_entered_at": self.stage_entered_at,
            "last_activity_at": self.last_activity_at,
            "slas": [
                [s.name, s.instance, s.started_at, s.due_at, [list(step) for step in s.steps], s.fired,
                 s.held_since, s.held_ms]
                for s in self.slas
            ],
            "mql_owners": list(self.mql_owners),
            "history": [list(h) for h in self.history],
            "hold": [self.hold_since, self.hold_until] if self.hold_since is not None else None,
            "seen": (b"".join(d.to_bytes(8, "big") for level in self.seen_older for d in sorted(level)) + self.seen).hex(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Lead:
        lead = cls(
            lead_id=state["lead_id"],
            stage=Stage(state["stage"]),
            owner_id=state["owner_id"],
            team=state["team"],
            score=state["score"],
            created_at=state["created_at"],
            stage_entered_at=state["stage_entered_at"],
            last_activity_at=state["last_activity_at"],
            slas=tuple(
                OpenSla(name, instance, started, due, tuple((k, at) for k, at in steps), fired, *held)
                for name, instance, started, due, steps, fired, *held in state["slas"]
            ),
            mql_owners=tuple(state["mql_owners"]),
            history=tuple((h[0], h[1], h[2]) for h in state["history"]),
        )
        hold = state.get("hold")  # absent in rows written before holds existed
        if hold is not None:
            lead.hold_since, lead.hold_until = hold
        blob = bytes.fromhex(state["seen"])
        keep = len(blob) % (8 * RECENT_SEEN)
        if len(blob) > keep:
            lead.seen_older = (frozenset(_digests(blob[: len(blob) - keep])),)
        lead.seen = blob[len(blob) - keep :]
        return lead
