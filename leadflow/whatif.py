"""``leadflow whatif``: the same events replayed under the current and a candidate policy, compared.

The two replays run side by side in two processes (each into a temporary directory of its own);
each returns its report (``leadflow.report.build_report``) and, per lead, its final stage, its
stage path and its SLA breaches. The comparison (``compare``) is pure and gives, each as current,
candidate and difference: alerts by type, SLA compliance by SLA, team and owner, the funnel and the
conversion rates, MQLs and SAL rate by channel (when the report has ``by_channel``), and up to
``LEADS_SHOWN`` leads whose final stage or breach count differs, with why in words.

JSON: ``{"current": <report>, "candidate": <report>, "diff": {...}, "policies": {...}}`` where
``<report>`` is the ``leadflow report --format json`` document.
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any, Final

from leadflow.report import Report, build_report
from lifecycle.calendar import calendar_for
from lifecycle.errors import LeadflowError
from lifecycle.policy import Policy
from lifecycle.processor import Tally
from lifecycle.records import AlertRecord, LifecycleRecord, Record
from lifecycle.slas import SLA_STAGE

#: Changed leads listed at most.
LEADS_SHOWN: Final = 20
_STAGE_OF_SLA: Final = {name: stage.value for name, stage in SLA_STAGE.items()}
#: What ends each SLA, in words (``first_touch``: "touch came 2 h 30 m after assignment").
_EVIDENCE: Final = {"assignment": "assignment", "first_touch": "touch", "qualification": "qualification",
                    "opportunity": "deal", "nurture": "engagement"}
_EVENT_WORDS: Final = {"sales_touch": "touch", "sales_disposition": "disposition", "lead_assigned": "assignment",
                       "deal_stage_change": "deal stage change", "form_fill": "form fill",
                       "email_engagement": "email engagement"}
#: Alert types whose increase is bad news; the others are shown without judgement.
_BAD_ALERTS: Final = ("follow_up_overdue", "handoff_broken", "sla_warning")


class WhatIfError(LeadflowError):
    """A replay of the comparison failed (its reason, in one line)."""


# -- one replay, in a process of its own ----------------------------------------------------------

@dataclass(frozen=True)
class Breach:
    """One SLA breach of a lead, and what ended the SLA (None: nothing, by the end of the data)."""

    sla: str
    started_at: int | None
    due_at: int
    team: str | None
    ended_at: int | None
    ended_by: str | None  # the event type that ended it, or "reassignment"


@dataclass(frozen=True)
class LeadOutcome:
    final_stage: str
    path: tuple[tuple[str, int, str, int], ...]  # (to_stage, occurred_at, trigger event type, score)
    breaches: tuple[Breach, ...]


@dataclass(frozen=True)
class Run:
    """What one replay gives the comparison."""

    source: str
    version: str
    report: Report
    leads: dict[str, LeadOutcome]
    tally: Tally
    pid: int  # the process that replayed (they are two)


def _is_breach(alert: AlertRecord) -> bool:
    if alert.type == "follow_up_overdue":
        return alert.level == 1
    return alert.type == "handoff_broken" and alert.due_at is not None


def lead_outcomes(lifecycle: Sequence[LifecycleRecord], alerts: Sequence[AlertRecord]) -> dict[str, LeadOutcome]:
    """Per lead: its final stage, stage path and breaches (retracted ones are no breach)."""
    paths: dict[str, list[LifecycleRecord]] = {}
    for r in lifecycle:
        paths.setdefault(r.lead_id, []).append(r)
    retracted = {a.resolves_alert_id for a in alerts if a.type == "sla_retracted"}
    resolved = {a.resolves_alert_id: a for a in alerts if a.type == "sla_resolved"}
    breaches: dict[str, list[Breach]] = {}
    for a in alerts:
        if not _is_breach(a) or a.alert_id in retracted or a.sla is None or a.due_at is None:
            continue
        ended_at, ended_by = None, None
        start = a.started_at if a.started_at is not None else a.due_at
        stage = _STAGE_OF_SLA.get(a.sla)
        left = next((r for r in paths.get(a.lead_id, ()) if r.occurred_at >= start and r.from_stage == stage), None)
        if left is not None:
            ended_at, ended_by = left.occurred_at, left.trigger_event_type
        elif a.alert_id in resolved:
            ended_at, ended_by = resolved[a.alert_id].detected_at, "reassignment"
        breaches.setdefault(a.lead_id, []).append(Breach(a.sla, a.started_at, a.due_at, a.team, ended_at, ended_by))
    return {
        lead_id: LeadOutcome(
            records[-1].to_stage,
            tuple((r.to_stage, r.occurred_at, r.trigger_event_type, r.score) for r in records),
            tuple(breaches.get(lead_id, ())),
        )
        for lead_id, records in paths.items()
    }


def replay_one(files: Sequence[str], policy_text: str | None, policy_file: str | None,
               until: int | None) -> Run:
    """Replay ``files`` under the policy in ``policy_text`` (None: the built-in defaults) into a
    temporary directory; runs in a child process."""
    from leadflow.replay import Source, replay
    from schemas.policy_file import parse_policy

    try:
        policy = parse_policy(policy_text, policy_file or "<policy>") if policy_text is not None else Policy()
        lifecycle: list[LifecycleRecord] = []
        alerts: list[AlertRecord] = []

        def keep(record: Record) -> None:
            if type(record) is LifecycleRecord:
                lifecycle.append(record)
            elif type(record) is AlertRecord:
                alerts.append(record)

        with tempfile.TemporaryDirectory(prefix="leadflow-whatif-") as out:
            tally = replay([Source(name) for name in files], Path(out), policy, until, on_record=keep)
        return Run(policy.source, policy.policy_version, build_report(lifecycle, alerts),
                   lead_outcomes(lifecycle, alerts), tally, os.getpid())
    except Exception as exc:  # noqa: BLE001 - crosses a process boundary: one picklable line
        raise WhatIfError(f"replay under {policy_file or 'the built-in policy'}: "
                          f"{type(exc).__name__}: {exc}") from None


def run(files: Sequence[str], current: tuple[str | None, str | None], candidate: tuple[str | None, str | None],
        until: int | None) -> tuple[Run, Run]:
    """Both replays, side by side in two processes. ``current`` / ``candidate``: (the policy's TOML
    text, its file name); (None, None) is the built-in policy."""
    try:
        context = multiprocessing.get_context("fork")  # this process runs no thread: fork is safe, and fast
    except ValueError:
        context = multiprocessing.get_context()
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        futures = [pool.submit(replay_one, list(files), text, name, until) for text, name in (current, candidate)]
        return futures[0].result(), futures[1].result()


# -- the comparison (pure) ----------------------------------------------------------------------------

def triple(current: Any, candidate: Any) -> dict[str, Any]:
    """``{"current", "candidate", "difference"}``; the difference is None when a side is None."""
    difference = None if current is None or candidate is None else candidate - current
    if isinstance(difference, float):
        difference = round(difference, 12)  # 0.2 - 0.6 is -0.39999999999999997
    return {"current": current, "candidate": candidate, "difference": difference}


def _by_group(rows: Iterable[dict[str, Any]], key: str = "group") -> dict[str, dict[str, Any]]:
    return {row[key]: row for row in rows}


def _groups(current: Iterable[str], candidate: Iterable[str]) -> list[str]:
    seen = list(current)
    return seen + [g for g in candidate if g not in seen]


def _compliance(current: list[dict[str, Any]], candidate: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cur, cand = _by_group(current), _by_group(candidate)
    empty = {"met": 0, "late": 0, "open": 0, "in_progress": 0, "rate": None}
    rows = []
    for group in _groups(cur, cand):
        a, b = cur.get(group, empty), cand.get(group, empty)
        rows.append({"group": group, **{k: triple(a[k], b[k]) for k in ("met", "late", "open", "in_progress", "rate")}})
    return rows


def _channels(current: list[dict[str, Any]], candidate: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cur, cand = _by_group(current), _by_group(candidate)
    empty = {"mqls": 0, "sals": 0, "sal_rate": None}
    return [{"group": g, **{k: triple(cur.get(g, empty).get(k), cand.get(g, empty).get(k))
                            for k in ("mqls", "sals", "sal_rate")}}
            for g in _groups(cur, cand)]


def clock(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def span(ms: int) -> str:
    """``9_000_000`` -> ``2 h 30 m``: the largest two units."""
    seconds = max(0, ms) // 1000
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size} {unit}")
            seconds %= size
    return " ".join(parts[:2])


def _limit(policy: Policy, sla: str, team: str | None) -> str:
    rule = policy.for_team(team).slas[sla]
    return f"limit {rule.within}{' of business time' if rule.business else ''}"


def _started_by(sla: str, started_at: int | None, outcome: LeadOutcome) -> str:
    if sla == "first_touch":
        became_mql = any(stage == "mql" and at == started_at for stage, at, _, _ in outcome.path)
        return "the MQL" if became_mql else "assignment"
    return {"assignment": "the MQL", "qualification": "acceptance", "opportunity": "qualification",
            "nurture": "recycling"}.get(sla, "the start")


def explain_breach(breach: Breach, outcome: LeadOutcome, policy: Policy, side: str) -> str:
    """``first_touch breach at 2026-03-02 12:00 UTC under the candidate only: touch came 2 h 30 m
    after assignment (limit 2h)``."""
    started_by = _started_by(breach.sla, breach.started_at, outcome)
    start = breach.started_at if breach.started_at is not None else breach.due_at
    if breach.ended_at is None:
        what = f"no {_EVIDENCE.get(breach.sla, 'evidence')} by the end of the data"
    else:
        if breach.ended_by == "reassignment":
            what = f"reassigned {span(breach.ended_at - start)} after {started_by}"
        else:
            word = _EVENT_WORDS.get(breach.ended_by or "", breach.ended_by or "evidence")
            what = f"{word} came {span(breach.ended_at - start)} after {started_by}"
        team = policy.for_team(breach.team)
        if team.slas[breach.sla].business:
            working = calendar_for(team.calendar).working_ms_between(start, breach.ended_at)
            if working != breach.ended_at - start:
                what += f", {span(working)} of it business time"
    return (f"{breach.sla} breach at {clock(breach.due_at)} under the {side} only: {what} "
            f"({_limit(policy, breach.sla, breach.team)})")


def _explain_stage(current: LeadOutcome | None, candidate: LeadOutcome | None) -> str:
    a = current.path if current is not None else ()
    b = candidate.path if candidate is not None else ()
    for i in range(max(len(a), len(b))):
        x, y = (a[i] if i < len(a) else None), (b[i] if i < len(b) else None)
        if x is not None and y is not None and x[:3] == y[:3]:
            continue
        side, step = ("candidate", y) if y is not None else ("current", x)
        assert step is not None
        stage, at, trigger, score = step
        came_from = (a if side == "current" else b)[i - 1][0] if i else "∅"
        other, alt = ("current", a) if side == "candidate" else ("candidate", b)
        instead = f"; under the {other} it moves to {alt[i][0]} instead" if i < len(alt) else " only"
        return (f"{came_from} → {stage} at {clock(at)} by {_EVENT_WORDS.get(trigger, trigger)} "
                f"(score {score}) under the {side}{instead}")
    return "the same stages"


def _changed_leads(current: Run, candidate: Run, policies: tuple[Policy, Policy]) -> tuple[list[dict[str, Any]], int]:
    rows = []
    for lead_id in sorted(set(current.leads) | set(candidate.leads)):
        a, b = current.leads.get(lead_id), candidate.leads.get(lead_id)
        stage_a, stage_b = (a.final_stage if a else None), (b.final_stage if b else None)
        breaches_a, breaches_b = (a.breaches if a else ()), (b.breaches if b else ())
        if stage_a == stage_b and len(breaches_a) == len(breaches_b):
            continue
        reasons = []
        if stage_a != stage_b:
            reasons.append(f"final stage {stage_a} → {stage_b}: {_explain_stage(a, b)}")
        keys_a = Counter((x.sla, x.started_at) for x in breaches_a)
        keys_b = Counter((x.sla, x.started_at) for x in breaches_b)
        for breach in breaches_b:
            if keys_b[(breach.sla, breach.started_at)] > keys_a[(breach.sla, breach.started_at)]:
                assert b is not None
                reasons.append(explain_breach(breach, b, policies[1], "candidate"))
        for breach in breaches_a:
            if keys_a[(breach.sla, breach.started_at)] > keys_b[(breach.sla, breach.started_at)]:
                assert a is not None
                reasons.append(explain_breach(breach, a, policies[0], "current"))
        rows.append({"lead_id": lead_id, "final_stage": {"current": stage_a, "candidate": stage_b},
                     "breaches": triple(len(breaches_a), len(breaches_b)), "reasons": reasons})
    rows.sort(key=lambda r: (-abs(r["breaches"]["difference"]),
                             r["final_stage"]["current"] == r["final_stage"]["candidate"], r["lead_id"]))
    return rows[:LEADS_SHOWN], len(rows)


def compare(current: Run, candidate: Run, policies: tuple[Policy, Policy]) -> dict[str, Any]:
    """The JSON document of the comparison: both reports and their differences."""
    cur, cand = current.report.as_dict(), candidate.report.as_dict()
    types = _groups(_BAD_ALERTS, sorted(set(cur["alerts_by_type"]) | set(cand["alerts_by_type"])))
    funnel_a, funnel_b = _by_group(cur["funnel"], "stage"), _by_group(cand["funnel"], "stage")
    conversions_b = {(c["from_stage"], c["to_stage"]): c for c in cand["conversions"]}
    leads, total = _changed_leads(current, candidate, policies)
    diff: dict[str, Any] = {
        "alerts_by_type": {t: triple(cur["alerts_by_type"].get(t, 0), cand["alerts_by_type"].get(t, 0))
                           for t in types},
        "compliance_by_sla": _compliance(cur["compliance_by_sla"], cand["compliance_by_sla"]),
        "compliance_by_team": _compliance(cur["compliance_by_team"], cand["compliance_by_team"]),
        "compliance_by_owner": _compliance(cur["compliance_by_owner"], cand["compliance_by_owner"]),
        "funnel": [{"stage": s, "reached": triple(funnel_a[s]["reached"], funnel_b[s]["reached"]),
                    "current": triple(funnel_a[s]["current"], funnel_b[s]["current"])}
                   for s in _groups(funnel_a, funnel_b) if s in funnel_a and s in funnel_b],
        "conversions": [
            {"from_stage": c["from_stage"], "to_stage": c["to_stage"],
             "converted": triple(c["converted"], conversions_b[key]["converted"]),
             "rate": triple(c["rate"], conversions_b[key]["rate"])}
            for c in cur["conversions"] if (key := (c["from_stage"], c["to_stage"])) in conversions_b
        ],
        "leads_changed": leads,
        "leads_changed_total": total,
    }
    if "by_channel" in cur and "by_channel" in cand:  # SPEC 10's report; absent before it
        diff["by_channel"] = _channels(cur["by_channel"], cand["by_channel"])
    return {
        "policies": {"current": {"source": current.source, "version": current.version},
                     "candidate": {"source": candidate.source, "version": candidate.version}},
        "current": cur,
        "candidate": cand,
        "diff": diff,
    }


# -- showing it -----------------------------------------------------------------------------------------

def render_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _signed(value: float | int | None, rate: bool = False) -> str:
    if value is None:
        return "–"
    if rate:
        return "0 pp" if abs(value) < 5e-10 else f"{value * 100:+.1f} pp"
    return "0" if value == 0 else f"{value:+d}"


def _tone(value: float | int | None, good_when_up: bool | None) -> str:
    """``better``, ``worse``, ``changed`` or ``same``."""
    if value is None or abs(value) < 5e-10:
        return "same"
    if good_when_up is None:
        return "changed"
    return "better" if (value > 0) == good_when_up else "worse"


@dataclass(frozen=True)
class Row:
    label: str
    current: str
    candidate: str
    difference: str
    tone: str


def _count_row(label: str, t: dict[str, Any], good_when_up: bool | None) -> Row:
    return Row(label, str(t["current"]), str(t["candidate"]), _signed(t["difference"]),
               _tone(t["difference"], good_when_up))


def _rate_row(label: str, t: dict[str, Any], detail: Callable[[str], str] = lambda side: "") -> Row:
    return Row(label, _rate(t["current"]) + detail("current"), _rate(t["candidate"]) + detail("candidate"),
               _signed(t["difference"], rate=True), _tone(t["difference"], True))


def _compliance_rows(rows: list[dict[str, Any]], only_changed: bool) -> list[Row]:
    out = []
    for r in rows:
        decided = {side: r["met"][side] + r["late"][side] + r["open"][side] for side in ("current", "candidate")}
        if not any(decided.values()):
            continue
        changed = any(r[k]["difference"] for k in ("met", "late", "open", "in_progress"))
        if only_changed and not changed:
            continue
        out.append(_rate_row(r["group"], r["rate"], lambda side, r=r, d=decided: f" ({r['met'][side]}/{d[side]})"))
    return out


def _seen(t: dict[str, Any]) -> bool:
    """Whether a measure has a value on either side (rows of zeros and dashes are left out)."""
    return bool(t["current"]) or bool(t["candidate"])


def sections(document: dict[str, Any]) -> list[tuple[str, list[Row]]]:
    """The side-by-side tables, shared by the text and the HTML rendering."""
    diff = document["diff"]
    alerts = [_count_row(t, v, False if t in _BAD_ALERTS else None) for t, v in diff["alerts_by_type"].items()
              if t in ("follow_up_overdue", "handoff_broken") or _seen(v)]
    owners = _compliance_rows(diff["compliance_by_owner"], only_changed=True)
    out = [
        ("Alerts", alerts),
        ("Compliance by SLA (met on time/decided)", _compliance_rows(diff["compliance_by_sla"], False)),
        ("Compliance by team", _compliance_rows(diff["compliance_by_team"], False)),
        ("Compliance by owner (changed only)", owners),
        ("Funnel: leads reaching",
         [_count_row(f["stage"], f["reached"], True) for f in diff["funnel"] if _seen(f["reached"])]),
        ("Conversion", [_rate_row(f"{c['from_stage']} → {c['to_stage']}", c["rate"])
                        for c in diff["conversions"] if _seen(c["converted"]) or _seen(c["rate"])]),
    ]
    if "by_channel" in diff:
        rows = []
        for c in diff["by_channel"]:
            rows.append(_count_row(f"{c['group']}: MQLs", c["mqls"], True))
            rows.append(_rate_row(f"{c['group']}: SAL rate", c["sal_rate"]))
        out.append(("By channel", rows))
    return out


def _heading(document: dict[str, Any]) -> tuple[str, str]:
    p = document["policies"]
    return (f"current  {p['current']['source']} (version {p['current']['version']})",
            f"candidate {p['candidate']['source']} (version {p['candidate']['version']})")


def render_text(document: dict[str, Any], console: Any) -> None:
    """One compact Rich table on ``console`` (a section per measure: current, candidate,
    difference), then the leads that change and why."""
    from rich import box
    from rich.markup import escape as markup
    from rich.table import Table

    styles = {"better": "green", "worse": "bold red", "changed": "yellow", "same": "dim"}
    console.print(f"[bold]leadflow whatif[/]  {document['current']['leads']} leads")
    for line in _heading(document):
        console.print("  " + markup(line))
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("")
    for column in ("current", "candidate", "difference"):
        table.add_column(column, justify="right")
    for title, rows in sections(document):
        if not rows:
            continue
        table.add_row(f"[bold]{markup(title)}[/]", end_section=False)
        for row in rows:
            style = styles[row.tone]
            table.add_row("  " + markup(row.label), markup(row.current), markup(row.candidate),
                          f"[{style}]{markup(row.difference)}[/]")
    console.print(table)
    diff = document["diff"]
    leads = diff["leads_changed"]
    shown = f"{len(leads)} of {diff['leads_changed_total']}" if diff["leads_changed_total"] > len(leads) else str(len(leads))
    console.print(f"[bold]Leads whose final stage or breach count changes[/]: {shown}")
    for lead in leads:
        console.print(f"  [cyan]{markup(lead['lead_id'])}[/]  {markup(_lead_summary(lead))}")
        for reason in lead["reasons"]:
            console.print(f"    {markup(reason)}")


def _lead_summary(lead: dict[str, Any]) -> str:
    stage, breaches = lead["final_stage"], lead["breaches"]
    stages = (f"stage {stage['current']}" if stage["current"] == stage["candidate"]
              else f"stage {stage['current']} → {stage['candidate']}")
    return f"{stages}, breaches {breaches['current']} → {breaches['candidate']}"


_CSS: Final = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1d2433;max-width:1100px}
h1{font-size:1.5rem;margin:0 0 .3rem}h2{font-size:1.15rem;margin:2rem 0 .5rem;border-bottom:1px solid #dde}
table{border-collapse:collapse;margin:.5rem 0}td,th{padding:.25rem .7rem;border-bottom:1px solid #eef;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f4f6fb}.muted{color:#667}
tr.worse td{background:#fde7e4}tr.better td{background:#e3f4e8}tr.changed td{background:#fff6d6}
td.difference{font-weight:600}tr.same td.difference{font-weight:normal;color:#889}
ul{margin:.2rem 0 .8rem}
"""


def render_html(document: dict[str, Any]) -> str:
    """One self-contained page; rows that differ are highlighted (``worse``, ``better``, ``changed``)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>leadflow whatif</title><style>{_CSS}</style></head><body>",
        "<h1>leadflow whatif</h1>",
        *(f'<p class="muted">{escape(line)}</p>' for line in _heading(document)),
    ]
    for title, rows in sections(document):
        if not rows:
            continue
        parts.append(f"<h2>{escape(title)}</h2>")
        body = "".join(
            f'<tr class="{row.tone}"><td>{escape(row.label)}</td><td>{escape(row.current)}</td>'
            f'<td>{escape(row.candidate)}</td><td class="difference">{escape(row.difference)}</td></tr>'
            for row in rows)
        parts.append("<table><thead><tr><th></th><th>current</th><th>candidate</th><th>difference</th></tr>"
                     f"</thead><tbody>{body}</tbody></table>")
    diff = document["diff"]
    parts.append(f"<h2>Leads whose final stage or breach count changes ({diff['leads_changed_total']})</h2>")
    for lead in diff["leads_changed"]:
        breaches = lead["breaches"]
        tone = _tone(breaches["difference"], False) if breaches["difference"] else "changed"
        parts.append(f'<table><tr class="{tone}"><td>{escape(lead["lead_id"])}</td>'
                     f"<td>{escape(_lead_summary(lead))}</td></tr></table>")
        parts.append("<ul>" + "".join(f"<li>{escape(reason)}</li>" for reason in lead["reasons"]) + "</ul>")
    parts.append("</body></html>\n")
    return "\n".join(parts)

