"""Fixtures of the sink tests: record factories, a throw-away PostgreSQL schema, a scriptable local
webhook receiver (a real HTTP server on 127.0.0.1, free port)."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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

    def __init__(self) -> None:
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

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/alerts"
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
