"""``leadflow demo``: a broker (embedded unless configured), the topics, a live worker, realistic lead
traffic, and the funnel and alerts on screen as they happen; then a summary.

Pieces, all real: the embedded Tansu broker (``leadflow.broker``), ``leadflow worker`` as a child
process (its log in the run's temp dir), a generator thread producing ``leadflow.traffic`` journeys
with kafka-python (acks=all, keyed by lead id, topic by event type as ``leadflow produce`` routes
them), and a reader thread that ``assign()``-s the three output topics and fills the
:class:`~leadflow.demo_view.Board` the main thread draws.

Time runs ``SPEEDUP`` times faster than in a real pipeline: the journeys' gaps are compressed by
``1/SPEEDUP`` and the built-in demo policy's SLAs are a few seconds, so a lead's journey takes a
minute or two and SLA breaches fire and resolve while one watches. Events carry the wall-clock time
they are sent at, as live sources do.

Every run uses its own app id and topic prefix (``demo-<hex>``), so reruns against a real broker do
not mix. Nothing outlives the command: the worker is stopped (SIGINT, then SIGKILL), the embedded
broker too, also at interpreter exit and, for the worker, when this process dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import atexit
import heapq
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lifecycle.errors import ConfigError, LeadflowError
from schemas.policy_file import load_policy
from schemas.wire import format_time
from leadflow.broker import EmbeddedBroker, free_port, resolve_broker, signal_group
from leadflow.demo_view import Board, Header, progress_line, render, summary
from leadflow.produce import route, topic_for
from streams.topics import Topics, ensure_topics

#: How much faster than a real pipeline the demo runs: 1 s here is ~83 min there.
SPEEDUP = 5000.0
#: Each lead's events are journeys of ``leadflow.traffic`` with every gap divided by ``SPEEDUP``:
#: a median journey of ~5 days takes ~90 s (measured over 3 000 journeys).
TIME_SCALE = 1 / SPEEDUP
#: With this seed 3 of the 18 reps are slow (emea-rep-1, apac-rep-4, na-rep-6): their names keep
#: coming back in the alert feed, as a slow rep's do in a real pipeline.
SEED = 3
#: When a lead's next event goes to another input topic than its previous one, it waits this long:
#: Kafka orders a lead's events within one partition only, and the worker may see two topics'
#: messages in either order (an assignment before the MQL that it assigns would be ignored).
CROSS_TOPIC_GAP = 0.3
#: SPEC 9 in the traffic: a quarter of first touches are logged in a CRM that syncs them 15 min to
#: 4 h (pipeline time) late, so some breaches fire and are then retracted; a few leads go on hold.
LAGGING_TOUCH_SHARE = 0.25
TOUCH_LAG = (15 * 60_000, 4 * 3_600_000)
HOLD_SHARE = 0.06
WORKER_READY_TIMEOUT = 60.0
WORKER_STOP_TIMEOUT = 10.0
#: After the traffic stops: wait until no stage change or DLQ record arrived for ``DRAIN_QUIET``
#: seconds, at most ``DRAIN_MAX`` seconds.
DRAIN_QUIET = 1.0
DRAIN_MAX = 6.0
PLAIN_EVERY = 5.0

#: The built-in demo policy: SPEC section 7 with every SLA in seconds of the sped-up clock.
DEMO_POLICY = """\
# leadflow demo policy: time runs 5000x faster than a real pipeline (1 s here ~ 83 min there),
# so the SLAs are seconds; wall-clock time (business = false), any day of the week.

[sla.assignment]          # an MQL must get an owner within ~2 h
within = "1.5s"
business = false

[sla.first_touch]         # the owner must reach out within ~5.5 h; warn at 75 %, escalate ~11 h later
within = "4s"
business = false
warn_at = 0.75
escalate_after = "8s"

[sla.qualification]       # an accepted lead must be qualified or rejected within ~2.3 days
within = "40s"
business = false

[sla.opportunity]         # a qualified lead must get a deal within ~3.5 days
within = "60s"
business = false

[sla.nurture]             # a recycled lead must be nurtured again within ~2.6 days
within = "45s"
business = false
"""


class DemoError(LeadflowError):
    """The demo could not run: the worker died or never became ready, the broker went away."""


# -- traffic ---------------------------------------------------------------------------------------

def _event(lead_id: str, n: int, event_type: str, **fields: Any) -> dict[str, Any]:
    from leadflow.traffic import SOURCES

    return {"event_id": f"{lead_id}-{n}", "event_type": event_type, "lead_id": lead_id, **fields,
            "source": SOURCES[event_type]}


def opening() -> list[tuple[float, float, dict[str, Any] | bytes]]:
    """Scripted first seconds, so that a newcomer sees each kind of alert within ~15 s, whatever
    the random traffic does: a slow rep (warning, overdue, escalation, then the touch resolves
    them), an MQL nobody assigns in time (handoff_broken, resolved by the assignment), a malformed
    message (DLQ), a touch the CRM syncs late (its breach fired, then is retracted: the call came
    before the deadline) and a lead on hold (its deadline passes while held; no breach).
    ``(seconds after start it is sent, seconds after start it happened, event or raw bytes)``."""
    from leadflow.traffic import BAD_MESSAGES

    slow, unassigned, synced_late, held = "L-000001", "L-000002", "L-000003", "L-000004"
    script: list[tuple[float, float, dict[str, Any] | bytes]] = [
        (0.5, 0.5, _event(slow, 1, "form_fill", form_type="demo_request", form_id="f1")),
        (0.9, 0.9, _event(slow, 2, "lead_assigned", owner_id="emea-rep-1", team="emea")),
        (1.0, 1.0, _event(unassigned, 1, "form_fill", form_type="pricing", form_id="f1")),
        (1.5, 1.5, _event(synced_late, 1, "form_fill", form_type="contact_us", form_id="f1")),
        (1.9, 1.9, _event(synced_late, 2, "lead_assigned", owner_id="na-rep-2", team="na")),
        (2.0, 2.0, BAD_MESSAGES[2]),
        (2.5, 2.5, _event(held, 1, "form_fill", form_type="pricing", form_id="f1")),
        (2.9, 2.9, _event(held, 2, "lead_assigned", owner_id="apac-rep-2", team="apac")),
        (4.0, 4.0, _event(unassigned, 2, "lead_assigned", owner_id="na-rep-3", team="na")),
        (4.0, 4.0, _event(held, 3, "sales_disposition", decision="hold", reason="customer on holiday",
                          rep_id="apac-rep-2")),
        (5.5, 5.5, _event(unassigned, 3, "sales_touch", rep_id="na-rep-3", channel="call", outcome="connected")),
        (6.5, 6.5, _event(held, 4, "sales_disposition", decision="resume", rep_id="apac-rep-2")),
        # called at 5.4 s, before the 5.9 s deadline; the CRM syncs the call at 7.5 s
        (7.5, 5.4, _event(synced_late, 3, "sales_touch", rep_id="na-rep-2", channel="call", outcome="connected")),
        (8.0, 8.0, _event(held, 5, "sales_touch", rep_id="apac-rep-2", channel="call", outcome="connected")),
        (14.0, 14.0, _event(slow, 3, "sales_touch", rep_id="emea-rep-1", channel="email", outcome="connected")),
        (22.0, 22.0, _event(slow, 4, "sales_disposition", decision="qualify", rep_id="emea-rep-1")),
        (34.0, 34.0, _event(slow, 5, "deal_stage_change", deal_id=f"D-{slow}", stage="created", amount=40000)),
        (50.0, 50.0, _event(slow, 6, "deal_stage_change", deal_id=f"D-{slow}", stage="closed_won")),
    ]
    return script


class Traffic(threading.Thread):
    """Produces realistic lead traffic at ``rate`` events/s until stopped.

    Each second it looks at the events already scheduled for the next second (later events of the
    leads under way) and starts enough new leads to make up ``rate``: a steady rate from the first
    second, without a ramp while the first journeys unfold. New leads start at most ``0.8 * rate``
    a second (five times the steady arrival rate; a lead averages ~6 events).
    """

    def __init__(self, bootstrap: str, topics: Topics, rate: float, board: Board, *,
                 seed: int = SEED, time_scale: float = TIME_SCALE, scripted: bool = True) -> None:
        super().__init__(name="leadflow-demo-traffic", daemon=True)
        from leadflow.traffic import TrafficShape

        self.bootstrap = bootstrap
        self.topics = topics
        self.rate = rate
        self.board = board
        self.seed = seed
        self.shape = TrafficShape(time_scale=time_scale, slow_rep_share=0.2,
                                  duplicate_share=0.02, bad_share=0.004,
                                  lagging_touch_share=LAGGING_TOUCH_SHARE, touch_lag=TOUCH_LAG,
                                  hold_share=HOLD_SHARE)
        self.scripted = scripted
        self.rng = random.Random(seed)
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self._heap: list[tuple[float, int, str, Any]] = []   # (due, seq, kind, event dict | bytes)
        self._seq = 0
        self._last: dict[str, tuple[str, float]] = {}        # lead -> (topic, sent at)
        self._next_lead = 5 if scripted else 1

    def stop(self) -> None:
        self.stopping.set()

    def _push(self, due: float, kind: str, item: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, kind, item))

    def _top_up(self, second: float) -> None:
        """Start new leads so that ``[second, second + 1)`` holds ``rate`` events."""
        from leadflow.traffic import journeys

        end = second + 1
        scheduled = sum(1 for due, *_ in self._heap if due < end)
        shortfall = min(self.rate - scheduled, max(1.0, 0.8 * self.rate))
        count = int(shortfall + self.rng.random()) if shortfall > 0 else 0
        for _ in range(count):
            start = int((second + self.rng.random()) * 1000)
            for at, occurred, body in journeys(1, seed=self.seed, start=start, span=0, shape=self.shape,
                                               first_lead=self._next_lead):
                self._push(at / 1000, "event", (body, (at - occurred) / 1000))
            self._next_lead += 1

    def run(self) -> None:
        from kafka import KafkaProducer

        try:
            producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5,
                                     client_id="leadflow-demo-traffic")
        except Exception as exc:  # noqa: BLE001 - kafka-python raises several unrelated types
            self.error = exc
            return
        try:
            self._loop(producer)
            producer.flush(timeout=10)
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc
        finally:
            producer.close(timeout=5)

    def _loop(self, producer: Any) -> None:
        t0 = time.time()
        self.board.start()
        if self.scripted:
            for sent, occurred, item in opening():
                if isinstance(item, bytes):
                    self._push(t0 + sent, "bad", item)
                else:
                    self._push(t0 + sent, "event", (item, sent - occurred))
        next_second = t0
        while not self.stopping.is_set():
            now = time.time()
            if now >= next_second:
                self._top_up(next_second)
                next_second += 1
            while self._heap and self._heap[0][0] <= now and not self.stopping.is_set():
                due, _, kind, item = heapq.heappop(self._heap)
                self._send(producer, kind, item, now)
            wake = min(next_second, self._heap[0][0] if self._heap else next_second)
            self.stopping.wait(max(0.0, min(0.05, wake - time.time())))

    def _send(self, producer: Any, kind: str, item: Any, now: float) -> None:
        if kind == "event":
            body, lag = item  # lag: how long before being sent it happened (a late CRM sync)
            topic = topic_for(body["event_type"], self.topics)
            lead_id = body["lead_id"]
            last = self._last.get(lead_id)
            if last is not None and last[0] != topic and now < last[1] + CROSS_TOPIC_GAP:
                self._push(last[1] + CROSS_TOPIC_GAP, kind, item)
                return
            body["occurred_at"] = format_time(int((now - lag) * 1000))
            value = json.dumps(body, separators=(",", ":")).encode()
            self._produce(producer, topic, lead_id.encode(), value, "event")
            self._last[lead_id] = (topic, now)
            if self.rng.random() < self.shape.duplicate_share:   # a source that delivers twice
                self._push(now + self.rng.uniform(0.05, 2.0), "duplicate", (topic, lead_id.encode(), value))
            if self.rng.random() < self.shape.bad_share:
                from leadflow.traffic import BAD_MESSAGES

                self._push(now, "bad", self.rng.choice(BAD_MESSAGES))
        elif kind == "duplicate":
            topic, key, value = item
            self._produce(producer, topic, key, value, "duplicate")
        else:
            topic, key = route(item, self.topics)
            self._produce(producer, topic, key, item, "bad")

    def _produce(self, producer: Any, topic: str, key: bytes | None, value: bytes, kind: str) -> None:
        producer.send(topic, key=key, value=value).add_errback(self.board.on_send_error)
        self.board.on_sent(kind)


# -- output ----------------------------------------------------------------------------------------

class OutputReader(threading.Thread):
    """Reads ``lead.lifecycle``, ``lead.alerts`` and ``lead.dlq`` of this run from the beginning
    (``assign()``, no consumer group) into the board."""

    def __init__(self, bootstrap: str, topics: Topics, board: Board) -> None:
        super().__init__(name="leadflow-demo-reader", daemon=True)
        self.bootstrap = bootstrap
        self.topics = topics
        self.board = board
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.last_record = time.monotonic()   # of a stage change or a DLQ record: drain progress
        self.ready = threading.Event()

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        from schemas.wire import alert_from_wire, lifecycle_from_wire

        try:
            consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                     enable_auto_commit=False, auto_offset_reset="earliest",
                                     fetch_max_wait_ms=100, client_id="leadflow-demo-view")
        except Exception as exc:  # noqa: BLE001
            self.error = exc
            self.ready.set()
            return
        try:
            tps = [TopicPartition(topic, p) for topic in self.topics.outputs
                   for p in range(self.topics.partitions)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            self.ready.set()
            while not self.stopping.is_set():
                for tp, records in consumer.poll(timeout_ms=200).items():
                    for record in records:
                        if record.value is None:
                            continue
                        value = json.loads(record.value)
                        if tp.topic == self.topics.lifecycle:
                            self.board.add_lifecycle(lifecycle_from_wire(value))
                            self.last_record = time.monotonic()
                        elif tp.topic == self.topics.alerts:
                            self.board.add_alert(alert_from_wire(value))
                        else:
                            self.board.add_dlq(value)
                            self.last_record = time.monotonic()
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc
        finally:
            self.ready.set()
            consumer.close()


class HealthPoller(threading.Thread):
    """``GET /health`` of the worker once a second, for the board."""

    def __init__(self, url: str, board: Board) -> None:
        super().__init__(name="leadflow-demo-health", daemon=True)
        self.url = url
        self.board = board
        self.stopping = threading.Event()

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        while not self.stopping.wait(1.0):
            self.board.set_health(get_health(self.url))


def get_health(url: str, timeout: float = 1.0) -> dict[str, Any] | None:
    """The worker's health document when it answers 200, else None."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read()) if response.status == 200 else None
    except (OSError, ValueError):
        return None


# -- the worker process ----------------------------------------------------------------------------

def _death_signal() -> Any:
    """A preexec function that has the child SIGKILLed when the demo process dies (Linux
    PR_SET_PDEATHSIG), so that even a SIGKILLed demo leaves no worker behind; None elsewhere.
    libc is looked up here, in the parent: the child must not import (another thread, e.g. rich's
    spinner, may hold the import lock at fork time)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig, sigkill = 1, int(signal.SIGKILL)
    return lambda: prctl(pr_set_pdeathsig, sigkill)


@dataclass
class WorkerProcess:
    """``python -m leadflow worker`` in its own session (a Ctrl-C in the terminal is ours to handle)."""

    bootstrap: str
    policy_path: Path
    env: dict[str, str]
    log_path: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        self.port = free_port()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "leadflow", "worker", "--broker", self.bootstrap,
                 "--policy", str(self.policy_path), "--web-port", str(self.port)],
                env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_death_signal(),
            )
        atexit.register(self.stop)

    def check(self) -> None:
        """Raise DemoError if the worker exited."""
        if self.proc is not None and self.proc.poll() is not None:
            code = self.proc.returncode
            how = (f"was killed by {signal.Signals(-code).name}" if code < 0
                   else f"exited with status {code}{self._last_line()}")
            raise DemoError(f"the worker {how}; its log: {self.log_path}")

    def wait_ready(self, timeout: float = WORKER_READY_TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            doc = get_health(self.health_url, timeout=0.5)
            if doc is not None:
                return doc
            time.sleep(0.2)
        raise DemoError(f"the worker did not become ready in {timeout:.0f} s "
                        f"({self.health_url}){self._last_line()}; its log: {self.log_path}")

    def stop(self, timeout: float = WORKER_STOP_TIMEOUT) -> int | None:
        """SIGINT (faust shuts down cleanly), then SIGKILL after ``timeout``; the exit status."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            signal_group(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        return proc.returncode

    def _last_line(self) -> str:
        """`` (last line of the worker's log)``, without terminal escapes, or ``""``."""
        try:
            text = _ANSI.sub("", self.log_path.read_text(errors="replace"))
        except OSError:
            return ""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return f" ({lines[-1][:200]})" if lines else ""


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x08\x0b-\x1f\x7f]")


# -- the command -----------------------------------------------------------------------------------

class _Stop(KeyboardInterrupt):
    """SIGTERM or SIGHUP (the terminal went away): wind down like Ctrl-C."""


_WIND_DOWN_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def run(broker: str | None = None, policy_path: str | None = None, duration: float = 90.0,
        rate: float = 40.0, *, console: Any = None) -> Board:
    """Run the demo for ``duration`` seconds (or until Ctrl-C); return the final board."""
    from rich.console import Console

    if not duration > 0:
        raise ConfigError(f"--duration must be positive, got {duration}")
    if not rate > 0:
        raise ConfigError(f"--rate must be positive, got {rate}")
    if policy_path is not None:
        load_policy(policy_path)                  # a bad policy: exit 2 before anything starts
    if console is None:
        console = Console(highlight=False)
        if not console.is_terminal and "COLUMNS" not in os.environ:
            console = Console(highlight=False, width=120)     # a log or a pipe: no wrapping at 80
    live_view = console.is_terminal and not console.is_dumb_terminal

    workdir = Path(tempfile.mkdtemp(prefix="leadflow-demo-"))
    if policy_path is None:
        policy_file = workdir / "demo-policy.toml"
        policy_file.write_text(DEMO_POLICY)
        load_policy(str(policy_file))
    else:
        policy_file = Path(policy_path).resolve()

    app_id = f"demo-{os.urandom(3).hex()}"
    env = {k: v for k, v in os.environ.items() if k != "LEADFLOW_BROKER"}
    env.update(LEADFLOW_APP_ID=app_id, LEADFLOW_TOPIC_PREFIX=app_id,
               LEADFLOW_LOGLEVEL=os.environ.get("LEADFLOW_LOGLEVEL", "warning"))
    board = Board(duration)
    embedded: EmbeddedBroker | None = None
    worker: WorkerProcess | None = None
    threads: list[Any] = []
    notes: list[str] = []
    previous_handlers = {sig: signal.getsignal(sig) for sig in _WIND_DOWN_SIGNALS}

    def on_term(signum: int, frame: Any) -> None:
        raise _Stop()

    for sig in _WIND_DOWN_SIGNALS:
        signal.signal(sig, on_term)
    try:
        configured = broker or os.environ.get("LEADFLOW_BROKER", "").strip()
        message = f"connecting to {configured}…" if configured else "starting the embedded broker…"
        with console.status(message) if live_view else _nothing():
            if not live_view:
                print(f"leadflow demo: {message}", file=console.file, flush=True)
            bootstrap, embedded = resolve_broker(broker)
        if embedded is not None:
            env["LEADFLOW_BROKER_QUIRKS"] = "tansu"
            where = f"{bootstrap} (embedded)"
        else:
            where = bootstrap
        print(f"leadflow demo: broker {where}", file=sys.stderr, flush=True)
        from leadflow.worker import topics_from_env

        topics = topics_from_env(env)
        ensure_topics(bootstrap, topics)
        worker = WorkerProcess(bootstrap, policy_file, env, workdir / "worker.log")
        header = Header(broker=where, app_id=app_id, policy=str(policy_path or "built-in demo policy"),
                        worker_log=str(worker.log_path), speedup=None if policy_path else SPEEDUP)
        message = f"starting the worker (log {worker.log_path})…"
        with console.status(message) if live_view else _nothing():
            if not live_view:
                print(f"leadflow demo: {message}", file=console.file, flush=True)
            worker.start()
            board.set_health(worker.wait_ready())

        reader = OutputReader(bootstrap, topics, board)
        reader.start()
        threads.append(reader)
        reader.ready.wait(10)
        poller = HealthPoller(worker.health_url, board)
        poller.start()
        threads.append(poller)
        traffic = Traffic(bootstrap, topics, rate, board)
        traffic.start()
        threads.append(traffic)

        def check() -> None:
            worker.check()
            if embedded is not None and not embedded.running:
                raise DemoError(f"the embedded broker exited (log {embedded.log_path})")
            for thread in (traffic, reader):
                if thread.error is not None:
                    raise DemoError(f"{thread.name}: {type(thread.error).__name__}: {thread.error}")

        interrupted = _show(board, header, console, live_view, check, traffic, reader)
        if interrupted:
            notes.append("stopped early (Ctrl-C)")
        stop_code = worker.stop()
        if stop_code not in (0, -signal.SIGINT, 130, None):
            notes.append(f"the worker exited with status {stop_code} when stopped")
        worker = None
        for thread in threads:
            thread.stop()
        for thread in threads:
            thread.join(5)
        if embedded is not None:
            embedded.stop()
            embedded = None
            notes.append("the embedded broker is stopped: its topics were in memory and are gone")
        else:
            notes.append(f"the records stay on {bootstrap}; a report of them: leadflow report "
                         f"'kafka://{bootstrap}?lifecycle={topics.lifecycle}&alerts={topics.alerts}'")
        board.set_phase("done")
        console.print(summary(board, header))
        for note in notes:
            console.print(note, soft_wrap=True, markup=False)
        return board
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
        for thread in threads:
            thread.stop()
        for thread in threads:     # before the broker goes: the producer flushes and closes first
            thread.join(10)
        if worker is not None:
            worker.stop(timeout=5)
        if embedded is not None:
            embedded.stop()


def _show(board: Board, header: Header, console: Any, live_view: bool, check: Any,
          traffic: Traffic, reader: OutputReader) -> bool:
    """The live part: draw until the end or Ctrl-C, stop the traffic, let the worker drain.
    True when interrupted."""
    interrupted = False
    if live_view:
        from rich.live import Live

        with Live(render(board, header, *console.size), console=console, refresh_per_second=4, transient=False,
                  redirect_stdout=False, redirect_stderr=False) as live:
            interrupted = _until_end(board, check, lambda: live.update(render(board, header, *console.size)), 0.25)
            _drain(board, traffic, reader, check, lambda: live.update(render(board, header, *console.size)))
            live.update(render(board, header, *console.size))
    else:
        last = [time.monotonic()]

        def plain() -> None:
            if time.monotonic() - last[0] >= PLAIN_EVERY:
                last[0] = time.monotonic()
                print(progress_line(board), file=console.file, flush=True)

        interrupted = _until_end(board, check, plain, 0.25)
        _drain(board, traffic, reader, check, lambda: None)
        print(progress_line(board), file=console.file, flush=True)
    return interrupted


def _until_end(board: Board, check: Any, draw: Any, every: float) -> bool:
    try:
        while board.phase != "running" or board.elapsed() < board.duration:
            check()
            draw()
            time.sleep(every)
        return False
    except KeyboardInterrupt:      # and _Stop (SIGTERM)
        return True


def _drain(board: Board, traffic: Traffic, reader: OutputReader, check: Any, draw: Any) -> None:
    """Stop the traffic; wait until the worker's stage changes and DLQ records stop coming."""
    board.set_phase("traffic stopped, letting the worker catch up")
    traffic.stop()
    hurry = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: hurry.set())   # a second Ctrl-C: skip the wait
    try:
        traffic.join(15)
        started = time.monotonic()
        while not hurry.is_set() and time.monotonic() - started < DRAIN_MAX:
            if time.monotonic() - max(reader.last_record, started) >= DRAIN_QUIET:
                break
            check()
            draw()
            time.sleep(0.1)
    finally:
        signal.signal(signal.SIGINT, previous)
    board.set_phase("stopping")


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None
