"""Output records: one shape per output topic, frozen, JSON-ready via ``as_dict``.

Field order is the wire order: JSON output is written with these keys in this order, which keeps
replay byte-for-byte deterministic. Times are epoch milliseconds here and RFC 3339 on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass
from lifecycle.frozen import quick_init
from typing import Any, Final

ALERT_TYPES: Final = (
    "sla_warning", "follow_up_overdue", "handoff_broken", "sla_resolved", "sla_retracted", "sla_held",
    "sla_resumed",
)


@quick_init
@dataclass(frozen=True, slots=True)
class LifecycleRecord:
    """One stage change of one lead (topic ``lead.lifecycle``)."""

    transition_id: str
    lead_id: str
    from_stage: str | None  # None for the record that creates the lead in ``new``
    to_stage: str
    trigger_event_id: str
    trigger_event_type: str
    occurred_at: int
    owner_id: str | None
    team: str | None
    score: int
    skipped_stages: tuple[str, ...]
    time_in_previous_stage_ms: int | None
    reason: str | None  # the disposition reason for reject / disqualify, else None
    # SPEC section 10, the lead's after the change; defaults so records written before them still load
    first_channel: str | None = None  # channel and campaign of the lead's first marketing event
    first_campaign: str | None = None
    mql_channel: str | None = None  # ... and of the marketing event of its latest MQL move
    mql_campaign: str | None = None
    grade: str | None = None  # fit grade; None when the policy has no grading rules
    amount: float | None = None  # the deal amount on the move to customer, else None
    policy_version: str | None = None  # the policy that judged it (SPEC 11); None in older records


@quick_init
@dataclass(frozen=True, slots=True)
class AlertRecord:
    """An SLA warning, breach, broken handoff or resolution (topic ``lead.alerts``)."""

    alert_id: str
    type: str
    lead_id: str
    sla: str | None
    reason: str | None
    level: int
    stage: str
    owner_id: str | None
    team: str | None
    started_at: int | None
    due_at: int | None
    detected_at: int
    overdue_by_ms: int
    resolves_alert_id: str | None = None  # the alert an ``sla_resolved`` / ``sla_retracted`` ends
    evidence_event_id: str | None = None  # ``sla_retracted``: the late event that proves it false
    held_ms: int | None = None  # ``sla_resumed``: how long the hold paused the SLA
    policy_version: str | None = None  # the policy that judged it (SPEC 11); None in older records


@dataclass(frozen=True, slots=True)
class DlqRecord:
    """An input message that could not be decoded or validated (topic ``lead.dlq``)."""

    error: str  # stable, machine-readable code, see ``schemas.codec.ERROR_CODES``
    detail: str
    source_topic: str
    source_partition: int | None
    source_offset: int | None
    key: bytes | None
    original: bytes


Record = LifecycleRecord | AlertRecord | DlqRecord
RecordType = type[LifecycleRecord] | type[AlertRecord] | type[DlqRecord]
TIME_FIELDS: Final = frozenset({"occurred_at", "started_at", "due_at", "detected_at"})


def record_key(record: Record) -> str | None:
    """The Kafka key of an output record: the lead id (DLQ records keep their original key)."""
    if isinstance(record, DlqRecord):
        return record.key.decode("utf-8", "replace") if record.key is not None else None
    return record.lead_id


def as_dict(record: Record) -> dict[str, Any]:
    """Field name -> value, in wire order, times still as epoch milliseconds."""
    return {name: getattr(record, name) for name in record.__slots__}  # type: ignore[union-attr]
