"""Faults a worker must survive (issues 10 and 15), on the real broker with real ``leadflow worker``
processes: a message too big to carry never stops its partition; a full disk stops progress (never
turns valid events into dead letters) and the worker carries on, losing nothing, once there is room.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kafka_helpers import consume_all, decode_json
from tests.streams.test_worker import QUICK_POLICY, Feed, deployment, replay, wait_for_ids  # noqa: F401

pytestmark = pytest.mark.kafka


def test_an_oversized_message_is_dead_lettered_cut_down_and_the_partition_goes_on(
    deployment: Callable[..., Any], bootstrap: str
) -> None:
    topics, policy, make_worker = deployment(QUICK_POLICY)
    worker = make_worker("w1")
    worker.wait_ready()
    feed = Feed(bootstrap, topics)
    huge_id = "L" * 400_000
    valid_but_huge = json.dumps({"event_id": "big-1", "event_type": "form_fill", "lead_id": huge_id,
                                 "form_type": "webinar", "occurred_at": "2026-03-02T10:00:00Z"}).encode()
    feed.raw(topics.form_fills, valid_but_huge, key=huge_id.encode())
    feed.raw(topics.form_fills, b"\xff" * 800_000, key=b"k")
    after = feed.send("L-after", "form_fill", form_type="demo_request")
    feed.close()
    transitions, _, _, _ = replay(policy, feed.events)
    lifecycle, _ = wait_for_ids(bootstrap, topics, transitions, set(), timeout=30)
    assert {r["trigger_event_id"] for r in lifecycle} == {after["event_id"]}  # the partition went on
    dead = decode_json(consume_all(bootstrap, topics.dlq, expected_count=2, timeout=20))
    assert sorted(d["error"] for d in dead) == ["message_too_large", "message_too_large"]
    assert all(len(d["original"]) < 8_000 and d["source_offset"] is not None for d in dead)
    assert worker.health() is not None and worker.proc.poll() is None


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs (we run as root), unmounted at the end."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (root needed): {done.stderr.decode()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_stops_progress_and_the_worker_carries_on_once_there_is_room(
    deployment: Callable[..., Any], bootstrap: str, small_disk: Path
) -> None:
    topics, policy, make_worker = deployment(QUICK_POLICY)
    os.environ["LEADFLOW_STORE_RETRY_SECONDS"] = "8"  # read by the worker subprocess at start
    try:
        worker = make_worker("w1", "--data-dir", str(small_disk / "state"))
    finally:
        del os.environ["LEADFLOW_STORE_RETRY_SECONDS"]
    worker.wait_ready(timeout=60)
    feed = Feed(bootstrap, topics)
    filler = small_disk / "filler"
    with open(filler, "wb") as out:  # leave (almost) no room
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    sent = [feed.send(f"L{i:03d}", "form_fill", form_type="webinar", fields={"pad": "x" * 500})
            for i in range(300)]
    deadline = time.monotonic() + 30
    failing = None
    while time.monotonic() < deadline and failing is None:
        status, doc = worker.get("/health")
        if status == 503 and doc.get("store_failure"):
            failing = doc
        time.sleep(0.3)
    assert failing is not None, worker.tail()
    assert failing["status"] == "store failing"
    dead = decode_json(consume_all(bootstrap, topics.dlq, idle=1.0, timeout=10))
    assert dead == []  # valid events never become dead letters
    # the store stays broken (RocksDB turns read-only after a failed write): the worker stops
    assert worker.proc.wait(60) == 1
    said = worker.log_path.read_text(errors="replace").splitlines()
    assert any(line.startswith("leadflow: state store: ") and "nothing committed past" in line for line in said)
    filler.unlink()  # room again; a restart (as an orchestrator does) carries on
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    worker = make_worker("w2", "--data-dir", str(small_disk / "state"))
    worker.wait_ready(timeout=60)
    transitions, _, _, _ = replay(policy, feed.events)
    lifecycle, _ = wait_for_ids(bootstrap, topics, transitions, set(), timeout=60)
    feed.close()
    assert transitions <= {r["transition_id"] for r in lifecycle}, worker.tail()
    assert len({r["trigger_event_id"] for r in lifecycle}) == len(sent)
    assert worker.health() is not None


def test_an_event_from_the_future_is_dead_lettered_live(deployment: Callable[..., Any], bootstrap: str) -> None:
    """Live, the wall clock judges SLAs: an event more than LEADFLOW_FUTURE_MARGIN (1 h) ahead of it
    goes to the DLQ as future_timestamp; one within the margin is applied."""
    import datetime as dt

    topics, policy, make_worker = deployment(QUICK_POLICY)
    make_worker("w1").wait_ready()
    feed = Feed(bootstrap, topics)
    now = dt.datetime.now(dt.timezone.utc)
    for event_id, ahead in (("far", dt.timedelta(days=2)), ("near", dt.timedelta(minutes=30))):
        body = {"event_id": event_id, "event_type": "form_fill", "lead_id": f"L-{event_id}",
                "form_type": "webinar", "occurred_at": (now + ahead).isoformat()}
        feed.raw(topics.form_fills, json.dumps(body).encode(), key=f"L-{event_id}".encode())
    feed.close()
    dead = decode_json(consume_all(bootstrap, topics.dlq, expected_count=1, timeout=20))
    assert [(d["error"], json.loads(base64.b64decode(d["original"]))["event_id"]) for d in dead] == [
        ("future_timestamp", "far")]
    lifecycle = decode_json(consume_all(bootstrap, topics.lifecycle, expected_count=2, timeout=20))
    assert {r["lead_id"] for r in lifecycle} == {"L-near"}
