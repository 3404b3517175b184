"""Hypothesis strategies for input events and output records, shared by the codec and engine tests.

``events()`` draws from small pools of lead ids and event ids on purpose: streams then hit the same
lead many times and repeat event ids, which is where idempotency and ordering bugs live.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

from lifecycle.calendar import LATEST_MS
from lifecycle.events import (
    DEAL_STAGES,
    DECISIONS,
    EMAIL_ACTIONS,
    MAX_FIELD_NAME,
    MAX_FIELD_TEXT,
    MAX_FIELDS,
    TOUCH_CHANNELS,
    DealStageChanged,
    EmailEngaged,
    FormFilled,
    LeadAssigned,
    LeadEvent,
    SalesDispositioned,
    SalesTouched,
)
from lifecycle.records import ALERT_TYPES, AlertRecord, DlqRecord, LifecycleRecord

BASE_MS = 1_772_442_000_000  # 2026-03-02T09:00:00Z, a Monday
HOUR_MS = 3_600_000
LEAD_IDS = ("L1", "L2", "L3")
EVENT_IDS = tuple(f"e{n}" for n in range(40))
FORM_TYPES = ("demo_request", "contact_us", "pricing", "webinar", "content_download", "newsletter")
OWNERS = ("r1", "r2", "r3", "r4")
TEAMS = ("na", "emea")
STAGES = ("new", "engaged", "mql", "sal", "sql", "opportunity", "customer", "recycled", "disqualified")
LAST_RFC3339_MS = LATEST_MS  # 9989-12-31T23:59:59.999Z, the last instant leadflow accepts


def _maybe(values: st.SearchStrategy[str] | Sequence[str]) -> st.SearchStrategy[str | None]:
    inner = values if isinstance(values, st.SearchStrategy) else st.sampled_from(values)
    return st.none() | inner


MEDIUMS = ("cpc", "paid_social", "organic", "referral")
CAMPAIGNS = ("spring-launch", "retarget-q2")
FIELD_VALUES = {
    "employees": st.sampled_from([5, 50, 500, 5000, "1200", "n/a"]),
    "title": st.sampled_from(["VP Sales", "Head of Marketing", "Intern", "engineer"]),
    "country": st.sampled_from(["US", "DE", "FR", "GB"]),
    "industry": st.sampled_from(["software", "retail"]),
}


def firmographics() -> st.SearchStrategy[tuple[tuple[str, str | int | float], ...]]:
    """A form fill's ``fields``: a few realistic firmographics, often none."""
    return st.dictionaries(st.sampled_from(sorted(FIELD_VALUES)), st.just(None), max_size=3).flatmap(
        lambda names: st.tuples(*(st.tuples(st.just(n), FIELD_VALUES[n]) for n in names))
    )


def events(
    lead_ids: Sequence[str] = LEAD_IDS,
    event_ids: Sequence[str] = EVENT_IDS,
    start_ms: int = BASE_MS,
    span_ms: int = 20 * 24 * HOUR_MS,
) -> st.SearchStrategy[LeadEvent]:
    """Valid, realistic events of all six types, colliding on lead ids and event ids."""
    common = {
        "event_id": st.sampled_from(event_ids),
        "lead_id": st.sampled_from(lead_ids),
        "occurred_at": st.integers(start_ms, start_ms + span_ms),
        "source": _maybe(["hubspot", "outreach", "salesforce"]),
    }
    return st.one_of(
        st.builds(
            FormFilled, **common, form_type=st.sampled_from(FORM_TYPES), form_id=_maybe(["f1", "f2"]),
            utm_source=_maybe(["google", "linkedin"]), utm_medium=_maybe(MEDIUMS), utm_campaign=_maybe(CAMPAIGNS),
            fields=firmographics(),
        ),
        st.builds(EmailEngaged, **common, action=st.sampled_from(sorted(EMAIL_ACTIONS)), campaign_id=_maybe(["c1"])),
        st.builds(
            SalesTouched, **common,
            rep_id=_maybe(OWNERS), channel=_maybe(sorted(TOUCH_CHANNELS)), outcome=_maybe(["connected", "voicemail"]),
        ),
        st.builds(LeadAssigned, **common, owner_id=st.sampled_from(OWNERS), team=_maybe(TEAMS)),
        st.builds(
            SalesDispositioned, **common,
            decision=st.sampled_from(sorted(DECISIONS)), reason=_maybe(["", "budget", "no_fit"]), rep_id=_maybe(OWNERS),
        ),
        st.builds(
            DealStageChanged, **common,
            stage=st.sampled_from(sorted(DEAL_STAGES)), deal_id=_maybe(["d1", "d2"]),
            amount=st.none() | st.floats(0, 1e7, allow_nan=False),
        ),
    )


def wild_events() -> st.SearchStrategy[LeadEvent]:
    """Valid events with arbitrary text, any representable time and any finite amount: for codecs."""
    text = st.text(min_size=1)
    opt = _maybe(st.text())
    common = {
        "event_id": text,
        "lead_id": text,
        "occurred_at": st.integers(0, LAST_RFC3339_MS),
        "source": opt,
    }
    return st.one_of(
        st.builds(
            FormFilled, **common, form_type=text, form_id=opt, utm_source=opt, utm_medium=opt, utm_campaign=opt,
            fields=st.dictionaries(
                st.text(min_size=1, max_size=MAX_FIELD_NAME),
                st.text(max_size=MAX_FIELD_TEXT) | st.integers(-(2**63), 2**63 - 1)
                | st.floats(allow_nan=False, allow_infinity=False),
                max_size=MAX_FIELDS,
            ).map(lambda d: tuple(d.items())),
        ),
        st.builds(EmailEngaged, **common, action=st.sampled_from(sorted(EMAIL_ACTIONS)), campaign_id=opt),
        st.builds(SalesTouched, **common, rep_id=opt, channel=_maybe(sorted(TOUCH_CHANNELS)), outcome=opt),
        st.builds(LeadAssigned, **common, owner_id=text, team=opt),
        st.builds(SalesDispositioned, **common, decision=st.sampled_from(sorted(DECISIONS)), reason=opt, rep_id=opt),
        st.builds(
            DealStageChanged, **common,
            stage=st.sampled_from(sorted(DEAL_STAGES)), deal_id=opt,
            amount=st.none() | st.floats(allow_nan=False, allow_infinity=False),
        ),
    )


_times = st.integers(0, LAST_RFC3339_MS)
_ids = st.text(min_size=1, max_size=20)
_opt_text = _maybe(st.text(max_size=20))
_policy_versions = _maybe(st.from_regex(r"[0-9a-f]{12}", fullmatch=True))


def lifecycle_records() -> st.SearchStrategy[LifecycleRecord]:
    return st.builds(
        LifecycleRecord,
        transition_id=_ids, lead_id=_ids, from_stage=_maybe(STAGES), to_stage=st.sampled_from(STAGES),
        trigger_event_id=_ids, trigger_event_type=st.sampled_from(sorted(e.event_type for e in (
            FormFilled, EmailEngaged, SalesTouched, LeadAssigned, SalesDispositioned, DealStageChanged))),
        occurred_at=_times, owner_id=_opt_text, team=_opt_text, score=st.integers(-1000, 1000),
        skipped_stages=st.lists(st.sampled_from(STAGES), max_size=4).map(tuple),
        time_in_previous_stage_ms=st.none() | st.integers(0, 10**12), reason=_opt_text,
        first_channel=_opt_text, first_campaign=_opt_text, mql_channel=_opt_text, mql_campaign=_opt_text,
        grade=_maybe(["A", "B", "C", "D"]), amount=st.none() | st.floats(allow_nan=False, allow_infinity=False),
        policy_version=_policy_versions,
    )


def alert_records() -> st.SearchStrategy[AlertRecord]:
    return st.builds(
        AlertRecord,
        alert_id=_ids, type=st.sampled_from(ALERT_TYPES), lead_id=_ids, sla=_opt_text, reason=_opt_text,
        level=st.integers(1, 2), stage=st.sampled_from(STAGES), owner_id=_opt_text, team=_opt_text,
        started_at=st.none() | _times, due_at=st.none() | _times, detected_at=_times,
        overdue_by_ms=st.integers(0, 10**12), resolves_alert_id=_opt_text,
        policy_version=_policy_versions,
    )


def dlq_records() -> st.SearchStrategy[DlqRecord]:
    return st.builds(
        DlqRecord,
        error=st.sampled_from(["invalid_json", "missing_field", "invalid_avro"]), detail=st.text(max_size=40),
        source_topic=_ids, source_partition=st.none() | st.integers(0, 2**31 - 1),
        source_offset=st.none() | st.integers(0, 2**63 - 1), key=st.none() | st.binary(max_size=20),
        original=st.binary(max_size=100),
    )


def output_records() -> st.SearchStrategy[LifecycleRecord | AlertRecord | DlqRecord]:
    return lifecycle_records() | alert_records() | dlq_records()
