"""What ``leadflow demo`` shows a person: the board (funnel, conversion, alerts, throughput, counters)
fed by the output topics, drawn live on a terminal or as a plain progress line elsewhere, and the
summary at the end.

The :class:`Board` is filled from two threads (the traffic generator counts what it sends, the
output reader adds what the worker wrote) and read by the main thread 4 times a second; every
method takes its lock. Output records are at-least-once, so they are counted once by their id.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from leadflow.replay_view import describe
from leadflow.terminal import plain, safe
from lifecycle.records import AlertRecord, LifecycleRecord
from lifecycle.stages import MAIN_PATH, Stage

#: Stages in the order the funnel shows them: the demand waterfall, then the two side exits.
FUNNEL: tuple[str, ...] = (*(s.value for s in MAIN_PATH), Stage.RECYCLED.value, Stage.DISQUALIFIED.value)
#: The conversion line's steps (SPEC: MQL -> SAL -> SQL -> opportunity -> customer).
CONVERSION: tuple[str, ...] = ("mql", "sal", "sql", "opportunity", "customer")
STAGE_STYLE = {
    "new": "grey70", "engaged": "bright_blue", "mql": "cyan", "sal": "bright_cyan", "sql": "green",
    "opportunity": "bright_green", "customer": "bold bright_green", "recycled": "yellow",
    "disqualified": "grey50",
}
BREACHES = frozenset({"follow_up_overdue", "handoff_broken"})
#: Alerts that end an earlier one: a resolution (it was true) or a retraction (SPEC 9: it was false,
#: the evidence only arrived late).
CLOSERS = frozenset({"sla_resolved", "sla_retracted"})
#: Alerts that say a lead's clock stopped or started again: shown, never open.
CLOCK_MARKS = frozenset({"sla_held", "sla_resumed"})
FEED_LINES = 12
SPARK_SECONDS = 30
_SPARKS = "▁▂▃▄▅▆▇█"
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T(\d{2}:\d{2}:\d{2})\.\d{3}Z")


@dataclass
class FeedEntry:
    """One line of the alert feed; a resolution lists the alerts it closes."""

    record: AlertRecord
    closes: list[str] = field(default_factory=list)

    def markup(self) -> str:
        line = _feed_line(self.record)
        if not self.closes:
            return line
        if self.record.type == "sla_retracted":
            return f"{line} [bright_cyan]false alarm[/] [dim](retracts {safe(', '.join(self.closes))})[/]"
        return f"{line} [dim](closes {safe(', '.join(self.closes))})[/]"


def _short(alert: AlertRecord) -> str:
    if alert.type == "follow_up_overdue":
        return f"overdue L{alert.level}"
    return {"sla_warning": "warning", "handoff_broken": "handoff_broken"}.get(alert.type, alert.type)


@dataclass(frozen=True)
class Resolution:
    """A breach (overdue / broken handoff) and the ``sla_resolved`` that closed it."""

    lead_id: str
    sla: str | None
    breach: str
    owner_id: str | None
    breached_at: int
    resolved_at: int


class Board:
    """Everything the demo shows, counted as it happens."""

    def __init__(self, duration: float) -> None:
        self.lock = threading.Lock()
        self.duration = duration
        self.started: float | None = None     # wall clock (time.time()) when traffic started
        self.ended: float | None = None       # ... and when it stopped
        self.phase = "starting"
        # what the generator sent
        self.sent = 0
        self.duplicates = 0
        self.bad = 0
        self.send_errors = 0
        self._sent_by_second: Counter[int] = Counter()
        # what the worker wrote
        self.records_out = 0
        self._out_by_second: Counter[int] = Counter()
        self._transitions: set[str] = set()
        self._alerts: set[str] = set()
        self.stage_of: dict[str, str] = {}
        self.in_stage: Counter[str] = Counter()
        self.reached: Counter[str] = Counter()
        self._reached_by: dict[str, set[str]] = {}
        self.alerts_by_type: Counter[str] = Counter()
        self.open_alerts: dict[str, AlertRecord] = {}
        self.feed: deque[FeedEntry] = deque(maxlen=FEED_LINES)
        self.resolutions: list[Resolution] = []
        self.retracted_breaches = 0  # breaches proved false by late evidence
        self.breaches_by_owner: Counter[str] = Counter()
        self.dlq_by_code: Counter[str] = Counter()
        self.health: dict[str, Any] | None = None
        # MQLs and sales acceptance by first-touch channel (SPEC section 10), each lead counted once
        self.mqls_by_channel: Counter[str] = Counter()
        self.sals_by_channel: Counter[str] = Counter()
        self._mql_leads: set[str] = set()
        self._sal_leads: set[str] = set()

    # -- fed by the generator ------------------------------------------------------------------

    def start(self) -> None:
        with self.lock:
            self.started = time.time()
            self.phase = "running"

    def on_sent(self, kind: str = "event") -> None:
        with self.lock:
            self.sent += 1
            if kind == "duplicate":
                self.duplicates += 1
            elif kind == "bad":
                self.bad += 1
            self._sent_by_second[int(time.time())] += 1

    def on_send_error(self, _exc: BaseException) -> None:
        with self.lock:
            self.send_errors += 1

    # -- fed by the output reader --------------------------------------------------------------

    def add_lifecycle(self, record: LifecycleRecord) -> None:
        with self.lock:
            if record.transition_id in self._transitions:
                return
            self._transitions.add(record.transition_id)
            self._count_out()
            lead = record.lead_id
            previous = self.stage_of.get(lead)
            if previous is not None:
                self.in_stage[previous] -= 1
            self.stage_of[lead] = record.to_stage
            self.in_stage[record.to_stage] += 1
            reached = self._reached_by.setdefault(lead, set())
            for stage in (*record.skipped_stages, record.to_stage):
                if stage not in reached:
                    reached.add(stage)
                    self.reached[stage] += 1
            channel = record.first_channel or "(none)"
            if record.to_stage == "mql" and lead not in self._mql_leads:
                self._mql_leads.add(lead)
                self.mqls_by_channel[channel] += 1
            accepted = record.to_stage == "sal" or "sal" in record.skipped_stages
            if record.from_stage == "mql" and accepted and lead not in self._sal_leads:
                self._sal_leads.add(lead)
                self.sals_by_channel[channel] += 1

    def add_alert(self, record: AlertRecord) -> None:
        with self.lock:
            if record.alert_id in self._alerts:
                return
            self._alerts.add(record.alert_id)
            self._count_out()
            self.alerts_by_type[record.type] += 1
            if record.type in CLOCK_MARKS:
                self.feed.append(FeedEntry(record))
                return
            if record.type not in CLOSERS:
                if record.type in BREACHES and record.level == 1:
                    self.breaches_by_owner[record.owner_id or "unassigned"] += 1
                self.open_alerts[record.alert_id] = record
                self.feed.append(FeedEntry(record))
                return
            closed = self.open_alerts.pop(record.resolves_alert_id or "", None)
            if closed is not None and closed.type in BREACHES:
                if record.type == "sla_retracted":  # it was never a breach: not the owner's
                    if closed.level == 1:
                        self.retracted_breaches += 1
                        owner = closed.owner_id or "unassigned"
                        self.breaches_by_owner[owner] -= 1
                        if self.breaches_by_owner[owner] <= 0:
                            del self.breaches_by_owner[owner]
                else:
                    self.resolutions.append(Resolution(
                        record.lead_id, closed.sla, closed.type, closed.owner_id,
                        closed.detected_at, record.detected_at))
            label = _short(closed) if closed is not None else "an earlier alert"
            last = self.feed[-1] if self.feed else None
            # One SLA met closes its warning, breach and escalation at once: one line, not three.
            if (last is not None and last.record.type == record.type and last.record.lead_id == record.lead_id
                    and last.record.sla == record.sla and abs(last.record.detected_at - record.detected_at) < 1000):
                last.closes.append(label)
            else:
                self.feed.append(FeedEntry(record, [label]))

    def add_dlq(self, value: dict[str, Any]) -> None:
        with self.lock:
            self._count_out()
            self.dlq_by_code[str(value.get("error") or "unknown")] += 1

    def set_health(self, doc: dict[str, Any] | None) -> None:
        with self.lock:
            self.health = doc

    def set_phase(self, phase: str) -> None:
        with self.lock:
            if self.phase == "running" and phase != "running":
                self.ended = time.time()
            self.phase = phase

    def _count_out(self) -> None:
        self.records_out += 1
        self._out_by_second[int(time.time())] += 1

    # -- read by the views ---------------------------------------------------------------------

    @property
    def transitions(self) -> int:
        return len(self._transitions)

    @property
    def dlq(self) -> int:
        return sum(self.dlq_by_code.values())

    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return max(0.0, (self.ended or time.time()) - self.started)

    def per_second(self, counts: Counter[int], seconds: int = SPARK_SECONDS) -> list[int]:
        """Counts of the last ``seconds`` complete seconds, oldest first."""
        now = int(time.time())
        first = now - seconds if self.started is None else max(now - seconds, int(self.started))
        return [counts.get(s, 0) for s in range(first, now)]

    def rate(self, counts: Counter[int], window: int = 5) -> float:
        recent = self.per_second(counts, window)
        return sum(recent) / len(recent) if recent else 0.0


def _feed_line(record: AlertRecord) -> str:
    """``describe()``'s line with the time of day only (the date is today's)."""
    line = describe(record)
    return _TIMESTAMP.sub(lambda m: m.group(1), line, count=1)


def sparkline(values: Iterable[int]) -> str:
    values = list(values)
    top = max(values, default=0)
    if top <= 0:
        return _SPARKS[0] * len(values)
    return "".join(_SPARKS[min(len(_SPARKS) - 1, v * (len(_SPARKS) - 1) // top)] for v in values)


def clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "–"


def conversion_text(board: Board) -> Text:
    text = Text()
    previous = None
    for stage in CONVERSION:
        n = board.reached[stage]
        if previous is None:
            text.append(f"{stage.upper() if len(stage) == 3 else stage} {n}", STAGE_STYLE[stage])
        else:
            text.append(" → ", "dim")
            text.append(f"{stage.upper() if len(stage) == 3 else stage} {n}", STAGE_STYLE[stage])
            text.append(f" ({percent(n, board.reached[previous])})", "dim")
        previous = stage
    return text


def channels_text(board: Board, count: int = 5) -> Text:
    """The channels with the most MQLs: ``cpc 12 MQL (SAL 58%)``."""
    text = Text()
    for i, (channel, mqls) in enumerate(board.mqls_by_channel.most_common(count)):
        if i:
            text.append(" · ", "dim")
        text.append(channel, "cyan")  # a Text: the channel name is data, never markup
        text.append(f" {mqls} MQL")
        text.append(f" (SAL {percent(board.sals_by_channel[channel], mqls)})", "dim")
    return text if text.plain else Text("no MQLs yet", "dim")


@dataclass(frozen=True)
class Header:
    """What does not change during a run: where things are and how fast time runs."""

    broker: str
    app_id: str
    policy: str
    worker_log: str
    speedup: float | None = None   # None: the user's own policy, no statement about the clock


PANEL_ROWS = 12
ALERT_ROWS = (("sla_warning", "warnings", "yellow"), ("follow_up_overdue", "overdue", "red"),
              ("handoff_broken", "handoff_broken", "magenta"), ("sla_resolved", "resolved", "green"),
              ("sla_retracted", "retracted", "bright_cyan"))


def _funnel(board: Board, width: int = 34) -> Panel:
    top = max((board.in_stage[s] for s in FUNNEL), default=0)
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=12)
    grid.add_column(width=width)
    grid.add_column(justify="right", width=6)
    for stage in FUNNEL:
        n = board.in_stage[stage]
        cells = 0 if top == 0 else max(1 if n else 0, round(width * n / top))
        grid.add_row(Text(stage, STAGE_STYLE[stage]), Text("█" * cells, STAGE_STYLE[stage]), str(n))
    grid.add_row("", "", "")
    grid.add_row(Text("leads", "bold"), "", f"{len(board.stage_of):,}")
    return Panel(grid, title="[bold]funnel[/] · leads now in each stage", title_align="left",
                 border_style="blue", height=PANEL_ROWS + 2)


def _numbers(board: Board) -> Panel:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True, min_width=14)
    grid.add_column(justify="right", no_wrap=True, min_width=6)
    grid.add_column(overflow="ellipsis")     # its texts are no_wrap: cut, never squeezing the numbers
    sent = board.per_second(board._sent_by_second)
    out = board.per_second(board._out_by_second)
    grid.add_row("events in", f"{board.rate(board._sent_by_second):.0f}/s", _one_line(Text(sparkline(sent), "cyan")))
    grid.add_row("records out", f"{board.rate(board._out_by_second):.0f}/s", _one_line(Text(sparkline(out), "green")))
    grid.add_row("events sent", f"{board.sent:,}", _one_line(Text(f"{board.duplicates} duplicates, {board.bad} malformed", "dim")))
    grid.add_row("stage changes", f"{board.transitions:,}", "")
    for kind, label, style in ALERT_ROWS:
        detail = ""
        if kind == "sla_resolved":
            detail = f"{len(board.resolutions)} breaches closed"
        elif kind == "sla_retracted":
            detail = (f"false alarms · {board.alerts_by_type['sla_held']} held, "
                      f"{board.alerts_by_type['sla_resumed']} resumed")
        grid.add_row(Text(label, style), f"{board.alerts_by_type[kind]:,}", _one_line(Text(detail, "dim")))
    grid.add_row("open alerts", f"{len(board.open_alerts):,}", "")
    codes = plain(" ".join(f"{code} {n}" for code, n in sorted(board.dlq_by_code.items())))
    grid.add_row("DLQ", f"{board.dlq:,}", _one_line(Text(codes, "dim")))
    health = board.health
    if health is None:
        state = Text("not answering", "red") if board.phase == "running" else Text("…", "dim")
    else:
        state = _one_line(Text(f"{health.get('status')} · {len(health.get('partitions') or [])} partitions · "
                               f"{health.get('timers_pending', 0)} timers", "green"))
    if board.send_errors:
        grid.add_row(Text("send errors", "red"), str(board.send_errors), "")
    else:
        grid.add_row("worker", "", state)
    return Panel(grid, title="[bold]throughput[/] · last 30 s", title_align="left", border_style="blue",
                 height=PANEL_ROWS + 2)


def _feed(board: Board, rows: int = FEED_LINES) -> Panel:
    lines = [_one_line(Text.from_markup(entry.markup(), overflow="ellipsis")) for entry in list(board.feed)[-rows:]]
    if not lines:
        lines = [Text("no alerts yet: the first SLA deadlines are a few seconds away", "dim")]
    return Panel(Group(*lines), title="[bold]alerts[/] · as they fire and resolve "
                 "([yellow]warning[/] [red]overdue[/] [magenta]handoff_broken[/] [green]resolved[/] "
                 "[bright_cyan]retracted[/] [blue]held/resumed[/])",
                 title_align="left", border_style="blue", height=rows + 2)


def _title(board: Board, header: Header) -> Text:
    elapsed = board.elapsed()
    text = Text.assemble(("leadflow demo", "bold"), "  ")
    if board.phase == "running":
        text.append(f"{clock(elapsed)} / {clock(board.duration)}  ({clock(board.duration - elapsed)} left)")
    else:
        text.append(f"{clock(elapsed)}  {board.phase}", "yellow")
    text.append(plain(f"   broker {header.broker} · app {header.app_id}"), "dim")
    return text


def render(board: Board, header: Header, width: int = 120, height: int = 40) -> RenderableType:
    """The whole screen, fitted to ``width`` x ``height``: the bars and the alert feed shrink on a
    small terminal (the rest is 19 lines)."""
    with board.lock:
        top = Table.grid(padding=(0, 1), expand=True)
        top.add_column(ratio=1)
        top.add_column(ratio=1)
        top.add_row(_funnel(board, max(8, min(34, width // 2 - 26))), _numbers(board))
        speed = (f"time runs {header.speedup:,.0f}× faster (1 s ≈ {header.speedup / 60:.0f} min of a pipeline), "
                 "so SLAs play out in seconds" if header.speedup else plain(f"policy {header.policy}"))
        return Group(
            _one_line(_title(board, header)),
            _one_line(Text(f"{speed} · Ctrl-C stops", "dim", overflow="ellipsis")),
            top,
            _one_line(Text.assemble(("conversion ", "bold"), conversion_text(board), overflow="ellipsis")),
            _one_line(Text.assemble(("by channel ", "bold"), channels_text(board), overflow="ellipsis")),
            _feed(board, max(3, min(FEED_LINES, height - 20))),
        )


def progress_line(board: Board) -> str:
    """One plain line for a log or a pipe."""
    with board.lock:
        stages = " ".join(f"{s} {board.in_stage[s]}" for s in FUNNEL if board.in_stage[s])
        alerts = " ".join(f"{k} {n}" for k, n in sorted(board.alerts_by_type.items())) or "none"
        return plain(f"[{clock(board.elapsed())}/{clock(board.duration)}] sent {board.sent} "
                     f"({board.rate(board._sent_by_second):.0f}/s) · stage changes {board.transitions} · "
                     f"leads {stages or 'none'} · alerts {alerts} · open {len(board.open_alerts)} · DLQ {board.dlq}")


def summary(board: Board, header: Header, *, examples: int = 5) -> Table:
    with board.lock:
        table = Table(title="leadflow demo: summary", title_justify="left", show_header=False, box=None,
                      padding=(0, 2))
        table.add_column(style="bold")
        table.add_column(justify="right")
        table.add_column()
        table.add_row("ran for", clock(board.elapsed()), safe(f"broker {header.broker}, app {header.app_id}"))
        table.add_row("events sent", f"{board.sent:,}",
                      f"{board.duplicates} duplicates, {board.bad} malformed"
                      + (f", [red]{board.send_errors} not delivered[/]" if board.send_errors else ""))
        table.add_row("leads", f"{len(board.stage_of):,}",
                      safe(" ".join(f"{s} {board.in_stage[s]}" for s in FUNNEL if board.in_stage[s])))
        table.add_row("stage changes", f"{board.transitions:,}", "")
        table.add_row("reached", "", conversion_text(board))
        table.add_row("MQLs by channel", "", channels_text(board, 8))
        table.add_row("alerts", f"{sum(board.alerts_by_type.values()):,}", f"{len(board.open_alerts)} still open")
        for kind, n in sorted(board.alerts_by_type.items()):
            table.add_row(f"  {safe(kind)}", f"{n:,}", "")
        owners = board.breaches_by_owner.most_common(3)
        if owners:
            table.add_row("most breaches", "", safe(", ".join(f"{owner} {n}" for owner, n in owners)))
        table.add_row("DLQ", f"{board.dlq:,}", "")
        for code, n in sorted(board.dlq_by_code.items()):
            table.add_row(f"  {safe(code)}", f"{n:,}", "")
        table.add_row("breach → resolved", f"{len(board.resolutions):,}", "")
        table.add_row("breach → retracted", f"{board.retracted_breaches:,}",
                      "false alarms: the touch happened in time, its record arrived late")
        for r in resolution_examples(board.resolutions, examples):
            table.add_row("", "", _resolution_line(r, header.speedup))
        table.add_row("worker log", "", safe(header.worker_log))
        return table


def resolution_examples(resolutions: list[Resolution], count: int) -> list[Resolution]:
    """One per kind of SLA first (the longest wait of each), then the longest waits."""
    by_wait = sorted(resolutions, key=lambda r: r.breached_at - r.resolved_at)
    chosen: list[Resolution] = []
    for r in by_wait:
        if all(c.sla != r.sla for c in chosen):
            chosen.append(r)
    for r in by_wait:
        if all(c.lead_id != r.lead_id for c in chosen):
            chosen.append(r)
    return chosen[:count]


def _resolution_line(r: Resolution, speedup: float | None) -> str:
    took = max(0, r.resolved_at - r.breached_at) / 1000
    pipeline = f" (≈ {_human(took * speedup)} in real time)" if speedup else ""
    owner = safe(f" owner {r.owner_id}") if r.owner_id else ""
    return (f"[cyan]{safe(r.lead_id)}[/] {safe(r.sla or '')} [red]{safe(r.breach)}[/] → [green]resolved[/] "
            f"{took:.1f} s later{pipeline}{owner}")


def _human(seconds: float) -> str:
    if seconds >= 86_400:
        return f"{seconds / 86_400:.1f} d"
    if seconds >= 3_600:
        return f"{seconds / 3_600:.1f} h"
    return f"{seconds / 60:.0f} min"


def _one_line(text: Text) -> Text:
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text
