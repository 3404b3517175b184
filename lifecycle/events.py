"""Input events: frozen, typed, named as past facts.

Times inside the core are integers: milliseconds since the Unix epoch, UTC. Decoding (JSON or Avro,
with validation and DLQ error codes) lives in ``schemas.codec``; this module only defines the shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from lifecycle.frozen import quick_init
from typing import ClassVar, Final

FORM_FILL: Final = "form_fill"
EMAIL_ENGAGEMENT: Final = "email_engagement"
SALES_TOUCH: Final = "sales_touch"
LEAD_ASSIGNED: Final = "lead_assigned"
SALES_DISPOSITION: Final = "sales_disposition"
DEAL_STAGE_CHANGE: Final = "deal_stage_change"

EMAIL_ACTIONS: Final = frozenset({"delivered", "open", "click", "reply", "bounce", "unsubscribe"})
TOUCH_CHANNELS: Final = frozenset({"call", "email", "meeting", "social", "sms"})
DECISIONS: Final = frozenset({"accept", "qualify", "reject", "disqualify", "hold", "resume"})
#: Decisions that pause and restart a lead's SLA clocks without judging the lead (SPEC 9).
HOLD: Final = "hold"
RESUME: Final = "resume"
OPEN_DEAL_STAGES: Final = frozenset({"created", "discovery", "proposal", "negotiation"})
DEAL_STAGES: Final = OPEN_DEAL_STAGES | {"closed_won", "closed_lost"}

#: Bounds of a form fill's ``fields`` (firmographics), checked when it is decoded: an event beyond
#: them is dead-lettered (``invalid_field``), never truncated. The lead's merged set has its own
#: bound (``lifecycle.grading.MAX_LEAD_FIELDS``).
MAX_FIELDS: Final = 32  # entries per event
MAX_FIELD_NAME: Final = 64  # characters of a field name
MAX_FIELD_TEXT: Final = 500  # characters of a string value

FieldValue = str | int | float
Fields = tuple[tuple[str, FieldValue], ...]


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class LeadEvent:
    """Fields every event carries. ``occurred_at`` is event time in epoch milliseconds (UTC)."""

    event_type: ClassVar[str]
    event_id: str
    lead_id: str
    occurred_at: int
    source: str | None = None


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class FormFilled(LeadEvent):
    event_type: ClassVar[str] = FORM_FILL
    form_type: str
    form_id: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    fields: Fields = ()  # (name, value) pairs in the order sent; names are unique


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class EmailEngaged(LeadEvent):
    event_type: ClassVar[str] = EMAIL_ENGAGEMENT
    action: str
    campaign_id: str | None = None


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class SalesTouched(LeadEvent):
    event_type: ClassVar[str] = SALES_TOUCH
    rep_id: str | None = None
    channel: str | None = None
    outcome: str | None = None


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class LeadAssigned(LeadEvent):
    event_type: ClassVar[str] = LEAD_ASSIGNED
    owner_id: str
    team: str | None = None


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class SalesDispositioned(LeadEvent):
    event_type: ClassVar[str] = SALES_DISPOSITION
    decision: str
    reason: str | None = None
    rep_id: str | None = None
    until: int | None = None  # ``hold`` only: when the hold ends by itself (epoch ms)


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class DealStageChanged(LeadEvent):
    event_type: ClassVar[str] = DEAL_STAGE_CHANGE
    stage: str
    deal_id: str | None = None
    amount: float | None = None


#: Tie-break of events with the same ``occurred_at`` when a reorder window sorts them (SPEC 9).
TYPE_ORDER: Final = {
    FORM_FILL: 0, EMAIL_ENGAGEMENT: 1, LEAD_ASSIGNED: 2, SALES_TOUCH: 3, SALES_DISPOSITION: 4,
    DEAL_STAGE_CHANGE: 5,
}


def order_key(event: LeadEvent) -> tuple[int, int, str]:
    """The order in which held events of one lead are applied: event time, type, then id."""
    return (event.occurred_at, TYPE_ORDER[event.event_type], event.event_id)


EVENT_TYPES: Final[dict[str, type[LeadEvent]]] = {
    cls.event_type: cls
    for cls in (FormFilled, EmailEngaged, SalesTouched, LeadAssigned, SalesDispositioned, DealStageChanged)
}
