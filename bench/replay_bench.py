"""Replay throughput and memory per open lead, against a baseline measured in the same run.

    .venv/bin/python bench/replay_bench.py                 # 1 000 000 events over 100 000 leads
    .venv/bin/python bench/replay_bench.py --leads 10000   # a quick look

Baseline: read the same JSON lines, ``json.loads`` and ``json.dumps`` each, write them out — the
cheapest honest thing any JSON stream processor must do. Targets (issue 14, this 2-core machine):
``--jobs 2`` >= 90 000 events/s and >= 0.4 of the baseline, <= 1.5 KB per open lead. Also printed: µs
per event through the shared step for an event that moves a stage and one that does not.

    .venv/bin/python bench/replay_bench.py --jobs 3        # compare another number of processes
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.chart import bars  # noqa: E402
from leadflow.replay import Source, replay  # noqa: E402
from leadflow.traffic import TrafficShape, json_lines  # noqa: E402
from lifecycle.application import Row  # noqa: E402
from lifecycle.engine import Engine  # noqa: E402
from lifecycle.events import EmailEngaged, FormFilled  # noqa: E402
from lifecycle.records import LifecycleRecord  # noqa: E402
from lifecycle.policy import Policy  # noqa: E402
from lifecycle.processor import Processor  # noqa: E402
from lifecycle.stages import TERMINAL  # noqa: E402


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def write_input(path: Path, leads: int, events: int) -> int:
    """Realistic journeys, topped up with extra email opens so the file holds ``events`` lines."""
    count = 0
    with open(path, "wb") as out:
        for line in json_lines(leads, seed=11, shape=TrafficShape(duplicate_share=0.01, bad_share=0.0005)):
            out.write(line + b"\n")
            count += 1
        extra = max(0, events - count)
        for i in range(extra):
            lead = f"L-{1 + (i * 7919) % leads:06d}"
            out.write(
                b'{"event_id":"open-%d","event_type":"email_engagement","lead_id":"%s","action":"open",'
                b'"campaign_id":"c3","occurred_at":"2026-05-%02dT%02d:%02d:00Z"}\n'
                % (i, lead.encode(), 1 + i * 28 // extra, (i // 60) % 24, i % 60)
            )
            count += 1
    return count


def baseline(path: Path, out_dir: Path) -> float:
    """The issue's baseline: the standard library's json, parse and re-serialise every line."""
    loads, dumps = json.loads, json.dumps
    started = time.perf_counter()
    with open(path, "rb") as lines, open(out_dir / "baseline.jsonl", "wb") as out:
        for line in lines:
            try:
                out.write(dumps(loads(line), separators=(",", ":")).encode() + b"\n")
            except ValueError:  # the few malformed lines: a processor must survive them too
                out.write(line)
    return time.perf_counter() - started


def baseline_orjson(path: Path, out_dir: Path) -> float:
    """The same with orjson, the parser leadflow itself uses: the stricter comparison."""
    loads, dumps = orjson.loads, orjson.dumps
    started = time.perf_counter()
    with open(path, "rb") as lines, open(out_dir / "baseline-orjson.jsonl", "wb") as out:
        for line in lines:
            try:
                out.write(dumps(loads(line)) + b"\n")
            except ValueError:
                out.write(line)
    return time.perf_counter() - started


def step_costs(leads: int = 20_000, opens: int = 10) -> tuple[float, float]:
    """µs per event through the shared step (``Application.on_event``, as replay calls it) for an
    event that moves a stage (a demo request: engaged -> mql, with its record and new SLA) and one
    that does not (an email open on an engaged lead: score and idempotency set only)."""
    app = Processor(Engine(Policy())).app
    base = 1_772_442_000_000
    ids = [f"L-{i:06d}" for i in range(leads)]
    rows = {}
    for i, lead_id in enumerate(ids):  # every lead engaged (a click), well below the MQL threshold
        click = EmailEngaged(event_id=f"c-{i}", lead_id=lead_id, occurred_at=base, action="click", campaign_id="c1")
        rows[lead_id] = app.on_event(Row(), click, base).row
    events = [EmailEngaged(event_id=f"o-{i}-{k}", lead_id=lead_id, occurred_at=base + 1000 * k + 1, action="open",
                           campaign_id="c1") for k in range(opens) for i, lead_id in enumerate(ids)]
    moved = 0
    started = time.perf_counter()
    for event in events:
        step = app.on_event(rows[event.lead_id], event, event.occurred_at)
        rows[event.lead_id] = step.row
        moved += len(step.records)
    still_us = (time.perf_counter() - started) / len(events) * 1e6
    assert moved == 0, "an open moved a stage: the measure would not be of a non-moving event"
    at = base + 1000 * opens + 1
    forms = [FormFilled(event_id=f"f-{i}", lead_id=lead_id, occurred_at=at, form_type="demo_request", form_id="f1")
             for i, lead_id in enumerate(ids)]
    started = time.perf_counter()
    for event in forms:
        step = app.on_event(rows[event.lead_id], event, at)
        rows[event.lead_id] = step.row
        moved += sum(type(r) is LifecycleRecord for r in step.records)
    move_us = (time.perf_counter() - started) / len(forms) * 1e6
    assert moved == len(forms), "every demo request must move its lead to mql"
    return move_us, still_us


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds (user + system) of this process, and of its children that ended."""
    times = os.times()
    return times.user + times.system, times.children_user + times.children_system


def timed_replay(path: Path, out_dir: Path, jobs: int) -> tuple[float, object, float, float]:
    """Wall seconds, tally, and CPU seconds of this process and of the job processes."""
    own, children = cpu_seconds()
    started = time.perf_counter()
    tally = replay([Source(str(path))], out_dir, Policy(), jobs=jobs)
    wall = time.perf_counter() - started
    own_after, children_after = cpu_seconds()
    return wall, tally, own_after - own, children_after - children


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=None, help="default: 10 per lead")
    parser.add_argument("--jobs", type=int, default=2, help="the parallel replay measured beside one process")
    args = parser.parse_args()
    events = args.events or args.leads * 10
    console = Console()
    with tempfile.TemporaryDirectory(prefix="leadflow-bench-") as tmp:
        tmp_path = Path(tmp)
        path = tmp_path / "events.jsonl"
        with console.status(f"writing {events:,} events over {args.leads:,} leads"):
            lines = write_input(path, args.leads, events)
        with console.status("baseline: json.loads + json.dumps per line"):
            base_s = baseline(path, tmp_path)
            fast_base_s = baseline_orjson(path, tmp_path)
        gc.collect()
        before = rss_bytes()
        processor = Processor(Engine(Policy()))
        with console.status("replay"):
            one_cpu = cpu_seconds()[0]
            started = time.perf_counter()
            tally = replay([Source(str(path))], tmp_path / "out", Policy(), processor=processor)
            replay_s = time.perf_counter() - started
            one_cpu = cpu_seconds()[0] - one_cpu
        peak = peak_rss_bytes()
        load = os.getloadavg()[0]
        with console.status(f"replay --jobs {args.jobs}"):
            jobs_s, jobs_tally, parent_cpu, jobs_cpu = timed_replay(path, tmp_path / "out-jobs", args.jobs)
        load = f"{load:.2f} / {os.getloadavg()[0]:.2f}"
        same = all((tmp_path / "out" / name).read_bytes() == (tmp_path / "out-jobs" / name).read_bytes()
                   for name in ("lifecycle.jsonl", "alerts.jsonl", "dlq.jsonl"))
        with console.status("µs per event through the shared step"):
            move_us, still_us = step_costs()
        open_leads = sum(1 for lead in processor.leads.values() if lead.stage not in TERMINAL)
        per_lead = (peak - before) / max(1, len(processor.leads))
        per_open = (peak - before) / max(1, open_leads)

    rate, base_rate, fast_base_rate = lines / replay_s, lines / base_s, lines / fast_base_s
    table = Table(title=f"replay: {lines:,} events, {len(processor.leads):,} leads ({open_leads:,} open)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_row("baseline (json loads+dumps)", f"{base_rate:,.0f} events/s", "")
    table.add_row("replay --jobs 1", f"{rate:,.0f} events/s", "")
    jobs_rate = lines / jobs_s
    table.add_row(f"replay --jobs {args.jobs}", f"{jobs_rate:,.0f} events/s", ">= 90,000")
    table.add_row(f"replay --jobs {args.jobs} / --jobs 1", f"{jobs_rate / rate:.2f}", "")
    table.add_row(f"replay --jobs {args.jobs} / baseline", f"{jobs_rate / base_rate:.2f}", ">= 0.40")
    table.add_row(f"--jobs {args.jobs} output identical to --jobs 1", "yes" if same else "NO", "yes")
    table.add_row("CPU per event, --jobs 1", f"{one_cpu / lines * 1e6:.1f} µs", "")
    table.add_row(f"CPU per event, --jobs {args.jobs} (all processes)",
                  f"{(parent_cpu + jobs_cpu) / lines * 1e6:.1f} µs", "")
    table.add_row(f"--jobs {args.jobs} wall / CPU of its processes",
                  f"{jobs_s:.1f} s / {parent_cpu:.1f} s here + {jobs_cpu:.1f} s forked", "")
    table.add_row("load average before / after --jobs run (1 min)", load, "")
    table.add_row("step, event that moves a stage", f"{move_us:.1f} µs", "")
    table.add_row("step, event that moves nothing", f"{still_us:.1f} µs", "")
    table.add_row("baseline with orjson (leadflow's parser)", f"{fast_base_rate:,.0f} events/s", "")
    table.add_row("replay --jobs 1 / baseline", f"{rate / base_rate:.2f}", "")
    table.add_row("replay / orjson baseline", f"{rate / fast_base_rate:.2f}", "")
    table.add_row("memory per open lead (peak RSS growth, --jobs 1)", f"{per_open:,.0f} B", "<= 1,536")
    table.add_row("memory per lead, all leads", f"{per_lead:,.0f} B", "")
    table.add_row("applied / duplicates / DLQ", f"{tally.applied:,} / {tally.duplicates:,} / {tally.dead_lettered:,}", "")
    table.add_row("stage changes / alerts", f"{tally.transitions:,} / {sum(tally.alerts.values()):,}", "")
    console.print(table)
    print(bars({"baseline (json loads+dumps)": base_rate, "replay --jobs 1": rate,
                f"replay --jobs {args.jobs}": jobs_rate}, base_rate, 0.4))


if __name__ == "__main__":
    main()
