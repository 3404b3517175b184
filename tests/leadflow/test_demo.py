"""``leadflow demo`` end to end, as a user runs it: the real embedded broker, a real worker process,
real traffic. Once with standard output in a pipe (progress lines and the summary), once in a
terminal (tmux, fixed size) where the live view is captured as a person would see it.

Both runs go at the same time (the tmux one starts in a module fixture and is captured from a
background thread) so the pair takes about one run's time (~55 s).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lifecycle.engine import Engine
from lifecycle.errors import EventError
from schemas.policy_file import load_policy
from lifecycle.processor import Processor
from lifecycle.records import AlertRecord, LifecycleRecord
from schemas import codec
from schemas.wire import format_time
from leadflow import demo
from leadflow.demo_view import Board, Header, render, summary


ROOT = Path(__file__).resolve().parents[2]
PLAIN_ARGS = ["--duration", "45", "--rate", "30"]
TMUX_ARGS = ["--duration", "30", "--rate", "30"]
TMUX_SIZE = (120, 40)
CAPTURE_AFTER = 25.0
RUN_TIMEOUT = 110.0
ALERT_LINE = re.compile(r"\d\d:\d\d:\d\d +L-\d{6} (sla_warning|follow_up_overdue|handoff_broken|sla_resolved)")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LEADFLOW_BROKER", "COLUMNS", "LINES")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


# -- processes -------------------------------------------------------------------------------------

def _ppids() -> dict[int, int]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            out[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _descendants(root: int) -> dict[int, str]:
    ppids = _ppids()
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in ppids.items():
            if ppid == parent and pid not in found:
                found[pid] = _cmdline(pid)
                frontier.append(pid)
    return found


def _alive(pid: int, cmdline: str) -> bool:
    """Still running (not a zombie) and still the same program."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and _cmdline(pid) == cmdline


class Watch(threading.Thread):
    """Remembers every descendant of ``root`` (the worker, the Tansu broker) while it runs."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.seen: dict[int, str] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            for pid, cmd in _descendants(self.root).items():
                # a process that has just exited (a zombie until reaped) reads as "": keep what it was
                if cmd or pid not in self.seen:
                    self.seen[pid] = cmd
            self.done.wait(0.5)

    def stop(self) -> dict[int, str]:
        self.done.set()
        self.join(5)
        return self.seen


def _kill_all(pids: dict[int, str]) -> None:
    for pid, cmd in pids.items():
        if _alive(pid, cmd):
            os.kill(pid, signal.SIGKILL)


def _assert_no_leftovers(seen: dict[int, str]) -> None:
    kinds = {"worker": "leadflow worker", "broker": "tansu"}
    for name, needle in kinds.items():
        assert any(needle in cmd for cmd in seen.values()), f"never saw the {name} process: {seen}"
    time.sleep(0.5)
    left = {pid: cmd for pid, cmd in seen.items() if _alive(pid, cmd)}
    _kill_all(left)
    assert not left, f"processes left behind: {left}"


def _count(pattern: str, text: str) -> int:
    match = re.search(pattern + r"\s+([\d,]+)", text)
    return int(match.group(1).replace(",", "")) if match else 0


# -- the tmux run (a terminal of a fixed size), started first so both runs overlap ---------------

class TmuxDemo:
    def __init__(self, workdir: Path) -> None:
        self.socket = f"leadflow-test-{os.getpid()}"
        self.workdir = workdir
        self.capture_path = workdir / "demo-live-view.txt"
        self.final_path = workdir / "demo-final-screen.txt"
        self.live = ""
        self.final = ""
        self.exit_line = ""
        self.seen: dict[int, str] = {}
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def tmux(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True,
                              env=_env(), timeout=10)
        if check and done.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)}: {done.stderr}")
        return done.stdout

    def start(self) -> "TmuxDemo":
        cols, rows = TMUX_SIZE
        command = (f"cd {ROOT} && {sys.executable} -m leadflow demo {' '.join(TMUX_ARGS)}; "
                   "echo DEMO-EXIT=$?; sleep 600")
        self.tmux("-f", "/dev/null", "new-session", "-d", "-s", "demo", "-x", str(cols), "-y", str(rows), command)
        self.started = time.monotonic()
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            shell = int(self.tmux("display-message", "-p", "-t", "demo", "#{pane_pid}").strip())
            watch = Watch(shell)
            watch.start()
            while time.monotonic() - self.started < CAPTURE_AFTER:
                time.sleep(0.2)
            self.live = self.tmux("capture-pane", "-p", "-t", "demo")
            self.capture_path.write_text(self.live)
            deadline = self.started + RUN_TIMEOUT
            while time.monotonic() < deadline:
                screen = self.tmux("capture-pane", "-p", "-S", "-200", "-t", "demo")
                found = re.search(r"DEMO-EXIT=(\d+)", screen)
                if found:
                    self.exit_line = found.group(0)
                    self.final = screen
                    break
                time.sleep(0.5)
            else:
                self.final = self.tmux("capture-pane", "-p", "-S", "-200", "-t", "demo")
            self.final_path.write_text(self.final)
            self.seen = {pid: cmd for pid, cmd in watch.stop().items() if "sleep" not in cmd}
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def wait(self) -> None:
        self.thread.join(RUN_TIMEOUT + 10)

    def close(self) -> None:
        self.tmux("kill-server", check=False)
        _kill_all(self.seen)


@pytest.fixture(scope="module")
def tmux_demo(tmp_path_factory: pytest.TempPathFactory):
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed: `apt-get install -y tmux` (`make test` installs it)")
    demo = TmuxDemo(tmp_path_factory.mktemp("demo-tmux")).start()
    yield demo
    demo.close()


# -- tests -----------------------------------------------------------------------------------------

@pytest.mark.kafka
@pytest.mark.timeout(180)
def test_demo_in_a_pipe_shows_stage_changes_breaches_resolutions_and_the_dlq_and_leaves_nothing_behind(
        tmux_demo: TmuxDemo) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "leadflow", "demo", *PLAIN_ARGS], cwd=ROOT, env=_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watch = Watch(proc.pid)
    watch.start()
    try:
        out_bytes, err_bytes = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out_bytes, err_bytes = proc.communicate()
        _kill_all(watch.stop())
        pytest.fail(f"leadflow demo did not finish in {RUN_TIMEOUT} s:\n{out_bytes.decode()}\n{err_bytes.decode()}")
    seen = watch.stop()
    out, err = out_bytes.decode(), err_bytes.decode()
    shown = f"--- stdout\n{out}\n--- stderr\n{err}"

    assert proc.returncode == 0, shown
    assert "Traceback" not in out + err, shown
    assert re.search(r"^leadflow demo: broker 127\.0\.0\.1:\d+ \(embedded\)$", err, re.M), shown
    assert "embedded Tansu broker" in err and "keeps everything in memory" in err, shown
    assert "\x1b[" not in out, "no terminal escapes in a pipe\n" + shown
    progress = [line for line in out.splitlines() if line.startswith("[00:")]
    assert len(progress) >= 5, shown                          # a plain line every 5 s
    assert _count("stage changes", out) > 0, shown
    assert re.search(r"leads\s+[\d,]+\s+new \d+.* sal \d+", out), shown
    assert _count("follow_up_overdue", out) + _count("handoff_broken", out) >= 1, shown
    assert _count("sla_resolved", out) >= 1, shown
    assert _count("breach → resolved", out) >= 1, shown
    assert _count("sla_retracted", out) >= 1 and _count("breach → retracted", out) >= 1, shown  # SPEC 9
    assert _count("sla_held", out) >= 1 and _count("sla_resumed", out) >= 1, shown
    assert _count("DLQ", out) >= 1, shown
    log = re.search(r"worker log\s+(\S+)", out)
    assert log and Path(log.group(1)).is_file(), shown
    shutil.rmtree(Path(log.group(1)).parent, ignore_errors=True)
    _assert_no_leftovers(seen)


@pytest.mark.kafka
@pytest.mark.timeout(180)
def test_demo_in_a_terminal_shows_the_funnel_and_the_alerts_live(tmux_demo: TmuxDemo) -> None:
    tmux_demo.wait()
    assert tmux_demo.error is None, tmux_demo.error
    screen = tmux_demo.live
    where = f"(capture saved at {tmux_demo.capture_path})\n{screen}"
    assert "funnel · leads now in each stage" in screen, where
    for stage in ("new", "engaged", "mql", "sal", "customer", "disqualified"):
        assert re.search(rf"│ {stage} +█* +\d+ +│", screen), f"no {stage} bar\n{where}"
    assert "alerts · as they fire and resolve" in screen, where
    assert len(ALERT_LINE.findall(screen)) >= 3, where
    assert "throughput" in screen and re.search(r"events in +\d+/s", screen), where
    assert "conversion MQL" in screen, where
    assert all(len(line) <= TMUX_SIZE[0] for line in screen.splitlines()), where
    assert len(screen.rstrip("\n").splitlines()) <= TMUX_SIZE[1], where
    # then the summary, exit status 0, and nothing left running
    final = tmux_demo.final
    assert tmux_demo.exit_line == "DEMO-EXIT=0", final
    assert "leadflow demo: summary" in final, final
    log = re.search(r"worker log\s+(\S+)", final)
    if log:
        shutil.rmtree(Path(log.group(1)).parent, ignore_errors=True)
    _assert_no_leftovers(tmux_demo.seen)


# -- without a broker: the scripted opening against the demo policy, and the board ----------------

def test_the_opening_fires_and_resolves_a_breach_a_broken_handoff_and_a_dlq_record_early(tmp_path: Path) -> None:
    """What the demo promises a newcomer in its first ~15 s, checked on the pure engine with the
    built-in demo policy (a policy edit that breaks the promise fails here, not on stage)."""
    policy = tmp_path / "demo.toml"
    policy.write_text(demo.DEMO_POLICY)
    processor = Processor(Engine(load_policy(str(policy))))
    t0 = 1_800_000_000_000
    records, bad = [], 0
    for _sent, occurred, item in demo.opening():  # in the order sent
        if isinstance(item, bytes):
            with pytest.raises(EventError):
                codec.decode(item)
            bad += 1
            continue
        value = dict(item, occurred_at=format_time(t0 + int(occurred * 1000)))
        records += processor.submit(codec.decode(json.dumps(value).encode()))
    records += processor.advance(t0 + 60_000)
    alerts = [r for r in records if isinstance(r, AlertRecord)]

    def first(kind: str, lead: str) -> float:
        return min((a.detected_at - t0) / 1000 for a in alerts if a.type == kind and a.lead_id == lead)

    assert bad == 1
    assert first("handoff_broken", "L-000002") < first("sla_resolved", "L-000002") < 5
    assert first("sla_warning", "L-000001") < first("follow_up_overdue", "L-000001") < first("sla_resolved", "L-000001") < 15
    stages = [r.to_stage for r in records if isinstance(r, LifecycleRecord) and r.lead_id == "L-000001"]
    assert stages == ["new", "mql", "sal", "sql", "opportunity", "customer"]
    # SPEC 9: the touch synced late retracts the breach it came in time for (the warning was true)
    late = [(a.type, a.level) for a in alerts if a.lead_id == "L-000003" and a.sla == "first_touch"]
    assert late == [("sla_warning", 0), ("follow_up_overdue", 1), ("sla_resolved", 0), ("sla_retracted", 1)]
    assert first("follow_up_overdue", "L-000003") < first("sla_retracted", "L-000003") < 10
    # ... and the lead on hold passes its first deadline (6.9 s) held: no first-touch alert but the marks
    held = [a.type for a in alerts if a.lead_id == "L-000004" and a.sla == "first_touch"]
    assert held == ["sla_held", "sla_resumed"]


def _alert(alert_id: str, type_: str, lead: str = "L-1", sla: str = "first_touch", at: int = 1_000,
           level: int = 1, resolves: str | None = None, reason: str | None = None) -> AlertRecord:
    return AlertRecord(alert_id, type_, lead, sla, reason, level, "mql", "rep-1", "na", 0, 500, at, 0, resolves)


def _move(tid: str, lead: str, source: str | None, dest: str, skipped: tuple[str, ...] = ()) -> LifecycleRecord:
    return LifecycleRecord(tid, lead, source, dest, "e", "form_fill", 0, None, None, 0, skipped, None, None)


def test_the_board_counts_each_record_once_and_shows_one_line_per_resolution() -> None:
    board = Board(duration=10)
    for record in (_move("t1", "L-1", None, "new"), _move("t2", "L-1", "new", "mql"),
                   _move("t2", "L-1", "new", "mql"),                       # re-emitted after a crash
                   _move("t3", "L-2", None, "new"), _move("t4", "L-2", "new", "sql", ("engaged", "mql", "sal"))):
        board.add_lifecycle(record)
    assert board.transitions == 4
    assert {s: n for s, n in board.in_stage.items() if n} == {"mql": 1, "sql": 1}
    assert board.reached["mql"] == 2 and board.reached["sal"] == 1 and board.reached["sql"] == 1

    board.add_alert(_alert("w", "sla_warning"))
    board.add_alert(_alert("o1", "follow_up_overdue", at=2_000))
    board.add_alert(_alert("o1", "follow_up_overdue", at=2_000))           # a repeat: counted once
    board.add_alert(_alert("o2", "follow_up_overdue", at=3_000, level=2))
    for alert_id in ("w", "o1", "o2"):
        board.add_alert(_alert(f"r-{alert_id}", "sla_resolved", at=4_000, resolves=alert_id))
    assert board.alerts_by_type == {"sla_warning": 1, "follow_up_overdue": 2, "sla_resolved": 3}
    assert not board.open_alerts
    assert [r.breach for r in board.resolutions] == ["follow_up_overdue", "follow_up_overdue"]
    assert board.breaches_by_owner == {"rep-1": 1}                         # the escalation is the same breach
    lines = [entry.markup() for entry in board.feed]
    assert len(lines) == 4 and "closes warning, overdue L1, overdue L2" in lines[-1]

    board.add_dlq({"error": "invalid_json"})
    from dataclasses import replace

    for record in (replace(_move("t5", "L-3", "engaged", "mql"), first_channel="cpc"),
                   replace(_move("t6", "L-3", "mql", "sal"), first_channel="cpc"),
                   replace(_move("t6", "L-3", "mql", "sal"), first_channel="cpc"),   # a repeat
                   replace(_move("t7", "L-4", "new", "mql"), first_channel="cpc")):
        board.add_lifecycle(record)
    assert board.mqls_by_channel == {"(none)": 1, "cpc": 2} and board.sals_by_channel == {"cpc": 1}
    from rich.console import Console

    console = Console(width=80, height=24, record=True, color_system=None)
    console.print(render(board, Header("127.0.0.1:1", "demo-x", "built-in", "/tmp/w.log", 5000.0), 80, 24))
    screen = console.export_text()
    assert "funnel" in screen and "alerts" in screen and "invalid_json" in screen
    assert "by channel cpc 2 MQL (SAL 50%) · (none) 1 MQL (SAL 0%)" in screen
    assert len(screen.splitlines()) <= 24


HOSTILE = ("lead[/]x", "[link=https://evil.example]click[/link]", "\x1b]0;owned\x07", "\x1b[31mred")


def test_the_board_prints_hostile_ids_as_text_and_never_a_terminal_escape() -> None:
    from rich.console import Console

    from leadflow.demo_view import progress_line, summary

    board = Board(duration=10)
    for i, text in enumerate(HOSTILE):
        board.add_lifecycle(_move(f"t{i}", text, None, "new"))
        alert = _alert(f"o{i}", "follow_up_overdue", at=2_000)
        board.add_alert(AlertRecord(**{**{s: getattr(alert, s) for s in AlertRecord.__slots__},
                                       "lead_id": text, "owner_id": text, "sla": text}))
        board.add_alert(_alert(f"r{i}", "sla_resolved", at=3_000, resolves=f"o{i}"))
        board.add_dlq({"error": text})
    header = Header("127.0.0.1:1", "demo[/]", "built-in", "/tmp/w[/].log", 5000.0)
    console = Console(width=200, height=60, record=True, color_system="truecolor", force_terminal=True)
    console.print(render(board, header, 200, 60))
    console.print(summary(board, header))
    shown = console.export_text(styles=False) + progress_line(board)
    raw = console.export_text(styles=True)
    assert "lead[/]x" in shown and "[link=https://evil.example]" in shown and "demo[/]" in shown
    # no operating-system command (a window title, or the OSC 8 of a rendered link), no bell, and
    # the colour the data asked for is text, not an escape (Rich's own style codes stay)
    assert "\x1b]" not in raw and "\x07" not in raw and "\x1b[31mred" not in raw


def test_a_retraction_is_a_false_alarm_on_the_board_not_a_breach_of_the_owner() -> None:
    board = Board(duration=10)
    board.add_alert(_alert("w", "sla_warning", level=0))
    board.add_alert(_alert("o1", "follow_up_overdue", at=2_000))
    board.add_alert(_alert("r-w", "sla_resolved", at=3_000, level=0, resolves="w"))
    board.add_alert(_alert("x-o1", "sla_retracted", at=3_000, resolves="o1", reason="late_event"))
    board.add_alert(_alert("h", "sla_held", lead="L-2", at=3_500, level=0, reason="customer on holiday"))
    board.add_alert(_alert("u", "sla_resumed", lead="L-2", at=3_900, level=0))
    assert not board.open_alerts                   # retracted, and holds are never open
    assert board.resolutions == [] and board.retracted_breaches == 1
    assert board.breaches_by_owner == {}           # the false breach is not held against rep-1
    lines = [entry.markup() for entry in board.feed]
    assert "sla_retracted" in lines[3] and "false alarm" in lines[3] and "retracts overdue L1" in lines[3]
    assert "closes warning" in lines[2] and "false alarm" not in lines[2]
    assert "sla_held" in lines[4] and "customer on holiday" in lines[4] and "sla_resumed" in lines[5]
    from rich.console import Console

    console = Console(width=120, height=40, record=True, color_system=None)
    console.print(render(board, Header("127.0.0.1:1", "demo-x", "built-in", "/tmp/w.log", 5000.0), 120, 40))
    screen = console.export_text()
    assert re.search(r"retracted +1 +false alarms · 1 held, 1 resumed", screen), screen
    assert "false alarm (retracts overdue L1)" in screen, screen
    assert len(screen.splitlines()) <= 40
    console = Console(width=120, record=True, color_system=None)
    console.print(summary(board, Header("127.0.0.1:1", "demo-x", "built-in", "/tmp/w.log", 5000.0)))
    assert re.search(r"breach → retracted +1", console.export_text())
