"""The report as ONE self-contained HTML page: inline CSS, inline SVG charts, no script, no network.

Charts (each an ``<svg>`` with a stable id, for tests and for linking):
``#funnel-chart`` (leads reaching each stage), ``#time-in-stage-chart`` (distribution of time spent in
each stage, one histogram row per stage), ``#compliance-by-team-chart`` (met / late / open / in
progress per team, stacked), ``#channel-chart`` and ``#grade-chart`` (per first-touch channel and per
grade, a mini funnel MQL → SAL → SQL → won, with the SAL rate and the revenue),
``#weekly-chart`` (MQLs per ISO week as bars, SAL rate and first-touch compliance as lines).
"""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Final

from schemas.wire import format_time
from leadflow.report import (
    FUNNEL_STAGES,
    HISTOGRAM_LABELS,
    QUALITY_COLUMNS,
    SHOWN_GROUPS,
    WEEK_COLUMNS,
    Compliance,
    Report,
    SourceQuality,
    WeekTrend,
    duration,
    money,
    percent,
    quality_cells,
    week_cells,
)

OUTCOME_COLOURS: Final = (("met", "#2e7d32"), ("late", "#f9a825"), ("open", "#c62828"), ("in_progress", "#90a4ae"))
_CSS: Final = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1d2433;max-width:1100px}
h1{font-size:1.5rem;margin:0 0 .3rem}h2{font-size:1.15rem;margin:2rem 0 .5rem;border-bottom:1px solid #dde}
table{border-collapse:collapse;margin:.5rem 0}td,th{padding:.25rem .7rem;border-bottom:1px solid #eef;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f4f6fb}.muted{color:#667}
svg text{font:12px system-ui,sans-serif;fill:#1d2433}.legend span{display:inline-block;margin-right:1rem}
.swatch{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:middle}
table.text-last td:last-child,table.text-last th:last-child{text-align:left;min-width:9rem}
"""


def _svg(id_: str, width: int, height: int, title: str, body: list[str]) -> str:
    return (f'<svg id="{id_}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-labelledby="{id_}-title">'
            f'<title id="{id_}-title">{escape(title)}</title>{"".join(body)}</svg>')


def funnel_svg(report: Report) -> str:
    rows = [f for f in report.funnel if f.stage in FUNNEL_STAGES]
    top = max((f.reached for f in rows), default=0) or 1
    label_w, bar_w, row_h = 110, 560, 30
    body = []
    for i, f in enumerate(rows):
        y = 10 + i * row_h
        w = f.reached / top * bar_w
        x = label_w + (bar_w - w) / 2  # centred bars: the funnel shape
        body.append(f'<text x="{label_w - 8}" y="{y + 17}" text-anchor="end">{escape(f.stage)}</text>')
        body.append(f'<rect class="bar" data-stage="{escape(f.stage)}" x="{x:.1f}" y="{y}" width="{w:.1f}" '
                    f'height="{row_h - 6}" fill="#3f6ad8" rx="3"><title>{escape(f.stage)}: {f.reached} leads'
                    f'</title></rect>')
        body.append(f'<text x="{label_w + bar_w + 8}" y="{y + 17}">{f.reached}</text>')
    return _svg("funnel-chart", label_w + bar_w + 60, 20 + len(rows) * row_h, "Leads reaching each stage", body)


def time_in_stage_svg(report: Report) -> str:
    rows = [s for s in report.time_in_stage if s.count]
    label_w, cell_w, row_h, head = 110, 80, 28, 24
    body = [f'<text x="{label_w + i * cell_w + cell_w / 2}" y="16" text-anchor="middle">{escape(lbl)}</text>'
            for i, lbl in enumerate(HISTOGRAM_LABELS)]
    for r, s in enumerate(rows):
        y = head + r * row_h
        peak = max(s.histogram) or 1
        body.append(f'<text x="{label_w - 8}" y="{y + 17}" text-anchor="end">{escape(s.stage)}</text>')
        for i, n in enumerate(s.histogram):
            h = (row_h - 6) * n / peak
            x = label_w + i * cell_w + 8
            body.append(f'<rect class="bar" data-stage="{escape(s.stage)}" x="{x}" y="{y + row_h - 4 - h:.1f}" '
                        f'width="{cell_w - 16}" height="{h:.1f}" fill="#7e57c2"><title>{escape(s.stage)} '
                        f'{escape(HISTOGRAM_LABELS[i])}: {n}</title></rect>')
        body.append(f'<text x="{label_w + len(HISTOGRAM_LABELS) * cell_w + 8}" y="{y + 17}" class="muted">'
                    f'median {escape(duration(s.median_ms))}, p90 {escape(duration(s.p90_ms))}</text>')
    width = label_w + len(HISTOGRAM_LABELS) * cell_w + 200
    return _svg("time-in-stage-chart", width, head + max(1, len(rows)) * row_h + 6,
                "Distribution of time spent in each stage", body)


def compliance_svg(rows: tuple[Compliance, ...], id_: str = "compliance-by-team-chart") -> str:
    label_w, bar_w, row_h = 140, 520, 28
    body = []
    for r, c in enumerate(rows):
        y = 8 + r * row_h
        total = c.decided + c.in_progress
        body.append(f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end">{escape(c.group)}</text>')
        x = float(label_w)
        for name, colour in OUTCOME_COLOURS:
            n = getattr(c, name)
            if not n:
                continue
            w = bar_w * n / total
            body.append(f'<rect class="bar" data-outcome="{name}" x="{x:.1f}" y="{y}" width="{w:.1f}" '
                        f'height="{row_h - 8}" fill="{colour}"><title>{escape(c.group)} {name}: {n}</title></rect>')
            x += w
        body.append(f'<text x="{label_w + bar_w + 8}" y="{y + 16}">{escape(percent(c.rate))}</text>')
    return _svg(id_, label_w + bar_w + 70, 16 + max(1, len(rows)) * row_h, "SLA compliance by team", body)


#: The steps of a group's mini funnel: (name, colour, its count of a SourceQuality).
FUNNEL_STEPS: Final = (
    ("MQL", "#90a4ae", lambda q: q.mqls),
    ("SAL", "#5c85d6", lambda q: q.sals),
    ("SQL", "#43a047", lambda q: q.sqls),
    ("won", "#1b5e20", lambda q: q.customers),
)
SAL_RATE_COLOUR: Final = "#3f6ad8"
COMPLIANCE_COLOUR: Final = "#ef6c00"


def quality_svg(rows: tuple[SourceQuality, ...], id_: str, title: str) -> str:
    """One mini funnel per group: MQL → SAL → SQL → won as bars on one scale, then revenue."""
    rows = rows[:SHOWN_GROUPS]
    label_w, bar_w, bar_h, row_h = 150, 420, 7, 4 * 8 + 12
    top = max((count(q) for q in rows for _, _, count in FUNNEL_STEPS), default=0) or 1
    body = []
    for r, q in enumerate(rows):
        y = 6 + r * row_h
        body.append(f'<text x="{label_w - 8}" y="{y + 19}" text-anchor="end">{escape(_cut(q.group))}</text>')
        for k, (name, colour, count) in enumerate(FUNNEL_STEPS):
            n = count(q)
            w = max(bar_w * n / top, 1.5 if n else 0)
            body.append(f'<rect class="bar" data-step="{name}" x="{label_w}" y="{y + k * 8}" width="{w:.1f}" '
                        f'height="{bar_h}" fill="{colour}"><title>{escape(q.group)}: {n} {name}</title></rect>')
        summary = " · ".join(f"{count(q)} {name}" for name, _, count in FUNNEL_STEPS)
        body.append(f'<text x="{label_w + bar_w + 8}" y="{y + 13}">{summary}</text>')
        body.append(f'<text x="{label_w + bar_w + 8}" y="{y + 28}" class="muted">SAL {escape(percent(q.sal_rate))}'
                    f' · revenue {escape(money(q.revenue))}</text>')
    return _svg(id_, label_w + bar_w + 260, 12 + max(1, len(rows)) * row_h, title, body)


def weekly_svg(weeks: tuple[WeekTrend, ...]) -> str:
    """MQLs per ISO week (bars, left scale) with SAL rate and first-touch compliance (lines, 0–100%)."""
    left, top_pad, plot_h, col_w = 48, 14, 180, 46
    weeks = _every_week(weeks)
    width = left + max(8, len(weeks)) * col_w + 60
    base = top_pad + plot_h
    peak = max((w.mqls for w in weeks), default=0) or 1
    body = [f'<line x1="{left}" y1="{base}" x2="{width - 60}" y2="{base}" stroke="#99a"/>',
            f'<text x="{left - 6}" y="{top_pad + 4}" text-anchor="end">{peak}</text>',
            f'<text x="{left - 6}" y="{base}" text-anchor="end">0</text>',
            f'<text x="{width - 56}" y="{top_pad + 4}">100%</text>',
            f'<text x="{width - 56}" y="{base}">0%</text>']
    lines: dict[str, list[str]] = {"sal-rate": [], "first-touch": []}
    for i, w in enumerate(weeks):
        cx = left + i * col_w + col_w / 2
        h = plot_h * w.mqls / peak
        body.append(f'<rect class="bar" data-week="{escape(w.week)}" x="{cx - col_w / 2 + 6:.1f}" y="{base - h:.1f}" '
                    f'width="{col_w - 12}" height="{h:.1f}" fill="#b0bec5"><title>{escape(w.week)}: {w.mqls} MQLs, '
                    f'SAL {escape(percent(w.sal_rate))}, first touch {escape(percent(w.first_touch_compliance))}'
                    f'</title></rect>')
        body.append(f'<text x="{cx:.1f}" y="{base + 16}" text-anchor="middle">{escape(w.week[-3:])}</text>')
        for key, rate in (("sal-rate", w.sal_rate), ("first-touch", w.first_touch_compliance)):
            if rate is not None:
                lines[key].append(f"{cx:.1f},{base - plot_h * rate:.1f}")
    for key, colour in (("sal-rate", SAL_RATE_COLOUR), ("first-touch", COMPLIANCE_COLOUR)):
        if lines[key]:
            body.append(f'<polyline class="line" data-series="{key}" points="{" ".join(lines[key])}" fill="none" '
                        f'stroke="{colour}" stroke-width="2.5"/>')
            for point in lines[key]:
                x, y = point.split(",")
                body.append(f'<circle cx="{x}" cy="{y}" r="3.5" fill="{colour}"/>')
    return _svg("weekly-chart", width, base + 26, "MQLs per ISO week, SAL rate and first-touch compliance", body)


def _every_week(weeks: tuple[WeekTrend, ...]) -> tuple[WeekTrend, ...]:
    """``weeks`` with an empty one for each ISO week between them that had none, so the x axis is time."""
    if not weeks:
        return weeks
    by_name = {w.week: w for w in weeks}
    first = dt.date.fromisocalendar(int(weeks[0].week[:4]), int(weeks[0].week[-2:]), 1)
    last = dt.date.fromisocalendar(int(weeks[-1].week[:4]), int(weeks[-1].week[-2:]), 1)
    out = []
    while first <= last:
        year, number, _ = first.isocalendar()
        name = f"{year}-W{number:02d}"
        out.append(by_name.get(name, WeekTrend(name, 0, 0, 0, 0)))
        first += dt.timedelta(weeks=1)
    return tuple(out)


def _cut(text: str, length: int = 22) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


def _legend(items: tuple[tuple[str, str], ...]) -> str:
    return '<p class="legend">' + "".join(
        f'<span><i class="swatch" style="background:{c}"></i>{escape(n)}</span>' for n, c in items) + "</p>"


def _quality_table(rows: tuple[SourceQuality, ...], label: str) -> str:
    shown = _table((label, *QUALITY_COLUMNS), [(q.group, *quality_cells(q)) for q in rows[:SHOWN_GROUPS]],
                   text_last=True)
    if len(rows) > SHOWN_GROUPS:
        shown += f'<p class="muted">… {len(rows) - SHOWN_GROUPS} more {escape(label)}s in --format json</p>'
    return shown


def _table(headers: tuple[str, ...], rows: list[tuple[object, ...]], text_last: bool = False) -> str:
    """``text_last``: the last column is text (left-aligned, wide), not a figure."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    kind = ' class="text-last"' if text_last else ""
    return f"<table{kind}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _compliance_table(rows: tuple[Compliance, ...], group: str) -> str:
    return _table((group, "met on time", "late", "open", "in progress", "compliance"),
                  [(c.group, c.met, c.late, c.open, c.in_progress, percent(c.rate)) for c in rows])


def render_html(report: Report) -> str:
    period = (f"{format_time(report.first_at)} → {format_time(report.last_at)}"
              if report.first_at is not None and report.last_at is not None else "no records")
    legend = "".join(f'<span><i class="swatch" style="background:{c}"></i>{escape(n.replace("_", " "))}</span>'
                     for n, c in OUTCOME_COLOURS)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>leadflow report</title><style>{_CSS}</style></head><body>",
        "<h1>leadflow report</h1>",
        f'<p class="muted">{report.leads} leads, {report.transitions} stage changes, {report.alerts} alerts '
        f"· {escape(period)}</p>",
        "<h2>Funnel</h2>", funnel_svg(report),
        _table(("from → to", "leads", "converted", "rate"),
               [(f"{c.from_stage} → {c.to_stage}", c.leads, c.converted, percent(c.rate)) for c in report.conversions]),
        "<h2>Time in stage</h2>", time_in_stage_svg(report),
        _table(("stage", "left", "median", "p90"),
               [(s.stage, s.count, duration(s.median_ms), duration(s.p90_ms)) for s in report.time_in_stage if s.count]),
        "<h2>SLA compliance</h2>", f'<p class="legend">{legend}</p>',
        compliance_svg(report.compliance_by_team),
        _compliance_table(report.compliance_by_sla, "SLA"),
        _compliance_table(report.compliance_by_team, "team"),
        _compliance_table(report.compliance_by_owner, "owner"),
        "<h2>Late evidence and holds</h2>",
        '<p class="muted">A breach retracted because its evidence happened before the deadline counts as met '
        "on time; time on hold moves the deadline and is never counted against the owner.</p>",
        _table(("SLA", "breaches retracted", "put on hold", "time on hold", "on hold now"),
               [(k.sla, k.retracted, k.holds, duration(k.held_ms), k.on_hold) for k in report.clock_by_sla]),
        "<h2>Top reject and disqualify reasons</h2>",
        _table(("decision", "reason", "leads"), [(r.decision, r.reason, r.count) for r in report.reasons]),
        "<h2>Leads lost, by the stage they left</h2>",
        _table(("left stage", "recycled", "disqualified"), [(x.from_stage, x.recycled, x.disqualified) for x in report.lost]),
    ]
    if report.instant_handoffs:
        parts.append("<h2>Instant broken handoffs</h2>")
        parts.append(_table(("reason", "alerts"), list(report.instant_handoffs)))
    steps_legend = _legend(tuple((name, colour) for name, colour, _ in FUNNEL_STEPS))
    parts += [
        "<h2>Lead quality by first-touch channel</h2>",
        '<p class="muted">Leads grouped by the channel of their first marketing event: MQLs, how many sales '
        "accepted (SAL), qualified (SQL) and won, and the revenue of the won deals.</p>", steps_legend,
        quality_svg(report.by_channel, "channel-chart", "MQL, SAL, SQL and won by first-touch channel"),
        _quality_table(report.by_channel, "channel"),
        "<h2>Lead quality by first-touch campaign</h2>", _quality_table(report.by_campaign, "campaign"),
        "<h2>Lead quality by grade</h2>", steps_legend,
        quality_svg(report.by_grade, "grade-chart", "MQL, SAL, SQL and won by grade"),
        _quality_table(report.by_grade, "grade"),
        "<h2>Weekly trend, by ISO week of the MQL move</h2>",
        _legend((("MQLs", "#b0bec5"), ("SAL rate", SAL_RATE_COLOUR), ("first-touch compliance", COMPLIANCE_COLOUR))),
        weekly_svg(report.by_week),
        _table(WEEK_COLUMNS, [week_cells(w) for w in report.by_week]),
    ]
    parts.append("</body></html>\n")
    return "\n".join(parts)
