"""The closed-loop report: funnel, time in stage, SLA compliance, reasons, leads lost.

``build_report(lifecycle_records, alert_records)`` is pure (no I/O, no clock): the same records always
give the same ``Report``. ``render_text`` / ``render_json`` / ``leadflow.report_html.render_html`` show it;
``leadflow report SOURCE`` (``leadflow.cli``) renders it.

Derivations (the outputs carry no "SLA started" record, so starts are derived):

- *Reached* a stage: the lead entered it (``to_stage``) or jumped over it (``skipped_stages``).
  Conversion X→Y = leads that reached X and Y / leads that reached X.
- *Time in stage*: ``time_in_previous_stage_ms`` of every record, keyed by its ``from_stage``; median
  (``statistics.median``) and p90 (nearest rank: the ⌈0.9·n⌉-th smallest).
- *SLA instances*, keyed (lead_id, sla, started_at): from lifecycle records — entering ``mql`` starts
  ``first_touch`` (``assignment`` when ``owner_id`` is null), ``sal`` starts ``qualification``, ``sql``
  ``opportunity``, ``recycled`` ``nurture`` — united with every instance an SLA alert names (warning,
  breach, resolution), which also catches ``first_touch`` restarts after a (re)assignment. A lead that
  entered ``mql`` unassigned and left it with an owner had one ``first_touch`` instance even if no alert
  names it; it is counted once.
- *Breached*: a ``follow_up_overdue`` of level 1, or a ``handoff_broken`` with a deadline (reasons
  ``unassigned``, ``recycled_not_nurtured``). *Resolved*: an ``sla_resolved`` names the breach alert.
  *Retracted* (SPEC 9): an ``sla_retracted`` names it — the satisfying event happened at or before
  the deadline and only arrived late, so the breach was false and the instance was met on time.
  *Ended*: resolved or retracted, or the lead later left the SLA's stage (for ``assignment``: or got
  an owner).
- Outcome, one per instance: ``met`` (ended, never breached or its breach retracted), ``late``
  (breached, then resolved), ``open`` (breached, not resolved when the data ends), ``in_progress``
  (started, neither breached nor ended yet). Compliance = met / (met + late + open). Owner and team:
  the breach alert's when breached (who held the lead when it broke), else those of the record that
  started it.
- *Time on hold* (SPEC 9), per SLA: the ``held_ms`` of every ``sla_resumed``, plus, for a hold no
  resume followed (``sla_held`` last), the time from that ``sla_held``'s ``detected_at`` to the end of
  the instance (the record that left its stage) or, while it runs, to the end of the data; such an
  instance is *on hold now*. It is shown, never counted against the owner: a resume moves the
  deadline by the time held, so compliance already excludes it.
- Instant broken handoffs (``ping_pong``, ``rejected_without_reason``) are not SLA instances; they
  are counted by reason.
- *Lost*: leads whose latest stage is ``recycled`` or ``disqualified``, by the stage they left.
- *By channel, campaign, grade* (SPEC section 10): each lead is grouped by the ``first_channel``,
  ``first_campaign`` and ``grade`` of its latest record (``(none)`` when null). *MQLs* are leads
  that moved into ``mql`` (marketing handed them over; a lead that jumped over it, say by a deal on
  an engaged lead, is not one); *SALs* are leads that sales accepted when they left ``mql`` (into
  ``sal``, or qualified or won straight from it); SQLs, opportunities, customers and disqualified are
  leads that *reached* the stage by any path (as in the funnel), so a deal sales found on its own
  still counts for its lead's first touch; *rejected* are leads with a ``reject`` (a disposition
  into ``recycled``), and their reasons count per reject; revenue is the sum (``math.fsum``: exact whatever the order) of ``amount`` of the moves
  to ``customer``; MQL→SAL time is the median ``time_in_previous_stage_ms`` of ``mql → sal`` moves.
  SAL rate = SALs / MQLs, reject rate = rejected / MQLs.
- *By week*: per ISO week (UTC) of each move into ``mql``: MQL moves, how many of them went on to
  ``sal`` (the lead's next move entered or jumped over it), and the compliance of the ``first_touch``
  instances that started that week (an MQL move with an owner starts one).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from lifecycle import slas
from lifecycle.records import AlertRecord, LifecycleRecord
from lifecycle.slas import SLA_NAMES
from lifecycle.stages import MAIN_PATH, Stage
from schemas.wire import format_time

FUNNEL_STAGES: Final = tuple(stage.value for stage in MAIN_PATH)
ALL_STAGES: Final = tuple(stage.value for stage in Stage)
CONVERSIONS: Final = (("mql", "sal"), ("sal", "sql"), ("sql", "opportunity"), ("opportunity", "customer"),
                      ("mql", "customer"))
SLAS: Final = SLA_NAMES
SLA_STAGE: Final = {name: stage.value for name, stage in slas.SLA_STAGE.items()}
STARTS_ON_ENTRY: Final = {stage.value: name for stage, name in slas.STARTS_ON_ENTRY.items()}
DEADLINE_REASONS: Final = slas.DEADLINE_REASONS
#: Upper bounds (ms) of the time-in-stage histogram buckets; the last bucket is open-ended.
HISTOGRAM_EDGES_MS: Final = (3_600_000, 4 * 3_600_000, 86_400_000, 3 * 86_400_000, 7 * 86_400_000,
                             30 * 86_400_000)
HISTOGRAM_LABELS: Final = ("<1h", "1–4h", "4h–1d", "1–3d", "3–7d", "7–30d", "≥30d")
NONE_LABEL: Final = "(none)"
TOP_REASONS: Final = 10
TOP_GROUP_REASONS: Final = 3  # reject reasons shown per channel, campaign or grade


@dataclass(frozen=True)
class FunnelStage:
    stage: str
    reached: int  # leads that entered or jumped over it
    current: int  # leads in it now


@dataclass(frozen=True)
class Conversion:
    from_stage: str
    to_stage: str
    leads: int  # reached from_stage
    converted: int  # ... and to_stage
    rate: float | None


@dataclass(frozen=True)
class StageTime:
    stage: str
    count: int
    median_ms: float | None
    p90_ms: int | None
    histogram: tuple[int, ...]  # counts per HISTOGRAM_LABELS bucket


@dataclass(frozen=True)
class Compliance:
    group: str  # the SLA, owner or team
    met: int
    late: int
    open: int
    in_progress: int

    @property
    def decided(self) -> int:
        return self.met + self.late + self.open

    @property
    def rate(self) -> float | None:
        return self.met / self.decided if self.decided else None


@dataclass(frozen=True)
class SlaClock:
    """What the fair clock (SPEC 9) did to one SLA's instances: shown, never held against anyone."""

    sla: str
    retracted: int  # instances whose breach was retracted (late evidence): counted met on time
    holds: int  # instances that were put on hold
    held_ms: int  # time on hold, all instances
    on_hold: int  # instances still on hold when the data ends


@dataclass(frozen=True)
class ReasonCount:
    decision: str  # reject | disqualify
    reason: str
    count: int


@dataclass(frozen=True)
class LostLeads:
    from_stage: str
    recycled: int
    disqualified: int


@dataclass(frozen=True)
class SourceQuality:
    """What became of one group of leads (a first-touch channel or campaign, or a grade)."""

    group: str
    leads: int
    mqls: int
    sals: int
    rejected: int
    disqualified: int
    sqls: int
    opportunities: int
    customers: int
    revenue: float
    top_reject_reasons: tuple[tuple[str, int], ...]  # (reason, rejects), most frequent first
    median_mql_to_sal_ms: float | None

    @property
    def sal_rate(self) -> float | None:
        return self.sals / self.mqls if self.mqls else None

    @property
    def reject_rate(self) -> float | None:
        return self.rejected / self.mqls if self.mqls else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "group": self.group, "leads": self.leads, "mqls": self.mqls, "sals": self.sals,
            "rejected": self.rejected, "disqualified": self.disqualified, "sqls": self.sqls,
            "opportunities": self.opportunities, "customers": self.customers, "revenue": self.revenue,
            "sal_rate": self.sal_rate, "reject_rate": self.reject_rate,
            "top_reject_reasons": [{"reason": r, "count": n} for r, n in self.top_reject_reasons],
            "median_mql_to_sal_ms": self.median_mql_to_sal_ms,
        }


@dataclass(frozen=True)
class WeekTrend:
    """MQL moves of one ISO week, how many sales accepted, and first-touch compliance that week."""

    week: str  # ISO 8601 week, "2026-W10"
    mqls: int
    sals: int
    first_touch_met: int
    first_touch_decided: int  # met + late + open

    @property
    def sal_rate(self) -> float | None:
        return self.sals / self.mqls if self.mqls else None

    @property
    def first_touch_compliance(self) -> float | None:
        return self.first_touch_met / self.first_touch_decided if self.first_touch_decided else None

    def as_dict(self) -> dict[str, Any]:
        return {"week": self.week, "mqls": self.mqls, "sals": self.sals, "sal_rate": self.sal_rate,
                "first_touch_met": self.first_touch_met, "first_touch_decided": self.first_touch_decided,
                "first_touch_compliance": self.first_touch_compliance}


@dataclass(frozen=True)
class Report:
    leads: int
    transitions: int
    alerts: int
    first_at: int | None
    last_at: int | None
    funnel: tuple[FunnelStage, ...]
    conversions: tuple[Conversion, ...]
    time_in_stage: tuple[StageTime, ...]
    compliance_by_sla: tuple[Compliance, ...]
    compliance_by_owner: tuple[Compliance, ...]
    compliance_by_team: tuple[Compliance, ...]
    instant_handoffs: tuple[tuple[str, int], ...]  # (reason, count) of ping_pong / rejected_without_reason
    reasons: tuple[ReasonCount, ...]
    lost: tuple[LostLeads, ...]
    alerts_by_type: tuple[tuple[str, int], ...]
    clock_by_sla: tuple[SlaClock, ...] = ()  # late evidence and holds (SPEC 9)
    by_channel: tuple[SourceQuality, ...] = ()
    by_campaign: tuple[SourceQuality, ...] = ()
    by_grade: tuple[SourceQuality, ...] = ()
    by_week: tuple[WeekTrend, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key in ("by_channel", "by_campaign", "by_grade", "by_week"):
            out[key] = [row.as_dict() for row in getattr(self, key)]
        for key in ("compliance_by_sla", "compliance_by_owner", "compliance_by_team"):
            for row, c in zip(out[key], getattr(self, key)):
                row["rate"] = c.rate
        out["first_at"] = format_time(self.first_at) if self.first_at is not None else None
        out["last_at"] = format_time(self.last_at) if self.last_at is not None else None
        out["instant_handoffs"] = dict(self.instant_handoffs)
        out["alerts_by_type"] = dict(self.alerts_by_type)
        out["histogram_buckets"] = list(HISTOGRAM_LABELS)
        return out


# -- building -------------------------------------------------------------------------------------

@dataclass
class _Instance:
    lead_id: str
    sla: str
    started_at: int | None
    owner_id: str | None = None
    team: str | None = None
    ended: bool = False
    ended_at: int | None = None  # when it ended, if a lifecycle record says
    breach_alert_id: str | None = None
    resolved: bool = False
    retracted: bool = False  # its breach was false: the evidence came from before the deadline
    was_held: bool = False
    held_ms: int = 0
    on_hold: bool = False
    opened_at: int | None = None  # when an instance without a known start began (its MQL move)

    @property
    def began(self) -> int | None:
        return self.started_at if self.started_at is not None else self.opened_at

    @property
    def outcome(self) -> str:
        if self.breach_alert_id is not None and not self.retracted:
            return "late" if self.resolved else "open"
        return "met" if self.ended else "in_progress"


def _is_breach(alert: AlertRecord) -> bool:
    if alert.type == "follow_up_overdue":
        return alert.level == 1
    return alert.type == "handoff_broken" and alert.reason in DEADLINE_REASONS and alert.due_at is not None


def percentile_nearest_rank(sorted_values: list[int], fraction: float) -> int | None:
    if not sorted_values:
        return None
    return sorted_values[max(1, math.ceil(fraction * len(sorted_values))) - 1]


def _bucket(ms: int) -> int:
    for i, edge in enumerate(HISTOGRAM_EDGES_MS):
        if ms < edge:
            return i
    return len(HISTOGRAM_EDGES_MS)


def _derive_end(inst: _Instance, records: Iterable[LifecycleRecord], instances: Iterable[_Instance]) -> None:
    """When an instance known only from its alerts ended: the lead left the SLA's stage, or the SLA
    restarted (a new owner restarts ``first_touch``), whichever came first after it started."""
    start = inst.started_at
    if start is None:
        return
    stage = SLA_STAGE[inst.sla]
    ends = [r.occurred_at for r in records if r.from_stage == stage and r.occurred_at >= start]
    ends += [i.started_at for i in instances if i.lead_id == inst.lead_id and i.sla == inst.sla
             and i.started_at is not None and i.started_at > start]
    if ends:
        inst.ended, inst.ended_at = True, min(ends)


def _hold_time(inst: _Instance, marks: list[AlertRecord], data_end: int) -> None:
    """Time on hold of one instance from its ``sla_held`` / ``sla_resumed`` alerts (any order)."""
    marks.sort(key=lambda a: (a.detected_at, a.type != "sla_held", a.alert_id))
    inst.was_held = True
    inst.held_ms = sum(a.held_ms or 0 for a in marks if a.type == "sla_resumed")
    last = marks[-1]
    if last.type != "sla_held":
        return
    # a hold no resume followed: it ran until the instance ended (a stage change ends a hold), or
    # it still runs when the data ends
    if not inst.ended:
        inst.on_hold = True
        inst.held_ms += max(0, data_end - last.detected_at)
    elif inst.ended_at is not None:
        inst.held_ms += max(0, inst.ended_at - last.detected_at)


def _sla_instances(by_lead: dict[str, list[LifecycleRecord]], alerts: list[AlertRecord],
                   data_end: int = 0) -> list[_Instance]:
    instances: dict[tuple[str, str, int | None], _Instance] = {}
    inferred_first_touch: list[tuple[str, int, int]] = []  # (lead, entered mql, left mql) unassigned entry

    for lead_id, records in by_lead.items():
        for i, r in enumerate(records):
            if r.to_stage == "mql":
                sla = "first_touch" if r.owner_id is not None else "assignment"
            else:
                sla = STARTS_ON_ENTRY.get(r.to_stage)
            if sla is None:
                continue
            nxt = records[i + 1] if i + 1 < len(records) else None
            inst = instances.setdefault((lead_id, sla, r.occurred_at), _Instance(lead_id, sla, r.occurred_at))
            inst.owner_id, inst.team = r.owner_id, r.team
            inst.ended = nxt is not None
            inst.ended_at = nxt.occurred_at if nxt is not None else None
            if sla == "assignment" and nxt is not None and nxt.owner_id is not None:
                inferred_first_touch.append((lead_id, r.occurred_at, nxt.occurred_at))

    resolved_ids = {a.resolves_alert_id for a in alerts if a.type == "sla_resolved" and a.resolves_alert_id}
    retracted_ids = {a.resolves_alert_id for a in alerts if a.type == "sla_retracted" and a.resolves_alert_id}
    holds: dict[tuple[str, str, int | None], list[AlertRecord]] = defaultdict(list)
    from_alerts: list[_Instance] = []
    for a in alerts:
        if a.sla is None or a.due_at is None:  # instant handoffs name no SLA instance
            continue
        key = (a.lead_id, a.sla, a.started_at)
        inst = instances.get(key)
        if inst is None:
            inst = instances[key] = _Instance(a.lead_id, a.sla, a.started_at, a.owner_id, a.team)
            from_alerts.append(inst)
        if a.type in ("sla_resolved", "sla_retracted"):
            inst.ended = True
        elif a.type in ("sla_held", "sla_resumed"):
            holds[key].append(a)
        elif _is_breach(a):
            inst.breach_alert_id = a.alert_id
            inst.owner_id, inst.team = a.owner_id, a.team
    for inst in instances.values():
        if inst.breach_alert_id is not None and inst.breach_alert_id in resolved_ids:
            inst.resolved = inst.ended = True
        if inst.breach_alert_id is not None and inst.breach_alert_id in retracted_ids:
            inst.retracted = inst.ended = True
    for inst in from_alerts:
        _derive_end(inst, by_lead.get(inst.lead_id, ()), instances.values())
    for key, marks in holds.items():
        _hold_time(instances[key], marks, data_end)

    for lead_id, entered, left in inferred_first_touch:
        seen = any(i.lead_id == lead_id and i.sla == "first_touch" and i.started_at is not None
                   and entered <= i.started_at <= left for i in instances.values())
        if not seen:
            owner = next(r for r in by_lead[lead_id] if r.occurred_at == left and r.owner_id is not None)
            instances[(lead_id, "first_touch", -entered - 1)] = _Instance(
                lead_id, "first_touch", None, owner.owner_id, owner.team, ended=True, opened_at=entered)
    return list(instances.values())


def _compliance(instances: list[_Instance], group_of: Any, order: Iterable[str] = ()) -> tuple[Compliance, ...]:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for name in order:
        counts[name]  # noqa: B018 - fixed rows first, even when empty
    for inst in instances:
        counts[group_of(inst) or NONE_LABEL][inst.outcome] += 1
    keys = list(order) + sorted(k for k in counts if k not in set(order))
    return tuple(Compliance(k, counts[k]["met"], counts[k]["late"], counts[k]["open"], counts[k]["in_progress"])
                 for k in keys)


def build_report(lifecycle_records: Iterable[LifecycleRecord], alert_records: Iterable[AlertRecord]) -> Report:
    """The report of these records. Repeats (same ``transition_id`` / ``alert_id``) count once."""
    lifecycle: dict[str, LifecycleRecord] = {}
    for r in lifecycle_records:
        lifecycle.setdefault(r.transition_id, r)
    alerts_by_id: dict[str, AlertRecord] = {}
    for a in alert_records:
        alerts_by_id.setdefault(a.alert_id, a)
    alerts = list(alerts_by_id.values())

    by_lead: dict[str, list[LifecycleRecord]] = defaultdict(list)
    for r in lifecycle.values():  # input order is the tie-break for records of the same millisecond
        by_lead[r.lead_id].append(r)
    for records in by_lead.values():
        records.sort(key=lambda r: r.occurred_at)

    reached: dict[str, set[str]] = defaultdict(set)
    current: Counter[str] = Counter()
    lost: dict[str, Counter[str]] = defaultdict(Counter)
    for lead_id, records in by_lead.items():
        for r in records:
            reached[r.to_stage].add(lead_id)
            for s in r.skipped_stages:
                reached[s].add(lead_id)
        latest = records[-1]
        current[latest.to_stage] += 1
        if latest.to_stage in ("recycled", "disqualified"):
            lost[latest.from_stage or NONE_LABEL][latest.to_stage] += 1

    funnel = tuple(FunnelStage(s, len(reached[s]), current[s]) for s in ALL_STAGES)
    conversions = []
    for a, b in CONVERSIONS:
        n, k = len(reached[a]), len(reached[a] & reached[b])
        conversions.append(Conversion(a, b, n, k, k / n if n else None))

    samples: dict[str, list[int]] = defaultdict(list)
    for r in lifecycle.values():
        if r.from_stage is not None and r.time_in_previous_stage_ms is not None:
            samples[r.from_stage].append(r.time_in_previous_stage_ms)
    times = []
    for stage in ALL_STAGES:
        values = sorted(samples.get(stage, ()))
        hist = [0] * len(HISTOGRAM_LABELS)
        for v in values:
            hist[_bucket(v)] += 1
        times.append(StageTime(stage, len(values), statistics.median(values) if values else None,
                               percentile_nearest_rank(values, 0.9), tuple(hist)))

    times_seen = [r.occurred_at for r in lifecycle.values()] + [a.detected_at for a in alerts]
    instances = _sla_instances(by_lead, alerts, max(times_seen, default=0))
    reasons: Counter[tuple[str, str]] = Counter()
    for r in lifecycle.values():
        if r.trigger_event_type == "sales_disposition" and r.to_stage in ("recycled", "disqualified"):
            decision = "reject" if r.to_stage == "recycled" else "disqualify"
            reasons[(decision, r.reason or NONE_LABEL)] += 1
    top: list[ReasonCount] = []
    for decision in ("reject", "disqualify"):
        rows = sorted(((k[1], n) for k, n in reasons.items() if k[0] == decision), key=lambda x: (-x[1], x[0]))
        top.extend(ReasonCount(decision, reason, n) for reason, n in rows[:TOP_REASONS])

    instant = Counter(a.reason or NONE_LABEL for a in alerts if a.type == "handoff_broken" and a.due_at is None)
    lost_order = [s for s in (*ALL_STAGES, NONE_LABEL) if s in lost]
    return Report(
        leads=len(by_lead),
        transitions=len(lifecycle),
        alerts=len(alerts),
        first_at=min(times_seen) if times_seen else None,
        last_at=max(times_seen) if times_seen else None,
        funnel=funnel,
        conversions=tuple(conversions),
        time_in_stage=tuple(times),
        compliance_by_sla=_compliance(instances, lambda i: i.sla, SLAS),
        compliance_by_owner=_compliance(instances, lambda i: i.owner_id),
        compliance_by_team=_compliance(instances, lambda i: i.team),
        instant_handoffs=tuple(sorted(instant.items())),
        reasons=tuple(top),
        lost=tuple(LostLeads(s, lost[s]["recycled"], lost[s]["disqualified"]) for s in lost_order),
        alerts_by_type=tuple(sorted(Counter(a.type for a in alerts).items())),
        clock_by_sla=_clock(instances),
        by_channel=_quality(by_lead, lambda r: r.first_channel),
        by_campaign=_quality(by_lead, lambda r: r.first_campaign),
        by_grade=_quality(by_lead, lambda r: r.grade, by_name=True),
        by_week=_weeks(by_lead, instances),
    )


def _reached(r: LifecycleRecord, stage: str) -> bool:
    return r.to_stage == stage or stage in r.skipped_stages


def _quality(by_lead: dict[str, list[LifecycleRecord]], group_of: Any, by_name: bool = False) -> tuple[SourceQuality, ...]:
    """One row per group of leads, a lead grouped by ``group_of`` its latest record."""
    leads: dict[str, list[list[LifecycleRecord]]] = defaultdict(list)
    for records in by_lead.values():
        leads[group_of(records[-1]) or NONE_LABEL].append(records)
    rows = []
    for group, members in leads.items():
        reached: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        rejected = 0
        revenue: list[float] = []
        mql_to_sal: list[int] = []
        for records in members:
            stages = {s for r in records for s in (r.to_stage, *r.skipped_stages)}
            stages.discard("mql")
            stages.discard("sal")
            if any(r.to_stage == "mql" for r in records):
                stages.add("mql")
            if any(r.from_stage == "mql" and _reached(r, "sal") for r in records):
                stages.add("sal")
            reached.update(stages)
            rejects = [r for r in records if r.trigger_event_type == "sales_disposition" and r.to_stage == "recycled"]
            rejected += bool(rejects)
            reasons.update(r.reason or NONE_LABEL for r in rejects)
            revenue.extend(r.amount for r in records if r.to_stage == "customer" and r.amount is not None)
            mql_to_sal.extend(r.time_in_previous_stage_ms for r in records
                              if r.from_stage == "mql" and r.to_stage == "sal" and r.time_in_previous_stage_ms is not None)
        top = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))[:TOP_GROUP_REASONS]
        rows.append(SourceQuality(
            group, len(members), reached["mql"], reached["sal"], rejected, reached["disqualified"], reached["sql"],
            reached["opportunity"], reached["customer"], math.fsum(revenue), tuple(top),
            statistics.median(mql_to_sal) if mql_to_sal else None))
    if by_name:
        order = lambda row: (row.group == NONE_LABEL, row.group)  # noqa: E731
    else:
        order = lambda row: (row.group == NONE_LABEL, -row.leads, row.group)  # noqa: E731
    return tuple(sorted(rows, key=order))


def iso_week(ms: int) -> str:
    """``2026-W10``: the ISO 8601 week (UTC) of an epoch-millisecond time."""
    year, week, _ = dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isocalendar()
    return f"{year}-W{week:02d}"


def _weeks(by_lead: dict[str, list[LifecycleRecord]], instances: list[_Instance]) -> tuple[WeekTrend, ...]:
    mqls: Counter[str] = Counter()
    sals: Counter[str] = Counter()
    for records in by_lead.values():
        # the k-th move into mql ends with the k-th move out of it (pairing by count, not by the
        # order of records of the same millisecond, keeps this independent of input order)
        entries = sorted(r.occurred_at for r in records if r.to_stage == "mql")
        exits = sorted((r.occurred_at, _reached(r, "sal")) for r in records if r.from_stage == "mql")
        for k, entered in enumerate(entries):
            week = iso_week(entered)
            mqls[week] += 1
            sals[week] += k < len(exits) and exits[k][1]
    met: Counter[str] = Counter()
    decided: Counter[str] = Counter()
    for inst in instances:
        if inst.sla == "first_touch" and inst.began is not None and inst.outcome != "in_progress":
            week = iso_week(inst.began)
            decided[week] += 1
            met[week] += inst.outcome == "met"
    weeks = sorted(set(mqls) | set(decided))
    return tuple(WeekTrend(w, mqls[w], sals[w], met[w], decided[w]) for w in weeks)


def _clock(instances: list[_Instance]) -> tuple[SlaClock, ...]:
    rows = []
    for name in SLAS:
        mine = [i for i in instances if i.sla == name]
        rows.append(SlaClock(name, sum(i.retracted for i in mine), sum(i.was_held for i in mine),
                             sum(i.held_ms for i in mine), sum(i.on_hold for i in mine)))
    return tuple(rows)


# -- rendering ------------------------------------------------------------------------------------

def duration(ms: float | None) -> str:
    """``93_600_000`` -> ``1d 2h``; short, for tables."""
    if ms is None:
        return "–"
    seconds = int(round(ms / 1000))
    if seconds < 60:
        return f"{seconds}s"
    minutes, _ = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m"


def percent(rate: float | None) -> str:
    return "–" if rate is None else f"{rate * 100:.1f}%"


def money(amount: float) -> str:
    return f"{amount:,.0f}"


def reasons_text(reasons: tuple[tuple[str, int], ...]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in reasons) or "–"


#: Rows of a by-campaign table in text and HTML (JSON has every group).
SHOWN_GROUPS: Final = 20
QUALITY_COLUMNS: Final = ("leads", "MQLs", "SALs", "rejected", "disq.", "SQLs", "opps", "won", "revenue",
                          "SAL rate", "reject rate", "MQL→SAL", "top reject reasons")
PIPELINE_COLUMNS: Final = ("leads", "MQLs", "SALs", "SQLs", "opps", "won", "revenue", "SAL rate", "MQL→SAL")
REJECTION_COLUMNS: Final = ("MQLs", "rejected", "reject rate", "disq.", "top reject reasons")


def quality_cells(q: SourceQuality) -> tuple[str, ...]:
    """A by-channel/campaign/grade row as table cells, in ``QUALITY_COLUMNS`` order."""
    return (str(q.leads), str(q.mqls), str(q.sals), str(q.rejected), str(q.disqualified), str(q.sqls),
            str(q.opportunities), str(q.customers), money(q.revenue), percent(q.sal_rate), percent(q.reject_rate),
            duration(q.median_mql_to_sal_ms), reasons_text(q.top_reject_reasons))


def week_cells(w: WeekTrend) -> tuple[str, ...]:
    return (w.week, str(w.mqls), str(w.sals), percent(w.sal_rate), f"{w.first_touch_met}/{w.first_touch_decided}",
            percent(w.first_touch_compliance))


WEEK_COLUMNS: Final = ("ISO week", "MQLs", "accepted (SAL)", "SAL rate", "first touch met", "first-touch compliance")


def render_json(report: Report) -> str:
    return json.dumps(report.as_dict(), indent=2, ensure_ascii=False) + "\n"


def render_text(report: Report, console: Any) -> None:
    """Rich tables on ``console`` (a ``rich.console.Console``); every value from the records goes
    through ``leadflow.terminal.safe`` (no markup, no control characters)."""
    from rich import box
    from rich.table import Table

    from leadflow.terminal import safe

    period = (f"{format_time(report.first_at)} → {format_time(report.last_at)}"
              if report.first_at is not None and report.last_at is not None else "no records")
    console.print(f"[bold]leadflow report[/]  {report.leads} leads, {report.transitions} stage changes, "
                  f"{report.alerts} alerts  ({period})")

    t = Table(title="Funnel")
    for col in ("stage", "reached", "now in stage"):
        t.add_column(col, justify="left" if col == "stage" else "right")
    for f in report.funnel:
        t.add_row(safe(f.stage), str(f.reached), str(f.current))
    console.print(t)

    t = Table(title="Conversion")
    for col in ("from → to", "leads", "converted", "rate"):
        t.add_column(col, justify="left" if col == "from → to" else "right")
    for c in report.conversions:
        t.add_row(safe(f"{c.from_stage} → {c.to_stage}"), str(c.leads), str(c.converted), percent(c.rate))
    console.print(t)

    t = Table(title="Time in stage")
    for col in ("stage", "left", "median", "p90"):
        t.add_column(col, justify="left" if col == "stage" else "right")
    for s in report.time_in_stage:
        if s.count:
            t.add_row(safe(s.stage), str(s.count), duration(s.median_ms), duration(s.p90_ms))
    console.print(t)

    for title, rows in (("SLA compliance by SLA", report.compliance_by_sla),
                        ("SLA compliance by owner", report.compliance_by_owner),
                        ("SLA compliance by team", report.compliance_by_team)):
        t = Table(title=title)
        for col in ("group", "met on time", "late", "open", "in progress", "compliance"):
            t.add_column(col, justify="left" if col == "group" else "right")
        for c in rows:
            t.add_row(safe(c.group), str(c.met), str(c.late), str(c.open), str(c.in_progress), percent(c.rate))
        console.print(t)

    t = Table(title="Late evidence and holds by SLA (never counted against the owner)")
    for col in ("SLA", "breaches retracted", "put on hold", "time on hold", "on hold now"):
        t.add_column(col, justify="left" if col == "SLA" else "right")
    for k in report.clock_by_sla:
        t.add_row(k.sla, str(k.retracted), str(k.holds), duration(k.held_ms), str(k.on_hold))
    console.print(t)

    t = Table(title="Top reject and disqualify reasons")
    for col in ("decision", "reason", "leads"):
        t.add_column(col, justify="right" if col == "leads" else "left")
    for r in report.reasons:
        t.add_row(safe(r.decision), safe(r.reason), str(r.count))
    console.print(t)

    t = Table(title="Leads lost, by the stage they left")
    for col in ("left stage", "recycled", "disqualified"):
        t.add_column(col, justify="left" if col == "left stage" else "right")
    for lost in report.lost:
        t.add_row(safe(lost.from_stage), str(lost.recycled), str(lost.disqualified))
    console.print(t)
    if report.instant_handoffs:
        console.print(safe("Instant broken handoffs: " + ", ".join(f"{r} {n}" for r, n in report.instant_handoffs)))

    for title, label, rows in (("By first-touch channel", "channel", report.by_channel),
                               ("By first-touch campaign", "campaign", report.by_campaign),
                               ("By grade", "grade", report.by_grade)):
        # two tables of one row per group, so each fits an 80-column terminal
        for part, columns in ((" — pipeline and revenue", PIPELINE_COLUMNS), (" — rejections", REJECTION_COLUMNS)):
            t = Table(title=title + part, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
            t.add_column(label, overflow="fold", min_width=8)
            for col in columns:
                reasons = col == "top reject reasons"
                t.add_column(col, justify="left" if reasons else "right", overflow="fold", no_wrap=not reasons)
            for q in rows[:SHOWN_GROUPS]:
                cells = dict(zip(QUALITY_COLUMNS, quality_cells(q)))
                t.add_row(safe(q.group), *(safe(cells[col]) for col in columns))
            console.print(t)
        if len(rows) > SHOWN_GROUPS:
            console.print(f"… {len(rows) - SHOWN_GROUPS} more {label}s in --format json", markup=False)

    t = Table(title="By ISO week of the MQL move")
    for col in WEEK_COLUMNS:
        t.add_column(col, justify="left" if col == "ISO week" else "right")
    for w in report.by_week:
        t.add_row(*week_cells(w))
    console.print(t)
