"""The state of one lead, as the engine keeps it between events.

Kept small on purpose (a worker holds hundreds of thousands): interned strings, tuples instead of
lists, and the idempotency memory as one bytes blob of 8-byte event-id digests, bounded by
``DEDUPE_WINDOW`` so that a lead's state stays small whatever its history.
"""

from __future__ import annotations

from dataclasses import dataclass
from lifecycle.frozen import quick_init
from typing import Any, Final

from lifecycle.events import Fields
from lifecycle.stages import Stage

#: Kinds of step an SLA instance goes through, in order; ``breach`` is always present.
WARNING: Final = "warning"
BREACH: Final = "breach"
ESCALATION: Final = "escalation"
HISTORY_LENGTH: Final = 8
#: A lead remembers the ids of its last this many applied events: a repeat among them is recognised
#: and ignored. An older repeat is applied again; outputs carry deterministic ids, so consumers still
#: drop what it re-emits. 4096 digests are 32 KB raw, 64 KB in the row's JSON.
DEDUPE_WINDOW: Final = 4096
_WINDOW_BYTES: Final = 8 * DEDUPE_WINDOW


@quick_init
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


def _flat(entries: tuple[tuple[str, int, str], ...]) -> tuple[str | int, ...]:
    return tuple(value for entry in entries for value in entry)


#: Lead fields of SPEC section 10 that ``to_state`` writes only when set.
_ATTRIBUTION: Final = {
    "first_channel": None, "first_campaign": None, "mql_channel": None, "mql_campaign": None, "fields": (),
    "fit_points": 0, "grade": None, "hand_raised": False, "deal_amount": None,
}


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
        "_history",
        "seen",
        "hold_since",
        "hold_until",
        "first_channel",
        "first_campaign",
        "mql_channel",
        "mql_campaign",
        "fields",
        "fit_points",
        "grade",
        "hand_raised",
        "deal_amount",
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
        hold_since: int | None = None,
        hold_until: int | None = None,
        first_channel: str | None = None,
        first_campaign: str | None = None,
        mql_channel: str | None = None,
        mql_campaign: str | None = None,
        fields: Fields = (),
        fit_points: int = 0,
        grade: str | None = None,
        hand_raised: bool = False,
        deal_amount: float | None = None,
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
        # the last HISTORY_LENGTH (to_stage, at, trigger_event_type), kept flat (``history``)
        self._history: tuple[str | int, ...] = _flat(history)
        # The last DEDUPE_WINDOW applied event ids as 8-byte digests, oldest first. Immutable, so
        # copies of a lead never share it; finding a digest is one memchr-speed scan of <= 32 KB.
        self.seen = seen
        self.hold_since = hold_since  # on hold since this event time (SPEC 9), else None
        self.hold_until = hold_until  # the hold ends by itself then, else None (until a resume)
        # Attribution and fit (SPEC section 10), see lifecycle.grading. The channel and campaign of
        # the first marketing event, and of the one that made the lead MQL (its latest MQL move).
        self.first_channel = first_channel
        self.first_campaign = first_campaign
        self.mql_channel = mql_channel
        self.mql_campaign = mql_campaign
        self.fields = fields  # merged firmographics, in the order names first came, later values win
        self.fit_points = fit_points
        self.grade = grade  # None when the policy has no grading rules
        # filled a hand-raiser form in new/engaged/recycled since it was created or last recycled:
        # a lead held out of mql by its grade moves there once its grade reaches the minimum
        self.hand_raised = hand_raised
        self.deal_amount = deal_amount  # the latest deal amount seen; the amount of a move to customer

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
        clone._history = self._history
        clone.seen = self.seen
        clone.hold_since = self.hold_since
        clone.hold_until = self.hold_until
        clone.first_channel = self.first_channel
        clone.first_campaign = self.first_campaign
        clone.mql_channel = self.mql_channel
        clone.mql_campaign = self.mql_campaign
        clone.fields = self.fields
        clone.fit_points = self.fit_points
        clone.grade = self.grade
        clone.hand_raised = self.hand_raised
        clone.deal_amount = self.deal_amount
        return clone

    @property
    def history(self) -> tuple[tuple[str, int, str], ...]:
        """The last ``HISTORY_LENGTH`` stage changes: ``(to_stage, at, trigger_event_type)``.

        Kept as one flat tuple (``to_stage, at, type, to_stage, ...``): a tuple per entry cost
        ~64 bytes more, ~300 bytes a lead in a replay of 100 000 leads."""
        flat = self._history
        return tuple(zip(flat[0::3], flat[1::3], flat[2::3]))  # type: ignore[arg-type]

    @history.setter
    def history(self, entries: tuple[tuple[str, int, str], ...]) -> None:
        self._history = _flat(entries)

    def add_history(self, to_stage: str, at: int, event_type: str) -> None:
        """Append a stage change, keeping the last ``HISTORY_LENGTH``."""
        flat = self._history + (to_stage, at, event_type)
        self._history = flat if len(flat) <= 3 * HISTORY_LENGTH else flat[-3 * HISTORY_LENGTH:]

    def has_seen(self, digest: bytes) -> bool:
        seen = self.seen
        index = seen.find(digest)
        while index != -1:
            if index % 8 == 0:
                return True
            index = seen.find(digest, index + 1)
        return False

    def add_seen(self, digest: bytes) -> None:
        seen = self.seen + digest
        self.seen = seen if len(seen) <= _WINDOW_BYTES else seen[-_WINDOW_BYTES:]

    @property
    def seen_count(self) -> int:
        return len(self.seen) // 8

    def sla(self, name: str) -> OpenSla | None:
        for sla in self.slas:
            if sla.name == name:
                return sla
        return None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Lead):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in Lead.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Lead({self.lead_id!r}, {self.stage.value}, owner={self.owner_id!r}, score={self.score})"

    # -- persistence: a plain JSON-able dict, for changelogs and snapshots -----------------------
    def to_state(self) -> dict[str, Any]:
        state = {
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
            "seen": self.seen.hex(),
        }
        # Attribution and fit only when set: most rows stay as small as before, and rows written
        # before these fields existed load with the defaults.
        for name, default in _ATTRIBUTION.items():
            value = getattr(self, name)
            if value is not default and value != default:
                state[name] = [list(f) for f in value] if name == "fields" else value
        return state

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
            first_channel=state.get("first_channel"),
            first_campaign=state.get("first_campaign"),
            mql_channel=state.get("mql_channel"),
            mql_campaign=state.get("mql_campaign"),
            fields=tuple((name, value) for name, value in state.get("fields", ())),
            fit_points=state.get("fit_points", 0),
            grade=state.get("grade"),
            hand_raised=state.get("hand_raised", False),
            deal_amount=state.get("deal_amount"),
        )
        hold = state.get("hold")  # absent in rows written before holds existed
        if hold is not None:
            lead.hold_since, lead.hold_until = hold
        lead.seen = bytes.fromhex(state["seen"])[-_WINDOW_BYTES:]  # older rows kept every id
        return lead
