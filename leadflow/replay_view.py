"""What ``leadflow replay`` shows a person: a progress bar on large inputs, the records as they happen
on small ones, and a one-screen summary at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import orjson
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from leadflow.replay import OUTPUT_FILES, ClockWatch, ReplayOutput, Source, dead_letter_counts, replay
from leadflow.replay_jobs import PARALLEL_MIN_BYTES, default_jobs
from leadflow.terminal import safe
from lifecycle.policy import Policy
from lifecycle.processor import Tally
from lifecycle.records import AlertRecord, DlqRecord, LifecycleRecord, Record
from lifecycle.stages import Stage
from sinks.base import Sink
from schemas.wire import format_time
from streams.config import DEFAULT_FUTURE_MARGIN_MS

#: Inputs above this size get a progress bar; below it, every record is shown when ``--show`` is unset.
LARGE_INPUT_BYTES = 4 * 1024 * 1024
SHOW_LIMIT_BYTES = 256 * 1024
_ALERT_STYLE = {"sla_warning": "yellow", "follow_up_overdue": "red", "handoff_broken": "magenta", "sla_resolved": "green",
                "sla_retracted": "bold bright_cyan", "sla_held": "blue", "sla_resumed": "blue"}


def describe(record: Record) -> str:
    """One line of rich markup for a record; every value from the data through ``safe``."""
    if isinstance(record, LifecycleRecord):
        source = safe(record.from_stage or "∅")
        skipped = (f" [dim](skipped {safe(', '.join(record.skipped_stages))})[/]"
                   if record.skipped_stages else "")
        return (
            f"{format_time(record.occurred_at)}  [cyan]{safe(record.lead_id)}[/] {source} → "
            f"[bold]{safe(record.to_stage)}[/]  [dim]{safe(record.trigger_event_type)}[/]{skipped}"
        )
    if isinstance(record, AlertRecord):
        style = _ALERT_STYLE.get(record.type, "white")
        what = record.sla or ""
        if record.reason:
            what += f" ({record.reason})" if what else record.reason
        level = f" L{record.level}" if record.type == "follow_up_overdue" else ""
        owner = f" owner {record.owner_id}" if record.owner_id else ""
        return (f"{format_time(record.detected_at)}  [cyan]{safe(record.lead_id)}[/] "
                f"[{style}]{safe(record.type)}{level}[/] {safe(what)}{safe(owner)}")
    assert isinstance(record, DlqRecord)
    return (f"[red]DLQ[/] {safe(record.source_topic)}:{record.source_offset} {safe(record.error)}: "
            f"{safe(record.detail)}")


def run(files: Sequence[str], output: ReplayOutput, policy: Policy, until: int | None, show: bool | None,
        sink: Sink | None = None, margin_ms: int = DEFAULT_FUTURE_MARGIN_MS, jobs: int | None = None) -> Tally:
    """Replay ``files`` into the (open, locked) ``output`` with a progress bar or the records shown,
    then print the summary; the summary warns when the clock jumped more than ``margin_ms`` ahead
    of the events after it. ``jobs``: processes sharing the leads (None: the cores, on inputs of
    ``PARALLEL_MIN_BYTES`` and more)."""
    console = Console(stderr=True, highlight=False)
    watch = ClockWatch(margin_ms)
    sources = [Source(name) for name in files]
    sizes = [s.size() for s in sources]
    known = None if any(size is None for size in sizes) else sum(s for s in sizes if s is not None)
    if show is None:
        show = known is not None and known <= SHOW_LIMIT_BYTES
    if jobs is None:
        jobs = default_jobs() if known is not None and known >= PARALLEL_MIN_BYTES else 1
    out = Console(highlight=False)
    on_record = (lambda r: out.print(describe(r))) if show else None

    use_bar = console.is_terminal and (known is None or known >= LARGE_INPUT_BYTES)
    if use_bar:
        progress = Progress(
            TextColumn("[bold]replay"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        with progress:
            task = progress.add_task("replay", total=known)
            tally = replay(sources, output, policy, until, lambda n: progress.advance(task, n), on_record,
                           sink=sink, watch=watch, jobs=jobs)
    else:
        tally = replay(sources, output, policy, until, None, on_record, sink=sink, watch=watch, jobs=jobs)
    out.print(summary(tally, output.path, policy))
    for line in clock_warnings(watch):
        console.print(line)
    return tally


def clock_warnings(watch: ClockWatch, shown: int = 3) -> list[str]:
    """One line of markup per jump of the clock ahead of the data (the largest few)."""
    jumps = sorted(watch.jumps, key=lambda j: -j.behind)
    margin = _duration(watch.margin_ms)
    lines = []
    for jump in jumps[:shown]:
        moved = "started at" if jump.from_ms is None else f"jumped {_duration(jump.to_ms - jump.from_ms)} ahead to"
        lines.append(
            f"[yellow]warning:[/] the clock {moved} {format_time(jump.to_ms)} at "
            f"{safe(jump.source)}:{jump.line} (lead {safe(jump.lead_id)}, event {safe(jump.event_id)}); "
            f"{jump.behind:,} later events were more than {margin} behind it, and every SLA due before "
            f"it fired at once (README: Time; a producer's clock?)")
    if len(jumps) > shown:
        lines.append(f"[yellow]warning:[/] {len(jumps) - shown} more jumps of the clock")
    return lines


def _duration(ms: int) -> str:
    for unit, size in (("years", 365 * 86_400_000), ("days", 86_400_000), ("h", 3_600_000), ("min", 60_000)):
        if ms >= size:
            return f"{ms / size:.1f} {unit}"
    return f"{ms / 1000:.0f} s"


def stage_counts(out_dir: Path) -> dict[str, int]:
    """Leads per current stage, read back from the lifecycle file just written."""
    latest: dict[str, str] = {}
    with open(out_dir / "lifecycle.jsonl", "rb") as lines:
        for line in lines:
            record = orjson.loads(line)
            latest[record["lead_id"]] = record["to_stage"]
    counts = dict.fromkeys((s.value for s in Stage), 0)
    for stage in latest.values():
        counts[stage] += 1
    return counts


def _lateness(ms: int) -> str:
    minutes, seconds = divmod(ms // 1000, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days}d"] * bool(days) + [f"{hours}h"] * bool(hours) + [f"{minutes}m"] * bool(minutes)
    return " ".join(parts) or f"{seconds}s"


def summary(tally: Tally, out_dir: Path, policy: Policy | None = None) -> Table:
    table = Table(title="leadflow replay", show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(justify="right")
    if policy is not None:
        table.add_row("policy", escape(f"{policy.source}, version {policy.policy_version}"))
    table.add_row("events read", f"{tally.read:,}")
    table.add_row("  applied", f"{tally.applied:,}")
    table.add_row("  duplicates", f"{tally.duplicates:,}")
    # every dead letter in dlq.jsonl: the inputs that failed, and what a sink dead-lettered on the
    # way (an alert the webhook could not deliver: webhook_failed)
    dead = dead_letter_counts(out_dir)
    table.add_row("  dead-lettered", f"{sum(dead.values()):,}")
    for code, count in sorted(dead.items()):
        table.add_row(f"    {safe(code)}", f"{count:,}")
    # SPEC 9: events whose time lies before their lead's latest applied event, never dropped
    late = f"{tally.late:,}" + (f" (at most {_lateness(tally.max_late_ms)} late)" if tally.late else "")
    table.add_row("  late for their lead", late)
    table.add_row("stage changes", f"{tally.transitions:,}")
    counts = stage_counts(out_dir)
    table.add_row("leads by stage", " ".join(f"{stage} {n:,}" for stage, n in counts.items() if n))
    table.add_row("alerts", f"{sum(tally.alerts.values()):,}")
    for kind, count in sorted(tally.alerts.items()):
        table.add_row(f"  {kind}", f"{count:,}")
    table.add_row("written to", safe(", ".join(str(out_dir / name) for name in OUTPUT_FILES)))
    return table
