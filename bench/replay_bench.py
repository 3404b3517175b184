"""Replay throughput and memory per open lead, against a baseline measured in the same run.

    .venv/bin/python bench/replay_bench.py                 # 1 000 000 events over 100 000 leads
    .venv/bin/python bench/replay_bench.py --leads 10000   # a quick look

Baseline: read the same JSON lines, ``json.loads`` and ``json.dumps`` each, write them out — the
cheapest honest thing any JSON stream processor must do. Targets (issue 2, this 2-core machine):
>= 40 000 events/s, >= 0.4 of the baseline, <= 2 KB per open lead.
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

from leadflow.replay import Source, replay  # noqa: E402
from leadflow.traffic import TrafficShape, json_lines  # noqa: E402
from lifecycle.engine import Engine  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=None, help="default: 10 per lead")
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
            started = time.perf_counter()
            tally = replay([Source(str(path))], tmp_path / "out", Policy(), processor=processor)
            replay_s = time.perf_counter() - started
        peak = peak_rss_bytes()
        open_leads = sum(1 for lead in processor.leads.values() if lead.stage not in TERMINAL)
        per_lead = (peak - before) / max(1, len(processor.leads))
        per_open = (peak - before) / max(1, open_leads)

    rate, base_rate, fast_base_rate = lines / replay_s, lines / base_s, lines / fast_base_s
    table = Table(title=f"replay: {lines:,} events, {len(processor.leads):,} leads ({open_leads:,} open)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_row("baseline (json loads+dumps)", f"{base_rate:,.0f} events/s", "")
    table.add_row("replay", f"{rate:,.0f} events/s", ">= 40,000")
    table.add_row("baseline with orjson (leadflow's parser)", f"{fast_base_rate:,.0f} events/s", "")
    table.add_row("replay / baseline", f"{rate / base_rate:.2f}", ">= 0.40")
    table.add_row("replay / orjson baseline", f"{rate / fast_base_rate:.2f}", "")
    table.add_row("memory per open lead (peak RSS growth)", f"{per_open:,.0f} B", "<= 2,048")
    table.add_row("memory per lead, all leads", f"{per_lead:,.0f} B", "")
    table.add_row("applied / duplicates / DLQ", f"{tally.applied:,} / {tally.duplicates:,} / {tally.dead_lettered:,}", "")
    table.add_row("stage changes / alerts", f"{tally.transitions:,} / {sum(tally.alerts.values()):,}", "")
    console.print(table)


if __name__ == "__main__":
    main()
