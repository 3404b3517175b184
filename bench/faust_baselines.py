"""Throughput baselines of faust on the embedded Tansu broker, against raw aiokafka. Not a test.

    .venv/bin/python -m bench.faust_baselines [--count 20000] [--only NAME,...] [--budget 170]

Starts the embedded broker, pre-fills ``--count`` 200-byte JSON messages into a 4-partition topic,
then runs each variant in its own worker process (own app id / group, own datadir, no web server)
over that same topic and prints events/s and ratios:

- ``raw-aiokafka``: consumer group member; consume, json-decode, re-produce each message, commit per
  batch (the ceiling for any Python pipeline here);
- ``faust-consume``: an agent that only counts (faust's per-message consumer path);
- ``faust-pass``: the default source → agent → sink pass-through (one ``await sink.send`` per event);
- variants with ``stream.take(n, within=...)`` and with the settings that are faust's sanctioned knobs:
  ``stream_buffer_maxsize``, ``broker_max_poll_records``, ``producer_linger_ms``,
  ``producer_max_batch_size`` (``=1`` was the old workaround for Tansu's short ListOffsets; the
  worker now corrects the end offsets at recovery instead, see ``streams.app.exact_end_offsets``).

Pass-through rates are measured on the sink: from the first to the last record arriving there.
Consume-only rates are measured by the agent (first to last event) and reported through a file.
Every faust run keeps faust's defaults except the group timings Tansu needs (session 3 s, heartbeat
1 s, rebalance 3 s), which only change start-up time. Table variants also check that every changelog
row sits in its key's source partition.

Measured here (2 cores, 20 000 events, whole script 131 s; events/s, x raw aiokafka):

    raw-aiokafka                     31,456  1.00   (BROKER.md: ~47k; here measured at the sink)
    faust-consume                    13,261  0.42
    faust-pass                        4,236  0.13   faust default pass-through
    faust-pass-batch1                 1,958  0.06   producer_max_batch_size=1 halves it
    faust-pass-leadflow               1,879  0.06   streams.settings for the embedded broker
    faust-pass-tuned                  5,134  0.16   buffer 16k, max_poll_records 2000, linger 5 ms
    faust-take-consume               12,316  0.39   take() does not make consuming cheaper
    faust-take                        4,522  0.14
    faust-take-tuned                  5,540  0.18   best faust figure: 1.3x faust-pass
    faust-take-tuned-batch1           1,299  0.04   bursts of sends queue behind 1-record batches
    faust-table-pass-leadflow         1,480  0.05   + a table row (changelog write) per event
    faust-table-take-tuned-leadflow   1,103  0.04

Reading: with ``producer_max_batch_size=1`` every record faust produces (sink *and* changelog) is its
own batch, so the producer's round trips cap a worker at ~1.5-2k events/s whatever the stream side
does; ``take()`` and the tuning knobs only pay off when batching is allowed — which is why the
worker no longer uses that setting on Tansu.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from leadflow.broker import EmbeddedBroker, die_with_parent
from streams.settings import EMBEDDED, GENERAL
from streams.topics import COMPACT, TopicSpec, changelog_topics, ensure_topics

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 4
MESSAGE_BYTES = 200

#: faust's sanctioned throughput knobs (no change of semantics; at-least-once either way).
TUNED: dict[str, Any] = {
    "stream_buffer_maxsize": 16384,     # default 4096: events buffered per partition
    "broker_max_poll_records": 2000,    # default None
    "producer_linger_ms": 5,            # default 0: let the producer fill batches
}
#: leadflow's settings for the embedded broker, minus store/web/topic creation ones.
LEADFLOW = {k: v for k, v in {**GENERAL, **EMBEDDED}.items()
            if k in {"processing_guarantee", "broker_commit_interval", "producer_acks",
                     "producer_max_batch_size", "consumer_auto_offset_reset"}}
BATCH1 = {"producer_max_batch_size": 1}


@dataclass
class Variant:
    name: str
    kind: str                 # "faust" | "aiokafka"
    mode: str = "pass"        # BENCH_MODE of bench._faust_app
    settings: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    note: str = ""

    @property
    def produces(self) -> bool:
        return self.kind == "aiokafka" or self.mode in ("pass", "take")


VARIANTS = [
    Variant("raw-aiokafka", "aiokafka", note="group; decode+produce each; commit per batch"),
    Variant("faust-consume", "faust", "consume", note="default settings, count only"),
    Variant("faust-pass", "faust", "pass", note="default settings"),
    Variant("faust-pass-batch1", "faust", "pass", BATCH1, note="+ producer_max_batch_size=1"),
    Variant("faust-pass-leadflow", "faust", "pass", LEADFLOW,
            note="streams.settings embedded (batch=1, commit 1 s)"),
    Variant("faust-pass-tuned", "faust", "pass", TUNED, note="buffer 16k, poll 2000, linger 5"),
    Variant("faust-take-consume", "faust", "take-consume", note="take(500, within=50ms), count only"),
    Variant("faust-take", "faust", "take", note="take(500, within=50ms), default settings"),
    Variant("faust-take-tuned", "faust", "take", TUNED, note="take + tuned"),
    Variant("faust-take-tuned-batch1", "faust", "take", {**TUNED, **BATCH1},
            note="take + tuned + producer_max_batch_size=1"),
    Variant("faust-table-pass-leadflow", "faust", "pass", {**LEADFLOW, "store": "memory://"},
            {"BENCH_TABLE": "1"}, note="pass + table row per event, leadflow embedded settings"),
    Variant("faust-table-take-tuned-leadflow", "faust", "take",
            {**LEADFLOW, **TUNED, "store": "memory://"}, {"BENCH_TABLE": "1"},
            note="take + tuned + table row per event, leadflow embedded settings"),
]


@dataclass
class Result:
    variant: Variant
    count: int = 0
    seconds: float = 0.0
    ready: float = 0.0          # process start → first event seen
    error: str = ""

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 and self.count > 1 else 0.0


def payload(i: int) -> bytes:
    body = {"event_id": f"ev-{i:08d}", "event_type": "email_engagement", "lead_id": f"lead-{i % 997:05d}",
            "occurred_at": "2026-03-02T10:15:00.000Z", "action": "open", "campaign_id": "c-42",
            "pad": ""}
    raw = json.dumps(body, separators=(",", ":"))
    body["pad"] = "x" * (MESSAGE_BYTES - len(raw))
    out = json.dumps(body, separators=(",", ":")).encode()
    assert len(out) == MESSAGE_BYTES
    return out


async def prefill(bootstrap: str, topic: str, count: int) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    t0 = time.monotonic()
    try:
        futures = [await producer.send(topic, key=f"lead-{i % 997:05d}".encode(), value=payload(i))
                   for i in range(count)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.monotonic() - t0


async def count_sink(bootstrap: str, topic: str, count: int, deadline: float,
                     proc: subprocess.Popen[bytes], started: float) -> Result:
    """Count records arriving on ``topic`` (assign(), from the beginning); first → last arrival."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=50)
    await consumer.start()
    result = Result(Variant("", ""))
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        first = last = 0.0
        n = 0
        while n < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=100, max_records=5000)
            got = sum(len(b) for b in batches.values())
            if got:
                now = time.monotonic()
                if n == 0:
                    first = now
                    result.ready = now - started
                n += got
                last = now
            elif proc.poll() is not None:
                result.error = f"worker exited with {proc.returncode}"
                break
        result.count, result.seconds = n, last - first
        if n < count and not result.error:
            result.error = f"timed out at {n}/{count}"
    finally:
        await consumer.stop()
    return result


async def key_partitions(bootstrap: str, topic: str) -> dict[bytes, set[int]]:
    """Every key of ``topic`` with the partitions it was found in (assign(), read until idle)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=50)
    await consumer.start()
    seen: dict[bytes, set[int]] = {}
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        idle = 0
        while idle < 5:
            batches = await consumer.getmany(timeout_ms=100, max_records=5000)
            idle = 0 if batches else idle + 1
            for tp, records in batches.items():
                for r in records:
                    seen.setdefault(r.key, set()).add(tp.partition)
    finally:
        await consumer.stop()
    return seen


def wait_report(report: Path, deadline: float, proc: subprocess.Popen[bytes], count: int) -> Result:
    result = Result(Variant("", ""))
    while time.monotonic() < deadline:
        if report.exists():
            data = json.loads(report.read_text())
            result.count, result.seconds = data["count"], data["seconds"]
            return result
        if proc.poll() is not None:
            result.error = f"worker exited with {proc.returncode}"
            return result
        time.sleep(0.05)
    result.error = f"timed out before {count} events"
    return result


def run_variant(v: Variant, bootstrap: str, source: str, count: int, work: Path, run_id: str,
                timeout: float) -> Result:
    app_id = f"bench-{run_id}-{v.name}"
    sink = f"{app_id}.sink"
    ensure_topics(bootstrap, [sink], PARTITIONS)
    if v.env.get("BENCH_TABLE") == "1":
        ensure_topics(bootstrap, [TopicSpec(t, PARTITIONS, COMPACT)
                                  for t in changelog_topics(app_id, ["counts"])])
    report = work / f"{v.name}.report.json"
    datadir = work / f"{v.name}.data"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_APP_ID": app_id, "BENCH_BROKER": bootstrap,
           "BENCH_SOURCE": source, "BENCH_SINK": sink, "BENCH_COUNT": str(count),
           "BENCH_REPORT": str(report), "BENCH_DATADIR": str(datadir), "BENCH_MODE": v.mode,
           "BENCH_SETTINGS": json.dumps(v.settings), **v.env}
    if v.kind == "aiokafka":
        cmd = [sys.executable, "-m", "bench._aiokafka_worker"]
    else:
        cmd = [sys.executable, "-m", "bench._faust_app", "worker", "-l", "warn", "--without-web"]
    log_path = work / f"{v.name}.log"
    started = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent)
    deadline = started + timeout
    try:
        if v.produces:
            result = asyncio.run(count_sink(bootstrap, sink, count, deadline, proc, started))
        else:
            result = wait_report(report, deadline, proc, count)
            result.ready = float("nan")
    finally:
        _stop(proc)
    result.variant = v
    if v.env.get("BENCH_TABLE") == "1" and not result.error:
        # a changelog row must sit in its key's source partition, or recovery restores wrong rows
        src = asyncio.run(key_partitions(bootstrap, source))
        log = asyncio.run(key_partitions(bootstrap, changelog_topics(app_id, ["counts"])[0]))
        wrong = sorted(k for k, parts in log.items() if parts != src.get(k))
        if not log or wrong:
            result.error = f"changelog not co-partitioned: {len(wrong)}/{len(log)} keys, e.g. {wrong[:3]}"
    if result.error:
        tail = log_path.read_text(errors="replace")[-600:].strip().replace("\n", " | ")
        result.error += f" (log: …{tail[-300:]})" if tail else ""
    return result


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)   # measurement is over; no graceful shutdown needed
        except ProcessLookupError:
            pass
    proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20_000, help="messages to pre-fill (default 20000)")
    parser.add_argument("--only", default="", help="comma-separated variant names")
    parser.add_argument("--budget", type=float, default=170.0, help="seconds for the whole run")
    parser.add_argument("--run-timeout", type=float, default=40.0, help="seconds per variant")
    args = parser.parse_args(argv)
    chosen = [v for v in VARIANTS if not args.only or v.name in args.only.split(",")]
    if not chosen:
        parser.error(f"no variant among {[v.name for v in VARIANTS]}")

    t_start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="leadflow-bench-"))
    results: list[Result] = []
    try:
        with EmbeddedBroker(log_dir=work) as broker:
            bootstrap = broker.bootstrap
            run_id = uuid.uuid4().hex[:6]
            source = f"bench-{run_id}.source"
            ensure_topics(bootstrap, [source], PARTITIONS)
            seconds = asyncio.run(prefill(bootstrap, source, args.count))
            print(f"broker {bootstrap}; pre-filled {args.count} x {MESSAGE_BYTES} B into {source} "
                  f"({PARTITIONS} partitions) at {args.count / seconds:,.0f} msg/s", flush=True)
            for v in chosen:
                left = args.budget - (time.monotonic() - t_start)
                if left < 8:
                    results.append(Result(v, error="skipped: out of time budget"))
                    continue
                r = run_variant(v, bootstrap, source, args.count, work, run_id,
                                min(args.run_timeout, left))
                results.append(r)
                status = f"{r.rate:>9,.0f} ev/s" if not r.error else r.error
                print(f"  {v.name:<32} {status}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(results, args.count, time.monotonic() - t_start)
    return 0 if all(not r.error for r in results) else 1


def print_table(results: list[Result], count: int, total: float) -> None:
    by_name = {r.variant.name: r for r in results}
    raw = by_name.get("raw-aiokafka")
    base = by_name.get("faust-pass")
    print(f"\n{count} events of {MESSAGE_BYTES} B, {PARTITIONS} partitions, one worker process each; "
          f"total {total:.0f} s")
    print(f"{'variant':<32} {'events/s':>9} {'x raw':>7} {'x faust-pass':>12} {'ready s':>7}  note")
    for r in results:
        if r.error:
            print(f"{r.variant.name:<32} {'-':>9} {'':>7} {'':>12} {'':>7}  {r.error}")
            continue
        x_raw = f"{r.rate / raw.rate:.2f}" if raw and raw.rate else "-"
        x_base = f"{r.rate / base.rate:.2f}" if base and base.rate else "-"
        ready = f"{r.ready:.1f}" if r.ready == r.ready else "-"
        print(f"{r.variant.name:<32} {r.rate:>9,.0f} {x_raw:>7} {x_base:>12} {ready:>7}  {r.variant.note}")


if __name__ == "__main__":
    raise SystemExit(main())
