"""End-to-end worker throughput on the embedded broker, beside faust baselines from the same run;
and timer capacity: one million pending SLA deadlines.

    .venv/bin/python -m bench.worker_bench                  # 20 000 events, one and two workers
    .venv/bin/python -m bench.worker_bench --count 5000     # a quick look

The same pre-filled events (200-byte email opens over 997 leads, keyed by lead id) feed every
variant: faust consume-only, faust pass-through (both from bench.faust_baselines), one leadflow
worker, and two leadflow workers in one group. A worker's rate is its processed-events counter
(/metrics) from the first event to the last. Targets (issue 3): >= 0.6 x consume-only faust,
>= 3 500 events/s for one worker, more with two; timers firing within 1 s with a million pending.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
import uuid
from pathlib import Path

from bench.faust_baselines import VARIANTS, prefill, run_variant
from lifecycle.timers import TimerSet
from leadflow.broker import EmbeddedBroker, die_with_parent, free_port
from streams.topics import ensure_topics
from leadflow.worker import topics_from_env

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 4
EVENTS = re.compile(rb'^leadflow_events_total\{event_type="[a-z_]+"\} ([0-9.e+]+)$', re.M)


def processed(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as response:
            return int(sum(float(v) for v in EVENTS.findall(response.read())))
    except OSError:
        return -1


def run_workers(n: int, bootstrap: str, prefix: str, count: int, work: Path, timeout: float) -> float:
    """events/s of ``n`` workers in one group over the pre-filled input; 0.0 on time-out."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LEADFLOW_APP_ID": f"{prefix}-app",
           "LEADFLOW_TOPIC_PREFIX": prefix, "LEADFLOW_PARTITIONS": str(PARTITIONS)}
    ports = [free_port() for _ in range(n)]
    procs = []
    for i, port in enumerate(ports):
        with open(work / f"{prefix}-worker{i}.log", "wb") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "leadflow", "worker", "--broker", bootstrap, "--web-port", str(port)],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=die_with_parent))
    deadline = time.monotonic() + timeout
    first = last = None
    try:
        while time.monotonic() < deadline:
            done = sum(max(0, processed(p)) for p in ports)
            now = time.monotonic()
            if done > 0 and first is None:
                first = now
            if done >= count:
                last = now
                break
            time.sleep(0.05)
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    if first is None or last is None or last <= first:
        return 0.0
    return count / (last - first)


def timer_capacity(n: int) -> tuple[float, float, float, float]:
    """(MB for n pending timers, µs per set, µs per pop, worst lateness ms of a 100 ms tick loop)."""
    tracemalloc.start()
    timers = TimerSet()
    base = 1_800_000_000_000
    started = time.perf_counter()
    for i in range(n):
        timers.set(f"L-{i:07d}", base + (i * 7919) % 3_600_000)
    set_us = (time.perf_counter() - started) / n * 1e6
    size_mb = tracemalloc.get_traced_memory()[0] / 1e6
    tracemalloc.stop()
    for i in range(0, n, 10):  # churn: a tenth of the leads move their deadline
        timers.set(f"L-{i:07d}", base + 3_600_000 + i % 1000)
    # a tick every 100 ms of simulated time pops what is due; lateness = tick time - due
    worst = 0.0
    popped = 0
    started = time.perf_counter()
    for tick in range(0, 3_700_000 + 100, 100):
        now = base + tick
        for _, due in timers.pop_due(now):
            worst = max(worst, now - due)
            popped += 1
    pop_us = (time.perf_counter() - started) / max(1, popped) * 1e6
    return size_mb, set_us, pop_us, worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--timers", type=int, default=1_000_000)
    parser.add_argument("--run-timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="leadflow-wbench-"))
    rates: dict[str, float] = {}
    try:
        with EmbeddedBroker(log_dir=work) as broker:
            bootstrap = broker.bootstrap
            run_id = uuid.uuid4().hex[:6]
            for label, workers in (("leadflow worker x1", 1), ("leadflow workers x2", 2)):
                prefix = f"wb{run_id}{workers}"
                topics = topics_from_env({"LEADFLOW_APP_ID": f"{prefix}-app", "LEADFLOW_TOPIC_PREFIX": prefix,
                                          "LEADFLOW_PARTITIONS": str(PARTITIONS)})
                ensure_topics(bootstrap, topics, PARTITIONS)
                asyncio.run(prefill(bootstrap, topics.email_engagement, args.count))
                if workers == 1:  # the baselines read the very same records
                    for variant in VARIANTS:
                        if variant.name in ("faust-consume", "faust-pass"):
                            result = run_variant(variant, bootstrap, topics.email_engagement, args.count,
                                                 work, run_id, args.run_timeout)
                            rates[variant.name] = result.rate
                            print(f"  {variant.name:<22} {result.rate:>9,.0f} events/s {result.error}", flush=True)
                rates[label] = run_workers(workers, bootstrap, prefix, args.count, work, args.run_timeout)
                print(f"  {label:<22} {rates[label]:>9,.0f} events/s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    size_mb, set_us, pop_us, worst = timer_capacity(args.timers)
    consume = rates.get("faust-consume") or float("nan")
    one = rates.get("leadflow worker x1", 0.0)
    print()
    print(f"events: {args.count:,} x 200 B over 997 leads, {PARTITIONS} partitions, embedded Tansu broker")
    print(f"{'faust consume-only':<28}{consume:>10,.0f} events/s")
    print(f"{'faust pass-through':<28}{rates.get('faust-pass', 0):>10,.0f} events/s")
    print(f"{'leadflow, one worker':<28}{one:>10,.0f} events/s   x{one / consume:.2f} of consume-only (target >= 0.6; >= 3,500/s)")
    print(f"{'leadflow, two workers':<28}{rates.get('leadflow workers x2', 0):>10,.0f} events/s   x{rates.get('leadflow workers x2', 0) / max(one, 1e-9):.2f} of one worker")
    print(f"timers: {args.timers:,} pending in {size_mb:,.0f} MB ({size_mb * 1e6 / args.timers:,.0f} B each); "
          f"set {set_us:.2f} us, pop {pop_us:.2f} us; worst lateness at a 100 ms tick {worst:.0f} ms (target < 1000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
