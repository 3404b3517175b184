"""Live policy changes (SPEC 11) on the real broker, with ``leadflow worker`` subprocesses.

``leadflow policy publish`` reaches every worker of the group within 5 s, without a restart or a
rebalance; SLAs started after the switch use the new policy, running ones keep their deadlines;
records carry the new version from then on; a published policy that does not load is refused and
counted, and the workers keep theirs. A worker started after a publication uses the topic's policy,
not its ``--policy`` file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from schemas.policy_file import load_policy, parse_policy
from streams.app import partition_for
from streams.policy_topic import POLICY_KEY
from tests.kafka_helpers import consume_all, decode_json
from tests.streams.test_worker import QUICK_POLICY, Feed, Worker, deployment  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
FIRST_TOUCH = 'within = "3s"\nbusiness = false\nwarn_at = 0.5\nescalate_after = "2s"'
assert FIRST_TOUCH in QUICK_POLICY
#: first_touch breaches 15 s after it starts (no warning, no escalation) ...
POLICY_A = QUICK_POLICY.replace(FIRST_TOUCH, 'within = "15s"\nbusiness = false\nwarn_at = false\nescalate_after = false')
#: ... and 3 s after, once this one is published.
POLICY_B = QUICK_POLICY.replace(FIRST_TOUCH, 'within = "3s"\nbusiness = false\nwarn_at = false\nescalate_after = false')


def publish(bootstrap: str, prefix: str, path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LEADFLOW_APP_ID=prefix, LEADFLOW_TOPIC_PREFIX=prefix)
    env.pop("LEADFLOW_BROKER", None)
    return subprocess.run([sys.executable, "-m", "leadflow", "policy", "publish", str(path), "--broker", bootstrap],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def leads_on_every_partition(tag: str, per_partition: int = 2) -> list[str]:
    chosen: dict[int, list[str]] = {p: [] for p in range(4)}
    i = 0
    while any(len(v) < per_partition for v in chosen.values()):
        lead = f"{tag}{i}"
        if len(chosen[partition_for(lead, 4)]) < per_partition:
            chosen[partition_for(lead, 4)].append(lead)
        i += 1
    return sorted(lead for leads in chosen.values() for lead in leads)


def to_mql_with_owner(feed: Feed, leads: list[str]) -> None:
    """Assigned, then a hand-raiser form: mql with an owner, so first_touch starts at the form."""
    for lead in leads:
        feed.send(lead, "lead_assigned", owner_id=f"rep-{lead}", team="na", topic=feed.topics.sales_activity)
        feed.send(lead, "form_fill", form_type="demo_request", form_id="f", topic=feed.topics.sales_activity)


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.2)


def records(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    return decode_json(consume_all(bootstrap, topic, idle=0.3, timeout=10))


def metric(worker: Worker, pattern: str) -> str | None:
    status, text = worker.get("/metrics")
    found = re.search(pattern, text) if status == 200 else None
    return found.group(0) if found else None


def test_a_published_policy_reaches_both_workers_without_restart_or_rebalance(
        deployment: Callable[..., Any], bootstrap: str, tmp_path: Path) -> None:
    topics, policy_path, make_worker = deployment(POLICY_A)
    version_a, version_b = parse_policy(POLICY_A).policy_version, parse_policy(POLICY_B).policy_version
    one, two = make_worker("one"), make_worker("two")
    one.wait_ready()
    two.wait_ready()

    def split() -> tuple[dict, dict] | None:
        h1, h2 = one.health(), two.health()
        if h1 and h2 and h1["partitions"] and h2["partitions"] and \
                sorted(h1["partitions"] + h2["partitions"]) == [0, 1, 2, 3]:
            return h1, h2
        return None

    before = wait_for(split, 40, "two workers sharing the 4 partitions")
    assert [h["policy_version"] for h in before] == [version_a, version_a]
    pids = (one.proc.pid, two.proc.pid)  # type: ignore[union-attr]

    feed = Feed(bootstrap, topics)
    old = leads_on_every_partition("OLD")
    to_mql_with_owner(feed, old)                  # first_touch started under A: 15 s
    wait_for(lambda: {r["lead_id"] for r in records(bootstrap, topics.lifecycle) if r["to_stage"] == "mql"}
             >= set(old), 20, "the old leads in mql")

    policy_b = tmp_path / "policy-b.toml"
    policy_b.write_text("# published while the workers run\n" + POLICY_B)
    published_at = time.monotonic()
    done = publish(bootstrap, topics.app_id, policy_b)
    assert done.returncode == 0, done.stderr
    assert f"version {version_b} to {topics.policy}" in done.stdout
    wait_for(lambda: all((w.health() or {}).get("policy_version") == version_b for w in (one, two)),
             10, "both workers on the published policy")
    switch_seconds = time.monotonic() - published_at  # the CLI's own start-up (~1 s) included
    switched_at = time.time()
    assert switch_seconds < 5, switch_seconds

    new = leads_on_every_partition("NEW")
    to_mql_with_owner(feed, new)                  # first_touch started under B: 3 s
    feed.close()

    def breaches() -> dict[str, dict[str, Any]] | None:
        found = {a["lead_id"]: a for a in records(bootstrap, topics.alerts)
                 if a["type"] == "follow_up_overdue" and a["sla"] == "first_touch"}
        return found if set(old) | set(new) <= set(found) else None

    breach = wait_for(breaches, 45, "a first_touch breach of every lead")
    lifecycle = records(bootstrap, topics.lifecycle)

    def ms(text: str) -> int:
        from schemas.wire import parse_time
        return parse_time(text)

    for lead in old:                              # the deadline it started with, judged from then on by B
        a = breach[lead]
        assert ms(a["due_at"]) - ms(a["started_at"]) == 15_000, a
        assert ms(a["detected_at"]) / 1000 > switched_at, a
        assert a["policy_version"] == version_b, a
        assert {r["policy_version"] for r in lifecycle if r["lead_id"] == lead} == {version_a}
    for lead in new:
        a = breach[lead]
        assert ms(a["due_at"]) - ms(a["started_at"]) == 3_000, a
        assert a["policy_version"] == version_b, a
        assert {r["policy_version"] for r in lifecycle if r["lead_id"] == lead} == {version_b}

    after = (one.health(), two.health())          # no restart, no rebalance
    assert (one.proc.pid, two.proc.pid) == pids and one.proc.poll() is None and two.proc.poll() is None  # type: ignore[union-attr]
    assert [h["partitions"] for h in after] == [h["partitions"] for h in before]  # type: ignore[index]
    for worker in (one, two):
        assert metric(worker, rf'leadflow_policy_info\{{source="{re.escape(topics.policy)}@\d+",version="{version_b}"\}} 1\.0')
        assert metric(worker, r"leadflow_policy_changes_total 1\.0")
        assert f"switched to published policy {topics.policy}@" in worker.tail(20_000)

    # a record on the topic that is not a loadable policy: refused, counted, logged; B stays
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    producer.send(topics.policy, key=POLICY_KEY, value=b'[sla.first_touch]\nwithn = "1s"\n', partition=0).get(10)
    producer.close(timeout=5)
    for worker in (one, two):
        wait_for(lambda: metric(worker, r"leadflow_policy_refused_total 1\.0"), 10, "the refusal counted")
        assert (worker.health() or {}).get("policy_version") == version_b
        assert "published policy refused, keeping version " + version_b in worker.tail(20_000)
        assert "sla.first_touch.withn: unknown key 'withn'" in worker.tail(20_000)


def test_a_worker_started_after_a_publication_uses_it_not_its_policy_file(
        deployment: Callable[..., Any], bootstrap: str, tmp_path: Path) -> None:
    topics, policy_path, make_worker = deployment(POLICY_A)
    policy_b = tmp_path / "policy-b.toml"
    policy_b.write_text(POLICY_B)
    done = publish(bootstrap, topics.app_id, policy_b)
    assert done.returncode == 0, done.stderr
    version_b = load_policy(policy_b).policy_version
    worker = make_worker("late")
    assert worker.wait_ready()["policy_version"] == version_b != load_policy(policy_path).policy_version
    assert f"published policy {topics.policy}@0 (--policy {policy_path} not used) version {version_b}" \
        in worker.tail(50_000)
    feed = Feed(bootstrap, topics)
    to_mql_with_owner(feed, ["L1"])
    feed.close()
    lifecycle = wait_for(lambda: [r for r in records(bootstrap, topics.lifecycle) if r["to_stage"] == "mql"],
                         20, "the lead in mql")
    assert {r["policy_version"] for r in lifecycle} == {version_b}
