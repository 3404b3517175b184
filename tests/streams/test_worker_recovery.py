"""Crash and scale-out: a worker SIGKILLed mid-stream and restarted, and a group of two that loses one.

The guarantee under test (SPEC 6): after recovery every transition and every alert that an
uninterrupted replay of the same events produces has been emitted at least once; lead state and
pending timers survive (a timer due after the restart still fires).

These tests once failed about one run in three, for three reasons now fixed in streams/app.py (each
has its own narrower test): offsets committed before the changelog writes they covered were
acknowledged (``_DurableBuffer``), a survivor skipping records of partitions its predecessor never
committed (``_seek_to_committed``), and Tansu's short ListOffsets ending recovery early
(``exact_end_offsets``).
"""

from __future__ import annotations

import json
import time

from collections.abc import Callable
from typing import Any

from lifecycle.records import AlertRecord
from streams.app import partition_for
from tests.streams.test_worker import SLOW_POLICY, Feed, Worker, deployment, replay, wait_for_ids  # noqa: F401


def send_batch(feed: Feed, leads: list[str], first: int) -> None:
    """Every lead fills a hand-raiser form; even ones get an owner (first_touch: +4/+8/+12 s), odd
    ones stay unassigned (assignment breach at +2 s); every fourth is touched at once (sal).

    All of a lead's events go through one topic: Kafka orders a partition, not a set of topics, and
    after a crash the worker reads each topic's backlog in whatever order faust fetches them."""
    topic = feed.topics.sales_activity
    for lead in leads:
        feed.send(lead, "form_fill", form_type="demo_request", form_id="f", topic=topic)
    for i, lead in enumerate(leads, first):
        if i % 2 == 0:
            feed.send(lead, "lead_assigned", owner_id=f"rep-{i % 3}", team="na", topic=topic)
    for i, lead in enumerate(leads, first):
        if i % 4 == 0:
            feed.send(lead, "sales_touch", rep_id=f"rep-{i % 3}", channel="call", outcome="connected",
                      topic=topic)


def filler(feed: Feed, count: int, tag: str) -> None:
    """Email opens for many other leads: load, so that a kill lands while the worker is busy."""
    for i in range(count):
        feed.send(f"N{tag}{i % 60}", "email_engagement", action="open" if i % 3 else "click",
                  campaign_id="c")


def check_outputs(bootstrap: str, topics: Any, policy: Any, feed: Feed, survivor: Worker,
                  not_before: float) -> None:
    expected_t, expected_a, stages, records = replay(policy, feed.events)
    lifecycle, alerts = wait_for_ids(bootstrap, topics, expected_t, expected_a, timeout=45)
    have_t = {r["transition_id"] for r in lifecycle}
    have_a = {r["alert_id"] for r in alerts}
    missing_t = [r for r in records if getattr(r, "transition_id", None) in expected_t - have_t]
    extra_t = [r for r in lifecycle if r["transition_id"] not in expected_t]
    if missing_t:
        lead = missing_t[0].lead_id
        mine = [json.loads(e) for e in feed.events if json.loads(e)["lead_id"] == lead]
        live = [(r["from_stage"], r["to_stage"], r["trigger_event_id"]) for r in lifecycle if r["lead_id"] == lead]
        exp = [(r.from_stage, r.to_stage, r.trigger_event_id) for r in records
               if getattr(r, "lead_id", None) == lead and hasattr(r, "transition_id")]
        from tests.kafka_helpers import consume_all, decode_json
        again = decode_json(consume_all(bootstrap, topics.lifecycle, idle=3, timeout=30))
        again_lead = [(r["from_stage"], r["to_stage"], r["trigger_event_id"]) for r in again if r["lead_id"] == lead]
        state = survivor.get(f"/leads/{lead}")
        raise AssertionError(f"{len(missing_t)} missing; {lead}: events {mine}\nlive {live}\nreplay {exp}\n"
                             f"reread {len(lifecycle)} -> {len(again)} {again_lead}\nstate {state}")
    missing = [r for r in records if isinstance(r, AlertRecord) and r.alert_id not in have_a]
    assert missing == [], f"{len(missing)} alerts missing, e.g. {missing[:3]}"
    # some SLA steps fell due only after the restart / takeover, and fired
    steps_after = [r for r in records if isinstance(r, AlertRecord) and r.type != "sla_resolved"
                   and r.detected_at / 1000 > not_before]
    assert steps_after, "the scenario should leave timers due after the restart"
    # state: every lead's stage as replayed, read through the survivor
    for lead_id in sorted(stages):
        if lead_id.startswith("N"):
            continue
        status, doc = survivor.get(f"/leads/{lead_id}")
        assert status == 200 and doc["stage"] == stages[lead_id], (lead_id, doc)
    health = survivor.health()
    assert health is not None and health["partitions"] == [0, 1, 2, 3]
    assert health["timers_pending"] == 0


def test_sigkill_mid_stream_then_restart_loses_no_output_state_or_timer(
    deployment: Callable[..., Any], bootstrap: str
) -> None:
    topics, policy, make_worker = deployment(SLOW_POLICY)
    first = make_worker("first")
    first.wait_ready()
    feed = Feed(bootstrap, topics)
    leads = [f"K{i}" for i in range(24)]
    send_batch(feed, leads[:6], 0)
    send_batch(feed, leads[6:12], 6)
    filler(feed, 150, "a")
    first.kill()                                  # mid-stream: filler and batches still in flight
    second = make_worker("second")
    send_batch(feed, leads[12:18], 12)            # while nobody runs
    second.wait_ready()
    restarted = time.time()
    send_batch(feed, leads[18:24], 18)
    filler(feed, 60, "b")
    feed.close()
    check_outputs(bootstrap, topics, policy, feed, second, restarted)


def test_two_workers_split_partitions_and_the_survivor_takes_over(
    deployment: Callable[..., Any], bootstrap: str
) -> None:
    topics, policy, make_worker = deployment(SLOW_POLICY)
    one, two = make_worker("one"), make_worker("two")
    one.wait_ready()
    two.wait_ready()
    deadline = time.monotonic() + 40
    while True:                                   # wait for the split: 4 partitions, both busy
        h1, h2 = one.health(), two.health()
        if h1 and h2 and h1["partitions"] and h2["partitions"] and \
                sorted(h1["partitions"] + h2["partitions"]) == [0, 1, 2, 3]:
            break
        assert time.monotonic() < deadline, (h1, h2)
        time.sleep(0.3)
    feed = Feed(bootstrap, topics)
    leads = [f"R{i}" for i in range(24)]
    send_batch(feed, leads[:12], 0)
    # a lookup on the wrong worker is routed to the lead's owner
    on_two = next(lead for lead in leads if partition_for(lead, 4) in h2["partitions"])
    deadline = time.monotonic() + 10
    while True:
        status, doc = one.get(f"/leads/{on_two}", timeout=5)
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert status == 200 and doc["lead_id"] == on_two and doc["stage"] in ("mql", "sal")
    filler(feed, 100, "a")
    two.kill()
    killed = time.time()
    send_batch(feed, leads[12:24], 12)
    one.wait_ready(partitions=4, timeout=40)
    filler(feed, 30, "b")
    feed.close()
    check_outputs(bootstrap, topics, policy, feed, one, killed)
