"""The live worker on the embedded broker, each figure beside a baseline measured in the same run.

    .venv/bin/python -m bench.worker_bench                  # everything, full size (~3-4 min)
    .venv/bin/python -m bench.worker_bench --quick          # smaller loads (~1.5 min)
    .venv/bin/python -m bench.worker_bench --parts mix,recovery

Parts (``--parts``, comma-separated; default ``mix,recovery,capacity``):

- ``mix``: the traffic generator's realistic mix (``leadflow.traffic.json_lines``: every event type,
  stage changes, duplicates, malformed lines; the last 30 days up to now, so SLAs under the default
  policy both fall due while the load runs, and are pending), ``--count`` lines routed to the four
  input topics keyed by lead id as ``leadflow produce`` does. Baseline: a faust agent that only
  counts (consume-only, raw values) over the same four topics, pre-filled with the same lines.
  Then one worker, and two workers in one group: each set of workers is started on empty topics
  and waited for until it serves all partitions (so start-up and rebalances stay out of the
  figure), then the lines are produced; the rate is valid events + dead letters counted by the
  workers' ``/metrics``, from the first to the last. Targets (issue 14): one worker >= 0.4x
  consume-only; two workers >= 1.8x one.
- ``email``: the older measurement on 200-byte email opens (``bench.faust_baselines.payload``),
  the same way, against faust consume-only and faust's own pass-through.
- ``recovery``: ``--leads`` leads' rows (realistic: the generator's journeys stepped through the
  shared step, cloned under new lead ids) written straight into the lead table's changelog on each
  lead's partition, plus ``--timer-leads`` leads whose assignment SLA falls due spread over the
  seconds around the takeover. Baseline: a plain aiokafka consumer (``assign()``) reading that
  changelog to its end. Then a fresh worker: seconds from its start to ``/health`` ok with all
  partitions (target <= 10 s), and the lateness of the timer leads' breach alerts
  (``detected_at - due_at``) for the deadlines that fall due after it serves (the first 5 s, and
  all) and, apart, those that fell due while it was recovering.
- ``capacity``: one million pending SLA deadlines in ``lifecycle.timers.TimerSet`` (memory, set,
  pop, lateness at a 100 ms tick).

Every figure line carries the machine's load average (``os.getloadavg``) at that moment.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rich.console import Console

from bench.chart import bars
from bench.faust_baselines import VARIANTS, Variant, payload, run_variant
from lifecycle.application import Application
from lifecycle.engine import Engine
from lifecycle.policy import Policy
from lifecycle.timers import TimerSet
from leadflow.broker import EmbeddedBroker, die_with_parent, free_port
from leadflow.produce import route
from leadflow.traffic import DAY, json_lines
from leadflow.worker import topics_from_env
from schemas import codec
from schemas.policy_file import parse_policy
from schemas.wire import format_time, parse_time
from streams import rows
from streams.app import now_ms, partition_for
from streams.output import JsonOutput
from streams.topics import Topics, ensure_topics

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 4
DONE = re.compile(rb'^leadflow_(?:events|dlq_records)_total\{[a-z_]+="[a-z0-9_]+"\} ([0-9.e+]+)$', re.M)
console = Console(stderr=True)
#: print each worker's progress during the throughput runs (``--trace``)
TRACE = False
#: another checkout whose worker is measured in the same run (``--base``)
BASE: Path | None = None
#: (directory, seconds): sample every worker with py-spy for that long from its start (``--profile``)
PROFILE: tuple[Path, float] | None = None

#: The timer leads' policy: an assignment SLA of TIMER_SLA_S seconds, a breach and nothing else.
TIMER_SLA_S = 30
TIMER_POLICY = f"""
[sla.assignment]
within = "{TIMER_SLA_S}s"
business = false
"""


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system, all threads) the process ``pid`` has used so far."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


#: the embedded broker's pid, for its CPU share
BROKER_PID: int | None = None


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}"


# -- workers as processes ---------------------------------------------------------------------------

def deployment(prefix: str) -> tuple[Topics, dict[str, str]]:
    env = {"LEADFLOW_APP_ID": f"{prefix}-app", "LEADFLOW_TOPIC_PREFIX": prefix,
           "LEADFLOW_PARTITIONS": str(PARTITIONS)}
    return topics_from_env(env), env


def _get(port: int, path: str) -> bytes | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as response:
            return response.read()
    except urllib.error.HTTPError as error:
        return error.read()
    except OSError:
        return None


def processed(port: int) -> int:
    """Valid events + dead letters the worker on ``port`` has counted (-1: no answer)."""
    body = _get(port, "/metrics")
    return -1 if body is None else int(sum(float(v) for v in DONE.findall(body)))


def serving(port: int) -> list[int] | None:
    """The partitions the worker serves once its /health says ok, else None."""
    body = _get(port, "/health")
    if not body:
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return doc.get("partitions") if doc.get("status") == "ok" else None


@dataclass
class Workers:
    n: int
    bootstrap: str
    env: dict[str, str]
    work: Path
    name: str
    policy: Path | None = None
    #: the checkout whose ``leadflow worker`` runs (``--base`` for a same-run A/B)
    root: Path = ROOT
    ports: list[int] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started: float = 0.0
    spies: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __enter__(self) -> "Workers":
        env = {**os.environ, "PYTHONPATH": str(self.root), **self.env}
        self.started = time.monotonic()
        for i in range(self.n):
            port = free_port()
            cmd = [sys.executable, "-m", "leadflow", "worker", "--broker", self.bootstrap, "--web-port", str(port)]
            if self.policy is not None:
                cmd += ["--policy", str(self.policy)]
            with open(self.work / f"{self.name}-worker{i}.log", "wb") as log:
                self.procs.append(subprocess.Popen(cmd, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                   stdin=subprocess.DEVNULL, start_new_session=True,
                                                   preexec_fn=die_with_parent))
            self.ports.append(port)
            if PROFILE is not None:
                out = PROFILE[0] / f"{self.name}-worker{i}.txt"
                self.spies.append(subprocess.Popen(
                    [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(self.procs[-1].pid),
                     "--duration", str(int(PROFILE[1])), "--rate", "100", "--threads", "--format", "raw", "-o", str(out)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent))
        return self

    def __exit__(self, *exc: Any) -> None:
        for spy in self.spies:  # py-spy writes its profile when its duration is over
            try:
                spy.wait(timeout=max(1.0, self.started + PROFILE[1] + 5 - time.monotonic()) if PROFILE else 1.0)
            except subprocess.TimeoutExpired:
                spy.kill()
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()

    def wait_serving(self, timeout: float) -> float | None:
        """Seconds from start until every worker serves, and all partitions are served once."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            parts = [serving(p) for p in self.ports]
            if all(p for p in parts) and sorted(x for p in parts for x in p) == list(range(PARTITIONS)):  # type: ignore[union-attr]
                return time.monotonic() - self.started
            if any(proc.poll() is not None for proc in self.procs):
                return None
            time.sleep(0.05)
        return None

    def done(self) -> int:
        return sum(max(0, processed(p)) for p in self.ports)

    def log_tail(self) -> str:
        tails = []
        for i in range(self.n):
            text = (self.work / f"{self.name}-worker{i}.log").read_text(errors="replace").strip()
            tails.append(f"worker{i}: …{text[-400:]}")
        return " | ".join(tails).replace("\n", " / ")


# -- loads --------------------------------------------------------------------------------------------

def mix_lines(count: int, seed: int = 7) -> list[bytes]:
    """``count`` lines of the realistic mix whose events happened in the last 30 days (none later)."""
    now = now_ms()
    cut = format_time(now)
    out: list[bytes] = []
    # ~7 lines a lead; leads start over the 30 days before now - 10 days, journeys last up to ~40 days
    for line in json_lines(max(10, count // 5), seed=seed, start=now - 40 * DAY, span=30 * DAY):
        try:
            occurred = orjson.loads(line).get("occurred_at")
        except orjson.JSONDecodeError:
            occurred = None
        if isinstance(occurred, str) and occurred > cut:
            continue  # the worker dead-letters events from the future; keep the mix live
        out.append(line)
        if len(out) >= count:
            break
    return out


async def produce_lines(bootstrap: str, topics: Topics, lines: Iterable[bytes]) -> int:
    """The lines on their input topics keyed by lead id (``leadflow produce``'s routing), acks=all."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        futures = []
        for line in lines:
            topic, key = route(line, topics)
            futures.append(await producer.send(topic, key=key, value=line))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return len(futures)


async def produce_keyed(bootstrap: str, topic: str, records: Iterable[tuple[bytes, bytes, int | None]]) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all",
                                max_batch_size=256 * 1024)
    await producer.start()
    n = 0
    try:
        futures = []
        for key, value, partition in records:
            futures.append(await producer.send(topic, key=key, value=value, partition=partition))
            n += 1
            if len(futures) >= 20_000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return n


# -- part: throughput --------------------------------------------------------------------------------

def measure_workers(n: int, bootstrap: str, prefix: str, lines: list[bytes], work: Path, timeout: float,
                    label: str, root: Path = ROOT) -> tuple[float, str]:
    """(events/s of ``n`` workers over ``lines``, error) — started on empty topics, loaded once serving."""
    topics, env = deployment(prefix)
    ensure_topics(bootstrap, topics, PARTITIONS)
    total = len(lines)
    with Workers(n, bootstrap, env, work, prefix, root=root) as workers:
        with console.status(f"{label}: starting {n} worker(s)"):
            ready = workers.wait_serving(timeout)
        if ready is None:
            return 0.0, f"not serving after {timeout:.0f} s: {workers.log_tail()}"
        producing = _produce_async(bootstrap, topics, lines)
        deadline = time.monotonic() + timeout
        first = last = None
        done = 0
        trace: list[tuple[float, list[int]]] = []
        cpu0: tuple[float, float] | None = None
        with console.status(f"{label}: 0/{total:,}") as status:
            while time.monotonic() < deadline:
                each = [max(0, processed(p)) for p in workers.ports]
                done = sum(each)
                now = time.monotonic()
                if done > 0 and first is None:
                    first = now
                    cpu0 = (sum(cpu_seconds(p.pid) for p in workers.procs), cpu_seconds(BROKER_PID))
                if first is not None:
                    trace.append((now - first, each))
                if done >= total:
                    last = now
                    cpu1 = (sum(cpu_seconds(p.pid) for p in workers.procs), cpu_seconds(BROKER_PID))
                    break
                status.update(f"{label}: {done:,}/{total:,}")
                time.sleep(0.1)  # each poll renders /metrics in the workers: keep it rare
        producing.result()
        if first is None or last is None or last <= first:
            return 0.0, f"timed out at {done}/{total}: {workers.log_tail()}"
        if TRACE:
            for at, each in trace[::max(1, len(trace) // 20)]:
                print(f"    {label} +{at:5.2f} s  {each}", flush=True)
        assert cpu0 is not None
        span = last - first
        cpu = (f"CPU while measured: workers {(cpu1[0] - cpu0[0]) / span:.2f} cores, "
               f"broker {(cpu1[1] - cpu0[1]) / span:.2f} cores")
        return total / span, cpu


def _produce_async(bootstrap: str, topics: Topics, lines: list[bytes]) -> Any:
    """Produce in a thread of its own, so that the polling starts at once; returns its future."""
    import concurrent.futures

    pool = concurrent.futures.ThreadPoolExecutor(1)
    future = pool.submit(lambda: asyncio.run(produce_lines(bootstrap, topics, lines)))
    pool.shutdown(wait=False)
    return future


def part_mix(bootstrap: str, run_id: str, work: Path, lines: list[bytes], timeout: float,
             email: bool = False) -> dict[str, tuple[float, str, str]]:
    """{label: (events/s, error, load)} for faust consume-only (+ pass-through) and 1 / 2 workers."""
    kind = "email" if email else "mix"
    figures: dict[str, tuple[float, str, str]] = {}
    base_prefix = f"b{kind}{run_id}"
    topics, _ = deployment(base_prefix)
    ensure_topics(bootstrap, topics, PARTITIONS)
    with console.status(f"{kind}: pre-filling {len(lines):,} lines for the faust baseline"):
        asyncio.run(produce_lines(bootstrap, topics, lines))
    source = ",".join(topics.inputs) if not email else topics.email_engagement
    names = ("faust-consume", "faust-pass") if email else ("faust-consume",)
    for name in names:
        base = next(v for v in VARIANTS if v.name == name)
        variant = Variant(base.name, base.kind, base.mode, base.settings,
                          base.env if email else {**base.env, "BENCH_VALUE_SERIALIZER": "raw"}, base.note)
        with console.status(f"{kind}: {name} over the same {len(lines):,} lines"):
            result = run_variant(variant, bootstrap, source, len(lines), work, f"{run_id}{kind}", timeout)
        figures[name] = (result.rate, result.error, load())
        print(f"  {kind:<5} {name:<22} {result.rate:>9,.0f} events/s  {load()} {result.error}", flush=True)
    runs: list[tuple[int, str, Path]] = [(1, "worker x1", ROOT), (2, "worker x2", ROOT)]
    if BASE is not None:  # A/B: the base checkout's worker first, then this one's, alternating
        runs = [(1, "base worker x1", BASE), (1, "worker x1", ROOT), (1, "base worker x1 (again)", BASE),
                (1, "worker x1 (again)", ROOT), (2, "worker x2", ROOT)]
    for i, (n, label, root) in enumerate(runs):
        rate, error = measure_workers(n, bootstrap, f"w{kind}{i}{run_id}", lines, work, timeout, f"{kind}: {label}",
                                      root)
        figures[label] = (rate, error, load())
        print(f"  {kind:<5} {label:<22} {rate:>9,.0f} events/s  {load()} {error[:600]}", flush=True)
    return figures


# -- part: recovery and timers after a takeover ------------------------------------------------------

def _encoder() -> Any:
    output = JsonOutput()
    return lambda record: rows.keep(record, output.encode(record))


def template_rows(leads: int, now: int) -> list[tuple[str, bytes]]:
    """The rows of ``leads`` leads after their journeys (the last 30 days up to ``now``), stepped
    through the shared step in event time and caught up to ``now``: no deadline already passed."""
    lookup = codec.bundled_schemas()
    app = Application(Engine(Policy()), encode=_encoder(), consumes_rows=True)
    state: dict[str, Any] = {}
    for line in json_lines(leads, seed=11, start=now - 40 * DAY, span=30 * DAY, first_lead=1):
        try:
            event = codec.decode(line, lookup)
        except Exception:  # noqa: BLE001 - malformed on purpose
            continue
        if event.occurred_at > now:
            continue
        row = state.get(event.lead_id, rows.EMPTY)
        state[event.lead_id] = app.on_event(row, event, event.occurred_at).row
    out = []
    for lead_id, row in state.items():
        step = app.on_timer(row, "catch-up", now)
        out.append((lead_id, rows.encode(step.row if step.changed else row)))
    return out


def timer_rows(n: int, first_due: int, window_ms: int) -> list[tuple[str, bytes, int]]:
    """``n`` leads ``T-...`` made MQL by a demo request TIMER_SLA_S before their assignment SLA falls
    due; the deadlines are spread evenly over ``[first_due, first_due + window_ms)``."""
    lookup = codec.bundled_schemas()
    app = Application(Engine(parse_policy(TIMER_POLICY)), encode=_encoder(), consumes_rows=True)
    out = []
    for i in range(n):
        due = first_due + i * window_ms // n
        occurred = due - TIMER_SLA_S * 1000
        lead_id = f"T-{i:07d}"
        line = orjson.dumps({"event_id": f"{lead_id}-1", "event_type": "form_fill", "lead_id": lead_id,
                             "occurred_at": format_time(occurred), "form_type": "demo_request",
                             "form_id": "f1", "source": "marketo"})
        row = app.on_event(rows.EMPTY, codec.decode(line, lookup), occurred).row
        assert row.wake_at == due, (row.wake_at, due)
        out.append((lead_id, rows.encode(row), due))
    return out


def cloned(templates: list[tuple[str, bytes]], leads: int) -> Iterable[tuple[bytes, bytes, int]]:
    """``leads`` rows: the templates again and again under new lead ids (``R-0000001`` ...)."""
    for i, (lead_id, raw) in zip(range(leads), itertools.cycle(templates)):
        new = f"R-{i:07d}"
        yield new.encode(), raw.replace(lead_id.encode(), new.encode()), partition_for(new, PARTITIONS)


async def read_to_end(bootstrap: str, topic: str, expected: int, timeout: float) -> tuple[int, float, int]:
    """(records, seconds, bytes): a plain consumer reading ``topic`` from its beginning until
    ``expected`` records are in (the baseline of recovery)."""
    started = time.monotonic()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=50)
    await consumer.start()
    n = size = 0
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while n < expected and time.monotonic() - started < timeout:
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for records in batches.values():
                n += len(records)
                size += sum(len(r.value or b"") for r in records)
    finally:
        await consumer.stop()
    return n, time.monotonic() - started, size


async def breach_alerts(bootstrap: str, topic: str, expected: int, deadline: float) -> dict[str, tuple[int, int]]:
    """lead id -> (due_at, detected_at) of the assignment breaches of the ``T-`` leads."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=100)
    await consumer.start()
    seen: dict[str, tuple[int, int]] = {}
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while len(seen) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            for records in batches.values():
                for r in records:
                    doc = orjson.loads(r.value)
                    if doc.get("lead_id", "").startswith("T-") and doc.get("sla") == "assignment":
                        seen.setdefault(doc["lead_id"], (parse_time(doc["due_at"]), parse_time(doc["detected_at"])))
    finally:
        await consumer.stop()
    return seen


#: the worker's log lines about its recovery: the bulk read of the changelog, the timers' rebuild
RECOVERY_LOG = r"(?:timers rebuilt for partitions|changelog bulk read:) .*"


def pct(values: list[int], q: float) -> int:
    if not values:
        return 0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def part_recovery(bootstrap: str, run_id: str, work: Path, leads: int, timer_leads: int, window_s: float,
                  timeout: float) -> dict[str, Any]:
    prefix = f"rec{run_id}"
    topics, env = deployment(prefix)
    env["LEADFLOW_LOGLEVEL"] = "info"  # faust's recovery progress, and the timers' rebuild
    ensure_topics(bootstrap, topics, PARTITIONS)
    changelog = f"{topics.app_id}-leads-changelog"
    assert changelog in set(topics.changelogs), topics.changelogs
    out: dict[str, Any] = {}
    with console.status(f"recovery: building rows for {leads:,} leads"):
        t0 = time.monotonic()
        templates = template_rows(min(leads, 3000), now_ms())
        built = time.monotonic() - t0
    lead_rows = list(cloned(templates, leads))  # kept for the A/B rounds (``--base``)
    with console.status(f"recovery: writing {leads:,} rows to {changelog}"):
        t0 = time.monotonic()
        written = asyncio.run(produce_keyed(bootstrap, changelog, lead_rows))
        wrote = time.monotonic() - t0
    # the timer leads' deadlines: from ~6 s from now (a worker takes about that long to start and
    # recover), over window_s seconds; so some fall due while it recovers, most once it serves
    first_due = now_ms() + 6_000
    timed = timer_rows(timer_leads, first_due, int(window_s * 1000))
    written += asyncio.run(produce_keyed(bootstrap, changelog, (
        (lead_id.encode(), raw, partition_for(lead_id, PARTITIONS)) for lead_id, raw, _ in timed)))
    sizes = [len(raw) for _, raw in templates]
    print(f"  recovery: {written:,} rows ({sum(sizes) / len(sizes):,.0f} B on average, from {len(templates):,} "
          f"template journeys) built in {built:.1f} s, written in {wrote:.1f} s", flush=True)
    with console.status("recovery: baseline, a plain consumer reading the changelog to its end"):
        n, seconds, size = asyncio.run(read_to_end(bootstrap, changelog, written, timeout))
    out["baseline"] = (seconds, n, size, load())
    print(f"  recovery: plain aiokafka read of the changelog: {n:,} records, {size / 1e6:,.1f} MB in "
          f"{seconds:.2f} s  {load()}", flush=True)
    policy = work / "timer-policy.toml"
    policy.write_text(TIMER_POLICY)
    empty_topics, empty_env = deployment(f"{prefix}e")
    ensure_topics(bootstrap, empty_topics, PARTITIONS)
    with Workers(1, bootstrap, empty_env, work, f"{prefix}e", policy=policy) as workers:
        with console.status("recovery: baseline, a fresh worker over an empty changelog"):
            out["empty"] = (workers.wait_serving(timeout), load())
    print(f"  recovery: worker start -> serving, empty changelog: {out['empty'][0]} s  {load()}", flush=True)
    with Workers(1, bootstrap, env, work, prefix, policy=policy) as workers:
        with console.status(f"recovery: a fresh worker over {written:,} rows"):
            ready = workers.wait_serving(timeout)
        served_at = now_ms()
        out["ready"] = (ready, load())
        if ready is None:
            print(f"  recovery: worker not serving after {timeout:.0f} s: {workers.log_tail()}", flush=True)
            return out
        print(f"  recovery: worker start -> /health ok with all partitions: {ready:.2f} s  {load()}", flush=True)
        last_due = first_due + int(window_s * 1000)
        with console.status(f"timers: waiting for {timer_leads:,} breaches (due until "
                            f"+{(last_due - served_at) / 1000:.0f} s)"):
            alerts = asyncio.run(breach_alerts(bootstrap, topics.alerts, timer_leads,
                                               time.monotonic() + (last_due - now_ms()) / 1000 + 20))
        out["timers_load"] = load()
        rebuilt = re.findall(RECOVERY_LOG, (work / f"{prefix}-worker0.log").read_text())
        out["rebuilt"] = rebuilt
    if BASE is not None:  # A/B: the base checkout's worker and this one's, alternating, same rows
        out["ab"] = []
        for i, (label, root) in enumerate([("base", BASE), ("this", ROOT), ("base", BASE), ("this", ROOT)]):
            seconds, lines = recover_once(bootstrap, f"{prefix}ab{i}", lead_rows, work, root, policy, timeout)
            out["ab"].append((label, seconds, load()))
            print(f"  recovery A/B: {label} worker start -> serving: {seconds} s  {load()}", flush=True)
            for line in lines:
                print(f"    worker log: {line}", flush=True)
    after = [detected - due for due, detected in alerts.values() if due >= served_at]
    soon = [detected - due for due, detected in alerts.values() if served_at <= due < served_at + 5000]
    before = [detected - due for due, detected in alerts.values() if due < served_at]
    out["timers"] = dict(expected=timer_leads, got=len(alerts), after=after, soon=soon, before=before,
                         served_at=served_at, first_due=first_due)
    return out


def recover_once(bootstrap: str, prefix: str, lead_rows: list[tuple[bytes, bytes, int]], work: Path, root: Path,
                 policy: Path, timeout: float) -> tuple[float | None, list[str]]:
    """Seconds from start to serving of one fresh worker of ``root`` over a new changelog holding
    ``lead_rows``, and what its log says of its recovery."""
    topics, env = deployment(prefix)
    env["LEADFLOW_LOGLEVEL"] = "info"
    ensure_topics(bootstrap, topics, PARTITIONS)
    asyncio.run(produce_keyed(bootstrap, f"{topics.app_id}-leads-changelog", lead_rows))
    with Workers(1, bootstrap, env, work, prefix, policy=policy, root=root) as workers:
        with console.status(f"recovery A/B: a fresh worker of {root} over {len(lead_rows):,} rows"):
            seconds = workers.wait_serving(timeout)
    text = (work / f"{prefix}-worker0.log").read_text(errors="replace")
    return seconds, [line.strip() for line in re.findall(RECOVERY_LOG, text)]


# -- part: timer capacity -----------------------------------------------------------------------------

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


# -- report -------------------------------------------------------------------------------------------

def report_rates(kind: str, figures: dict[str, tuple[float, str, str]], count: int) -> None:
    consume = figures.get("faust-consume", (0.0, "", ""))[0]
    one = figures.get("worker x1", (0.0, "", ""))[0]
    two = figures.get("worker x2", (0.0, "", ""))[0]
    what = "realistic mix (traffic generator)" if kind == "mix" else "200-byte email opens"
    print(f"\n{kind}: {count:,} lines, {what}, {PARTITIONS} partitions, embedded Tansu broker")
    for label, (rate, error, at) in figures.items():
        print(f"  {label:<22}{rate:>10,.0f} events/s  ({at}){'  ' + error[:300] if error else ''}")
    if consume:
        ok = "met" if one >= 0.4 * consume else "missed"
        print(f"  one worker  x{one / consume:.2f} of faust consume-only (target >= 0.4: {ok})")
    for label in ("base worker x1", "base worker x1 (again)", "worker x1 (again)"):
        if label in figures and consume:
            print(f"  {label:<22}x{figures[label][0] / consume:.2f} of faust consume-only")
    if "faust-pass" in figures and figures["faust-pass"][0]:
        print(f"  one worker  x{one / figures['faust-pass'][0]:.2f} of faust pass-through")
    if one:
        ok = "met" if two >= 1.8 * one else "missed"
        print(f"  two workers x{two / one:.2f} of one (target >= 1.8: {ok})")
    if consume:
        print(bars({label: rate for label, (rate, _, _) in figures.items()}, consume, 0.4))



def report_recovery(out: dict[str, Any], leads: int) -> None:
    print(f"\nrecovery: {leads:,} leads' rows (+ timer leads) in the changelog, {PARTITIONS} partitions")
    if "baseline" in out:
        seconds, n, size, at = out["baseline"]
        print(f"  plain aiokafka consumer, changelog to its end   {seconds:6.2f} s  ({n:,} records, "
              f"{size / 1e6:,.1f} MB; {at})")
    empty, empty_at = out.get("empty", (None, ""))
    if empty is not None:
        print(f"  a fresh worker over an empty changelog           {empty:6.2f} s  ({empty_at})")
    ready, at = out.get("ready", (None, ""))
    if ready is None:
        print("  worker: not serving (see above)")
        return
    ok = "met" if ready <= 10 else "missed"
    base = out["baseline"][0] if "baseline" in out else float("nan")
    print(f"  worker start -> serving all partitions          {ready:6.2f} s  ({at}); x{ready / base:.1f} of "
          f"the plain read; target <= 10 s: {ok}")
    for line in out.get("rebuilt", []):
        print(f"    worker log: {line.strip()}")
    for label, seconds, at in out.get("ab", []):
        figure = f"{seconds:6.2f} s" if seconds is not None else "not serving"
        print(f"  A/B, {label:<4} checkout: start -> serving, {leads:,} leads   {figure}  ({at})")
    t = out.get("timers")
    if t:
        print(f"\ntimers after the takeover: {t['got']:,}/{t['expected']:,} breach alerts seen; deadlines from "
              f"{(t['first_due'] - t['served_at']) / 1000:+.1f} s of serving ({out.get('timers_load', '')})")
        for name, values in (("due in the first 5 s after serving", t["soon"]),
                             ("due after serving (all)", t["after"]),
                             ("due while it was recovering", t["before"])):
            if values:
                print(f"  {name:<38} n={len(values):>6,}  lateness p50 {pct(values, 0.5):>6,} ms  p99 "
                      f"{pct(values, 0.99):>6,} ms  max {max(values):>6,} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller loads: 8 000 lines, 20 000 leads")
    parser.add_argument("--parts", default="mix,recovery,capacity", help="mix,email,recovery,capacity")
    parser.add_argument("--count", type=int, help="lines of the mix / email opens (default 20 000)")
    parser.add_argument("--leads", type=int, help="leads' rows in the changelog (default 100 000)")
    parser.add_argument("--timer-leads", type=int, help="leads falling due around the takeover (default 2 000)")
    parser.add_argument("--timer-window", type=float,
                        help="seconds the deadlines spread over, from ~6 s after they are written (default 40; quick 20)")
    parser.add_argument("--timers", type=int, help="pending timers of the capacity part (default 1 000 000)")
    parser.add_argument("--run-timeout", type=float, default=90.0)
    parser.add_argument("--trace", action="store_true", help="print each worker's progress over time")
    parser.add_argument("--profile", metavar="DIR", help="py-spy every worker into DIR (collapsed stacks)")
    parser.add_argument("--profile-seconds", type=float, default=20.0)
    parser.add_argument("--base", metavar="DIR", help="A/B: also run one worker from this checkout (e.g. a "
                        "worktree of main), alternating with this one's")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (worker logs)")
    args = parser.parse_args(argv)
    global TRACE, PROFILE, BASE, BROKER_PID
    TRACE = args.trace
    BASE = Path(args.base).resolve() if args.base else None
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
        PROFILE = (Path(args.profile), args.profile_seconds)
    count = args.count or (8_000 if args.quick else 20_000)
    leads = args.leads or (20_000 if args.quick else 100_000)
    timer_leads = args.timer_leads or (500 if args.quick else 2_000)
    n_timers = args.timers or (100_000 if args.quick else 1_000_000)
    timer_window = args.timer_window or (20.0 if args.quick else 40.0)
    parts = set(args.parts.split(","))
    unknown = parts - {"mix", "email", "recovery", "capacity"}
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}")
    print(f"worker bench: parts {sorted(parts)}; {load()} at start", flush=True)
    work = Path(tempfile.mkdtemp(prefix="leadflow-wbench-"))
    results: dict[str, Any] = {}
    try:
        with EmbeddedBroker(log_dir=work) as broker:
            BROKER_PID = broker._proc.pid if broker._proc is not None else None
            run_id = uuid.uuid4().hex[:6]
            if "mix" in parts:
                lines = mix_lines(count)
                results["mix"] = part_mix(broker.bootstrap, run_id, work, lines, args.run_timeout)
            if "email" in parts:
                lines = [payload(i) for i in range(count)]
                results["email"] = part_mix(broker.bootstrap, run_id, work, lines, args.run_timeout, email=True)
            if "recovery" in parts:
                results["recovery"] = part_recovery(broker.bootstrap, run_id, work, leads, timer_leads,
                                                    timer_window, args.run_timeout)
    finally:
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    for kind in ("mix", "email"):
        if kind in results:
            report_rates(kind, results[kind], count)
    if "recovery" in results:
        report_recovery(results["recovery"], leads)
    if "capacity" in parts:
        size_mb, set_us, pop_us, worst = timer_capacity(n_timers)
        print(f"\ntimers: {n_timers:,} pending in {size_mb:,.0f} MB ({size_mb * 1e6 / n_timers:,.0f} B each); "
              f"set {set_us:.2f} us, pop {pop_us:.2f} us; worst lateness at a 100 ms tick {worst:.0f} ms "
              f"(target < 1000)  {load()}")
    print(f"\n{load()} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
