"""SPEC 9 live = replay, on the real (embedded Tansu) broker: a ``leadflow worker`` subprocess on
the wall clock must emit exactly the ids ``leadflow replay``'s driver gives for the same events.

(a) a touch that happened before the deadline reaches the worker after its breach fired: the same
``sla_retracted``; (b) a hold set live keeps the breach from firing until after the resume, and the
breach carries the moved deadline; (c) a form fill and its assignment sent at the same instant on two
topics, the assignment first, give replay's ids with ``[lateness] reorder = "1s"``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lifecycle.engine import Engine
from lifecycle.processor import Processor
from lifecycle.records import AlertRecord, LifecycleRecord
from schemas import codec
from schemas.policy_file import load_policy
from schemas.wire import format_time, parse_time
from streams.topics import Topics
from tests.kafka_helpers import consume_all, decode_json
from tests.streams.test_worker import Feed, deployment, sleep_until  # noqa: F401 - deployment is a fixture

#: first_touch breaches 3 s after the assignment (a warning at 1.5 s); nothing else fires within an hour.
FAIR_POLICY = """
[sla.assignment]
within = "1h"
business = false

[sla.first_touch]
within = "3s"
business = false
warn_at = 0.5
escalate_after = false

[sla.qualification]
within = "1h"
business = false

[sla.opportunity]
within = "1h"
business = false

[sla.nurture]
within = "1h"
business = false
"""
NO_WARNING = FAIR_POLICY.replace("warn_at = 0.5", "warn_at = false")
REORDER = FAIR_POLICY + '\n[lateness]\nreorder = "1s"\n'


def replay(policy: Path, events: list[bytes], until: int | None = None) -> tuple[set[str], dict[str, AlertRecord]]:
    """(transition ids, alerts by id) of ``leadflow replay`` over the same events, ``--until``."""
    processor = Processor(Engine(load_policy(policy)))
    records: list[Any] = []
    for value in events:
        records.extend(processor.submit(codec.decode(value)))
    records.extend(processor.finish(until))
    return ({r.transition_id for r in records if isinstance(r, LifecycleRecord)},
            {r.alert_id: r for r in records if isinstance(r, AlertRecord)})


def live(bootstrap: str, topics: Topics) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return (decode_json(consume_all(bootstrap, topics.lifecycle, idle=0.3, timeout=10)),
            decode_json(consume_all(bootstrap, topics.alerts, idle=0.3, timeout=10)))


def wait_for_alert(bootstrap: str, topics: Topics, found: Callable[[dict[str, Any]], bool],
                   timeout: float) -> list[dict[str, Any]]:
    """The alerts topic, read until an alert satisfies ``found`` (or the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        alerts = decode_json(consume_all(bootstrap, topics.alerts, idle=0.3, timeout=10))
        if any(found(a) for a in alerts) or time.monotonic() > deadline:
            return alerts
        time.sleep(0.2)


def wait_for_ids(bootstrap: str, topics: Topics, transitions: set[str], alerts: set[str],
                 timeout: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    deadline = time.monotonic() + timeout
    while True:
        lifecycle, alert_records = live(bootstrap, topics)
        have_t = {r["transition_id"] for r in lifecycle}
        have_a = {r["alert_id"] for r in alert_records}
        if (transitions <= have_t and alerts <= have_a) or time.monotonic() > deadline:
            return lifecycle, alert_records
        time.sleep(0.3)


def test_a_late_touch_after_a_live_breach_gets_replays_retraction(
    deployment: Callable[..., Any], bootstrap: str
) -> None:
    topics, policy, make_worker = deployment(FAIR_POLICY)
    worker = make_worker("w1")
    worker.wait_ready()
    feed = Feed(bootstrap, topics)
    feed.send("L", "form_fill", form_type="demo_request", form_id="f1")
    assigned = feed.send("L", "lead_assigned", owner_id="rep-1", team="na")
    alerts = wait_for_alert(bootstrap, topics, lambda a: a["type"] == "follow_up_overdue", timeout=15)
    breach = next(a for a in alerts if a["type"] == "follow_up_overdue")  # fired live, on the wall clock
    feed.send("X", "email_engagement", action="open", campaign_id="c1")  # moves replay's watermark past it
    # the rep called 2 s after the assignment (after the 1.5 s warning, before the 3 s deadline); the
    # CRM syncs it only now
    touched_at = parse_time(assigned["occurred_at"]) + 2000
    touch = feed.send("L", "sales_touch", rep_id="rep-1", channel="call", outcome="connected",
                      occurred_at=format_time(touched_at))
    feed.close()

    expected_t, expected_a = replay(policy, feed.events)
    lifecycle, alerts = wait_for_ids(bootstrap, topics, expected_t, set(expected_a), timeout=20)
    assert {r["transition_id"] for r in lifecycle} == expected_t
    assert {a["alert_id"] for a in alerts} == set(expected_a)
    (retraction,) = [a for a in alerts if a["type"] == "sla_retracted"]
    assert expected_a[retraction["alert_id"]].type == "sla_retracted"  # the same id as replay's
    assert retraction["resolves_alert_id"] == breach["alert_id"]
    assert (retraction["reason"], retraction["evidence_event_id"], retraction["overdue_by_ms"]) == (
        "late_event", touch["event_id"], 0)
    # the warning (1.5 s) was true: resolved, not retracted
    warning = next(a for a in alerts if a["type"] == "sla_warning")
    (resolved,) = [a for a in alerts if a["type"] == "sla_resolved"]
    assert resolved["resolves_alert_id"] == warning["alert_id"]


def test_a_hold_set_live_keeps_the_breach_from_firing_until_after_the_resume(
    deployment: Callable[..., Any], bootstrap: str
) -> None:
    topics, policy, make_worker = deployment(NO_WARNING)
    worker = make_worker("w1")
    worker.wait_ready()
    feed = Feed(bootstrap, topics)
    t0 = time.time()
    feed.send("H", "form_fill", form_type="demo_request", form_id="f1")
    assigned = feed.send("H", "lead_assigned", owner_id="rep-1", team="na")
    sleep_until(t0 + 1.0)
    hold = feed.send("H", "sales_disposition", decision="hold", reason="customer travelling", rep_id="rep-1")
    due = parse_time(assigned["occurred_at"]) + 3000
    sleep_until(due / 1000 + 1.5)  # the original deadline passed 1.5 s ago, on hold
    _, alerts = live(bootstrap, topics)
    assert [a["type"] for a in alerts if a["lead_id"] == "H"] == ["sla_held"]
    resume = feed.send("H", "sales_disposition", decision="resume", rep_id="rep-1")
    feed.close()
    moved = parse_time(resume["occurred_at"]) + (due - parse_time(hold["occurred_at"]))

    alerts = wait_for_alert(bootstrap, topics, lambda a: a["type"] == "follow_up_overdue", timeout=15)
    (breach,) = [a for a in alerts if a["type"] == "follow_up_overdue"]
    assert parse_time(breach["due_at"]) == moved  # the deadline moved by the time on hold
    assert parse_time(breach["detected_at"]) >= moved > parse_time(resume["occurred_at"])
    (resumed,) = [a for a in alerts if a["type"] == "sla_resumed"]
    assert resumed["held_ms"] == parse_time(resume["occurred_at"]) - parse_time(hold["occurred_at"])
    assert parse_time(resumed["due_at"]) == moved

    expected_t, expected_a = replay(policy, feed.events, until=moved + 1000)
    assert {a["alert_id"] for a in alerts} == set(expected_a)
    assert {a.type for a in expected_a.values()} == {"sla_held", "sla_resumed", "follow_up_overdue"}
    lifecycle, _ = live(bootstrap, topics)
    assert {r["transition_id"] for r in lifecycle} == expected_t


def test_a_form_fill_and_its_assignment_on_two_topics_give_replays_ids_with_a_reorder_window(
    deployment: Callable[..., Any], bootstrap: str
) -> None:
    topics, policy, make_worker = deployment(REORDER)
    worker = make_worker("w1")
    worker.wait_ready()
    feed = Feed(bootstrap, topics)
    at = format_time(int(time.time() * 1000))
    # the assignment first, on lead.sales_activity; the form fill 0.3 s later (the feed's gap between
    # topics) on lead.form_fills; both stamped the same instant
    feed.send("R", "lead_assigned", owner_id="rep-1", team="na", occurred_at=at)
    feed.send("R", "form_fill", form_type="demo_request", form_id="f1", occurred_at=at)
    feed.close()
    # replay applies held events in (time, type, id) order: the form fill first, whatever the file order
    expected_t, expected_a = replay(policy, feed.events, until=parse_time(at) + 6000)
    assert replay(policy, list(reversed(feed.events)), until=parse_time(at) + 6000) == (expected_t, expected_a)
    # without the window the arrival order decides, and the ids differ: the test can tell them apart
    no_window = policy.with_name("no-reorder.toml")
    no_window.write_text(FAIR_POLICY)
    arrival_t, arrival_a = replay(no_window, feed.events, until=parse_time(at) + 6000)
    assert arrival_t != expected_t and not set(arrival_a) & set(expected_a)

    lifecycle, alerts = wait_for_ids(bootstrap, topics, expected_t, set(expected_a), timeout=20)
    assert {r["transition_id"] for r in lifecycle} == expected_t
    assert {a["alert_id"] for a in alerts} == set(expected_a)
    assert {a.type for a in expected_a.values()} == {"sla_warning", "follow_up_overdue"}
    (mql,) = [r for r in lifecycle if r["to_stage"] == "mql"]
    assert mql["owner_id"] is None  # entered unassigned: the form fill came first
