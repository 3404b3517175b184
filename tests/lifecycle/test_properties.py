"""Properties of the engine over random event streams (hypothesis)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings, strategies as st

from lifecycle.engine import Engine
from lifecycle.lead import Lead
from lifecycle.policy import Policy
from lifecycle.application import Row
from lifecycle.processor import Processor
from lifecycle.records import AlertRecord, LifecycleRecord
from lifecycle.stages import TERMINAL
from tests.strategies import HOUR_MS as HOUR
from tests.strategies import events

streams = st.lists(events(), max_size=60)
fast = settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)


def run(stream, until=None):
    processor = Processor(Engine(Policy()))
    records = []
    for event in stream:
        records.extend(processor.submit(event))
    if processor.clock is not None:
        records.extend(processor.advance(until if until is not None else processor.clock + 30 * 24 * HOUR))
    return processor, records


@fast
@given(streams)
def test_random_streams_never_crash_and_every_event_is_accounted_for(stream):
    processor, _ = run(stream)
    tally = processor.tally
    assert tally.read == len(stream) == tally.applied + tally.duplicates + tally.dead_lettered
    assert tally.applied == len({(e.lead_id, e.event_id) for e in stream})


@fast
@given(streams)
def test_replay_is_deterministic(stream):
    assert run(stream)[1] == run(list(stream))[1]


@fast
@given(streams)
def test_stage_follows_the_lifecycle_records_and_terminal_stages_absorb(stream):
    processor, records = run(stream)
    last: dict[str, str] = {}
    for record in records:
        if isinstance(record, LifecycleRecord):
            assert last.get(record.lead_id) not in {s.value for s in TERMINAL}
            assert record.from_stage == last.get(record.lead_id)
            assert record.time_in_previous_stage_ms is None or record.time_in_previous_stage_ms >= 0
            last[record.lead_id] = record.to_stage
    assert {lead_id: lead.stage.value for lead_id, lead in processor.leads.items()} == last


@fast
@given(streams)
def test_alert_ids_are_unique_and_every_resolve_names_an_alert_that_fired(stream):
    _, records = run(stream)
    alerts = [r for r in records if isinstance(r, AlertRecord)]
    ids = [a.alert_id for a in alerts]
    assert len(ids) == len(set(ids))
    fired = set()
    for alert in alerts:
        if alert.type == "sla_resolved":
            assert alert.resolves_alert_id in fired
            fired.discard(alert.resolves_alert_id)
        else:
            fired.add(alert.alert_id)


@fast
@given(streams)
def test_transition_ids_are_unique(stream):
    _, records = run(stream)
    ids = [r.transition_id for r in records if isinstance(r, LifecycleRecord)]
    assert len(ids) == len(set(ids))


@fast
@given(streams)
def test_lead_state_survives_serialisation(stream):
    processor, _ = run(stream)
    for lead in processor.leads.values():
        assert Lead.from_state(lead.to_state()) == lead


@fast
@given(streams, st.integers(0, 60))
def test_a_restart_from_saved_state_changes_no_output(stream, cut):
    """Timers are part of the lead state: stop after ``cut`` events, rebuild from state, carry on."""
    _, whole = run(stream)
    first = Processor(Engine(Policy()))
    records = []
    for event in stream[:cut]:
        records.extend(first.submit(event))
    saved = {lead_id: lead.to_state() for lead_id, lead in first.leads.items()}
    second = Processor(Engine(Policy()))
    second.clock = first.clock
    for lead_id, state in saved.items():
        lead = Lead.from_state(state)
        row = Row(lead, wake_at=second.engine.wake_at(lead))
        second.rows[lead_id] = row
        second.timers.set(lead_id, row.wake_at)
    for event in stream[cut:]:
        records.extend(second.submit(event))
    if second.clock is not None:
        records.extend(second.advance(second.clock + 30 * 24 * HOUR))
    assert sorted(map(repr, records)) == sorted(map(repr, whole))


@fast
@given(streams)
def test_apply_leaves_the_given_lead_unchanged_unless_in_place(stream):
    engine, leads = Engine(Policy()), {}
    for event in stream:
        before = leads.get(event.lead_id)
        snapshot = before.to_state() if before is not None else None
        outcome = engine.apply(before, event, event.occurred_at)
        if before is not None:
            assert before.to_state() == snapshot
        in_place = engine.apply(Lead.from_state(snapshot) if snapshot else None, event, event.occurred_at, in_place=True)
        assert in_place.lead == outcome.lead and in_place.records == outcome.records
        leads[event.lead_id] = outcome.lead
