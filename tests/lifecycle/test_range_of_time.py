"""The end of the range of time through the engine: every deadline, also one a resume moves, stays
at or before ``LATEST_MS``, so a wake-up delayed by the longest grace can still be written."""

from __future__ import annotations

from lifecycle.calendar import LATEST_MS
from lifecycle.engine import Engine
from lifecycle.records import AlertRecord
from schemas.policy_file import parse_policy
from schemas.wire import format_time
from tests.lifecycle.scenario import Scenario, disposition, form_fill, t

LONG = parse_policy('[sla.assignment]\nwithin = "3650d"\nbusiness = false\n[lateness]\ngrace = "3650d"\n')


def test_a_resume_at_the_end_of_the_range_clamps_the_moved_deadline():
    s = Scenario(LONG)
    s.send(form_fill("L1", "1970-01-01 00:00", "demo_request", event_id="form"),   # assignment due 1979
           disposition("L1", "1970-01-01 00:01", "hold", reason="travel"))
    (resumed,) = s.send(disposition("L1", "9989-12-31 23:59", "resume", reason=None))
    assert isinstance(resumed, AlertRecord) and resumed.type == "sla_resumed"
    assert resumed.due_at == LATEST_MS                              # not 9989 + 3650 days
    (sla,) = s.lead().slas
    assert all(at <= LATEST_MS for _, at in sla.steps)
    wake = Engine(LONG).wake_at(s.lead())
    assert wake == LATEST_MS + 3650 * 86_400_000
    assert format_time(wake) == "9999-12-29T23:59:59.999Z"         # the grace's wake-up: writable


def test_deadlines_of_an_event_on_the_last_day_are_clamped_and_fire_at_the_end():
    s = Scenario(parse_policy('[sla.assignment]\nwithin = "7d"\nbusiness = false\n'))
    s.send(form_fill("L1", "9989-12-31 10:00", "demo_request", event_id="form"))
    assert s.advance("9989-12-31T23:59:59.998Z") == []
    fired = s.advance("9989-12-31T23:59:59.999Z")
    (broken,) = [a for a in fired if isinstance(a, AlertRecord)]
    assert broken.type == "handoff_broken" and broken.due_at == broken.detected_at == LATEST_MS
    assert broken.started_at == t("9989-12-31 10:00")
