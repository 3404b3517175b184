"""The worker's web server on the real broker: where it listens, what it serves, who may read a lead.

Each worker is a ``leadflow worker`` subprocess (tests/streams/test_worker.py). On Linux every
address of 127.0.0.0/8 is loopback, so "listens on 127.0.0.1 only" is observable: a server bound to
0.0.0.0 also answers on 127.0.0.2, one bound to 127.0.0.1 does not.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from leadflow.broker import port_accepts
from streams.app import bearer_allows
from schemas.secrets import Secret
from tests.streams.test_worker import QUICK_POLICY, ROOT, Feed, deployment  # noqa: F401 - a fixture

pytestmark = pytest.mark.kafka

TOKEN = "t0ken-" + "x" * 26


def get(host: str, port: int, path: str, token: str | None = None) -> tuple[int, Any, dict[str, str]]:
    request = urllib.request.Request(f"http://{host}:{port}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            status, body, headers = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        status, body, headers = error.code, error.read(), dict(error.headers)
    try:
        return status, json.loads(body), headers
    except ValueError:
        return status, body, headers


def wait_for_lead(host: str, port: int, lead_id: str, token: str | None = None, timeout: float = 40) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status, doc, _ = get(host, port, f"/leads/{lead_id}", token)
            if status == 200:
                return doc
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"lead {lead_id} not served on {host}:{port}")


def test_the_web_server_listens_on_loopback_hides_faust_views_and_can_require_a_token(
        deployment: Callable[..., Any], bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    topics, _, make_worker = deployment(QUICK_POLICY)
    default = make_worker("default")          # no LEADFLOW_WEB_* variable: the defaults
    feed = Feed(bootstrap, topics)
    feed.send("W1", "form_fill", form_type="webinar", form_id="f1")
    feed.close()
    assert wait_for_lead("127.0.0.1", default.port, "W1")["stage"] == "engaged"
    assert not port_accepts("127.0.0.2", default.port), "listens beyond 127.0.0.1"
    for path in ("/table/", "/table/leads/", "/table/leads/W1/", "/router/", "/router/leads/W1/"):
        status, _, _ = get("127.0.0.1", default.port, path)
        assert status == 404, path

    # a second worker (same group, so it takes partitions over) bound to 127.0.0.2 with a token and
    # faust's debug views on
    default.stop()
    monkeypatch.setenv("LEADFLOW_WEB_BIND", "127.0.0.2")
    monkeypatch.setenv("LEADFLOW_WEB_HOST", "127.0.0.2")
    monkeypatch.setenv("LEADFLOW_WEB_TOKEN", TOKEN)
    monkeypatch.setenv("LEADFLOW_WEB_DEBUG_VIEWS", "1")
    guarded = make_worker("guarded")
    lead = wait_for_lead("127.0.0.2", guarded.port, "W1", token=TOKEN)
    assert lead["lead_id"] == "W1"
    assert not port_accepts("127.0.0.1", guarded.port)
    status, doc, headers = get("127.0.0.2", guarded.port, "/leads/W1")
    assert status == 401 and "W1" not in json.dumps(doc) and headers.get("WWW-Authenticate", "").startswith("Bearer")
    for wrong in ("", TOKEN[:-1], TOKEN + "x", TOKEN.upper()):
        assert get("127.0.0.2", guarded.port, "/leads/W1", wrong)[0] == 401
    assert get("127.0.0.2", guarded.port, "/leads/nobody", TOKEN)[0] == 404
    assert get("127.0.0.2", guarded.port, "/health")[0] == 200      # health and metrics stay open
    assert get("127.0.0.2", guarded.port, "/metrics")[0] == 200
    assert get("127.0.0.2", guarded.port, "/table/")[0] == 200      # asked for: served
    assert get("127.0.0.2", guarded.port, "/router/")[0] == 200


def test_a_web_port_in_use_is_one_line_and_exit_status_2(bootstrap: str, tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "leadflow", "worker", "--broker", bootstrap,
                               "--web-port", str(port)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and f"127.0.0.1:{port}" in done.stderr and "in use" in done.stderr
    assert time.monotonic() - started < 30


def test_the_bearer_check_wants_the_exact_token() -> None:
    token = Secret(TOKEN)
    assert bearer_allows(None, None) and bearer_allows("anything", None)
    assert bearer_allows(f"Bearer {TOKEN}", token) and bearer_allows(f"bearer  {TOKEN} ", token)
    for header in (None, "", TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", "Bearer"):
        assert not bearer_allows(header, token), header
