"""The application step (``lifecycle.application``): dedupe, the outbox, timer commands, versions.

These are the rules the worker relies on for crash safety, checked in process over random streams
(the worker's subprocess tests check them once more end to end).
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings, strategies as st

from lifecycle.application import OUTBOX_CAP, Application, Position, Row
from lifecycle.engine import Engine
from lifecycle.policy import Policy
from tests.strategies import HOUR_MS, events

fast = settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
one_lead = st.lists(events(lead_ids=("L1",)), min_size=1, max_size=40)


def _drive(app: Application, stream, committed_upto: int = -1, redeliver: frozenset[int] = frozenset()):
    """Step ``stream`` (one lead) at positions 0.. of one partition, the clock at each event's time
    plus an hour; offsets below ``committed_upto`` count as committed. Each index in ``redeliver`` is
    delivered twice (a crash after the row was saved, before the commit)."""
    row, steps = Row(), []
    committed = lambda p: p.offset < committed_upto  # noqa: E731
    for offset, event in enumerate(stream):
        position = Position("in", 0, offset)
        step = app.on_event(row, event, event.occurred_at + HOUR_MS, position, committed)
        steps.append((offset, step))
        row = step.row
        if offset in redeliver:
            again = app.on_event(row, event, event.occurred_at + 2 * HOUR_MS, position, committed)
            steps.append((offset, again))
            row = again.row
    return row, steps


@fast
@given(one_lead, st.data())
def test_a_redelivered_message_sends_its_output_again_and_changes_nothing(stream, data):
    redeliver = frozenset(data.draw(st.sets(st.integers(0, len(stream) - 1))))
    app = Application(Engine(Policy()))
    _, steps = _drive(app, stream, redeliver=redeliver)
    first: dict[int, tuple] = {}
    for offset, step in steps:
        if offset not in first:
            first[offset] = step.sends
            continue
        assert step.duplicate and not step.records          # state is not touched again
        if len(stream) - offset <= OUTBOX_CAP:                # still kept: exactly the same output
            assert step.sends == first[offset]


@fast
@given(one_lead, st.integers(0, 40))
def test_the_outbox_keeps_only_uncommitted_output_and_at_most_the_cap(stream, committed_upto):
    app = Application(Engine(Policy()))
    row, _ = _drive(app, stream, committed_upto=committed_upto)
    assert len(row.outbox) <= OUTBOX_CAP
    assert all(sent.records for sent in row.outbox)         # nothing kept for messages without output
    saved_after = [sent.position.offset for sent in row.outbox]
    assert saved_after == sorted(saved_after)
    # every entry but the one just written is uncommitted (the newest is added after pruning)
    assert all(offset >= committed_upto for offset in saved_after[:-1])


@fast
@given(one_lead)
def test_versions_grow_by_one_with_every_save(stream):
    app = Application(Engine(Policy()))
    _, steps = _drive(app, stream)
    versions = [step.row.version for _, step in steps]
    assert versions == sorted(versions)
    saved = [step.row.version for _, step in steps if step.changed]
    assert saved == list(range(1, len(saved) + 1))


@fast
@given(one_lead)
def test_a_timer_command_fires_once_and_its_redelivery_repeats_it(stream):
    app = Application(Engine(Policy()))
    row, _ = _drive(app, stream)
    if row.wake_at is None:
        return
    due = row.wake_at
    position = Position("timers", 0, 999)
    fired = app.on_timer(row, f"timer:L1:{due}", due, position)
    assert fired.changed and fired.sends and fired.row.version == row.version + 1
    again = app.on_timer(fired.row, f"timer:L1:{due}", due + 5, position)
    assert again.duplicate and again.sends == fired.sends and again.row is fired.row
    later = app.on_timer(fired.row, "timer:L1:other", due)  # nothing more due at the same time
    assert not later.changed and not later.sends


@fast
@given(one_lead)
def test_consuming_rows_gives_the_same_output_as_copying_them(stream):
    copying, consuming = Application(Engine(Policy())), Application(Engine(Policy()), consumes_rows=True)
    _, a = _drive(copying, stream)
    _, b = _drive(consuming, stream)
    assert [s.records for _, s in a] == [s.records for _, s in b]


def test_an_event_fires_the_steps_the_clock_passed_before_it_arrived():
    """One rule for replay and live: an SLA step due before ``now`` fires before the event."""
    from tests.lifecycle.scenario import assign, form_fill, t, touch

    app = Application(Engine(Policy()))
    row = app.on_event(Row(), form_fill("L1", "2026-03-02 10:00", "demo_request"), t("2026-03-02 10:00")).row
    row = app.on_event(row, assign("L1", "2026-03-02 10:00", "r1"), t("2026-03-02 10:00")).row
    # the touch happened at 15:00, after the 14:00 deadline; the clock is 15:30 when it arrives
    step = app.on_event(row, touch("L1", "2026-03-02 15:00"), t("2026-03-02 15:30"))
    types = [getattr(r, "type", None) for r in step.records]
    assert types[:2] == ["sla_warning", "follow_up_overdue"]
    assert types.count("sla_resolved") == 2
