"""Fixtures of the sink tests: a scriptable local webhook receiver (a real HTTP server on
127.0.0.1, free port), a raw-socket server that answers too slowly or never, and a small tmpfs to
fill up."""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


# -- webhook receiver ------------------------------------------------------------------------------

@dataclass
class Reply:
    """What the receiver answers to one request."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (a timeout when longer than the client's)


@dataclass
class Received:
    at: float
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


class WebhookReceiver:
    """A real HTTP server on 127.0.0.1. ``script(n, headers, body) -> Reply`` decides each answer
    (``n`` counts requests per Idempotency-Key, from 0); default: 200 for everything."""

    def __init__(self, port: int = 0) -> None:
        self.script: Callable[[int, dict[str, str], bytes], Reply] = lambda n, h, b: Reply()
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._per_key: dict[str, int] = {}
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                headers = {k: v for k, v in self.headers.items()}
                key = headers.get("Idempotency-Key", "")
                with receiver._lock:
                    n = receiver._per_key.get(key, 0)
                    receiver._per_key[key] = n + 1
                reply = receiver.script(n, headers, body)
                if reply.delay:
                    time.sleep(reply.delay)
                with receiver._lock:
                    receiver.requests.append(Received(time.monotonic(), self.path, headers, body, reply.status))
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self._handler = Handler
        self.port = port
        self.start()

    def start(self) -> None:
        """Listen (again, on the same port after ``stop``)."""
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self._handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/alerts"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def delivered(self) -> list[Received]:
        """2xx requests, first per Idempotency-Key: what a receiver honouring the key keeps."""
        seen: set[str] = set()
        out = []
        with self._lock:
            for r in self.requests:
                key = r.headers.get("Idempotency-Key", "")
                if 200 <= r.status < 300 and key not in seen:
                    seen.add(key)
                    out.append(r)
        return out

    def delivered_json(self) -> list[dict[str, Any]]:
        return [json.loads(r.body) for r in self.delivered()]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    try:
        yield receiver
    finally:
        receiver.stop()


WEBHOOK_SECRET = "s3cr3t-for-tests-only"


@pytest.fixture
def webhook_secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("LEADFLOW_WEBHOOK_SECRET", WEBHOOK_SECRET)
    return WEBHOOK_SECRET


# -- servers that misbehave ------------------------------------------------------------------------

class RawServer:
    """A raw-socket HTTP endpoint on 127.0.0.1 that never completes an answer.

    ``mode="trickle"``: reads the request, sends the status line, then one more byte every
    ``interval`` seconds, for ever (the headers never end). ``mode="silent"``: accepts, reads the
    request and never answers. ``requests`` counts the requests read; ``stop()`` closes everything.
    """

    def __init__(self, mode: str = "trickle", interval: float = 5.0) -> None:
        if mode not in ("trickle", "silent"):
            raise ValueError(mode)
        self.mode, self.interval = mode, interval
        self.requests = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/hooks/alerts"
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self._conns.append(conn)
                thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.5)
        data = b""
        try:
            while not self._stop.is_set():
                while b"\r\n\r\n" not in data:
                    try:
                        chunk = conn.recv(65536)
                    except TimeoutError:
                        if self._stop.is_set():
                            return
                        continue
                    if not chunk:
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(data) < length and not self._stop.is_set():
                    try:
                        data += conn.recv(65536)
                    except TimeoutError:
                        continue
                data = data[length:]
                with self._lock:
                    self.requests += 1
                if self.mode == "trickle":
                    conn.sendall(b"HTTP/1.1 200 OK\r\n")
                    while not self._stop.wait(self.interval):
                        conn.sendall(b"X")
                self._stop.wait()
        except OSError:
            return

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            for conn in self._conns:
                conn.close()
            threads = list(self._threads)
        for thread in [self._accepting, *threads]:
            thread.join(timeout=5)


@pytest.fixture
def raw_server() -> Iterator[Callable[..., RawServer]]:
    """Factory: ``raw_server("trickle", interval=5)`` or ``raw_server("silent")``; all stopped at the end."""
    made: list[RawServer] = []

    def make(mode: str = "trickle", interval: float = 5.0) -> RawServer:
        made.append(RawServer(mode, interval))
        return made[-1]

    yield make
    for server in made:
        server.stop()


# -- a file system to fill up ----------------------------------------------------------------------

class Tmpfs:
    """A tmpfs of ``size`` bytes mounted at ``path`` (needs root): ``fill()`` takes its last byte,
    ``free()`` gives the space back."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.filler = path / "filler"
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)

    def fill(self) -> None:
        with open(self.filler, "ab", buffering=0) as out:
            for _ in range(1_000_000):   # bounded: at most ~4 GB
                try:
                    out.write(b"\0" * 4096)
                except OSError:
                    break
            for _ in range(4096):        # the last partial block
                try:
                    out.write(b"\0")
                except OSError:
                    return

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def remount(self, mode: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{mode}", str(self.path)], check=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Tmpfs]:
    """A 1 MiB tmpfs for this test, unmounted at the end."""
    fs = Tmpfs(tmp_path / "tmpfs", 1024 * 1024)
    try:
        yield fs
    finally:
        fs.unmount()
