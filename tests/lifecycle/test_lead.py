"""Lead state: the idempotency set stays exact and cheap however many events a lead gets."""

from __future__ import annotations

from lifecycle.engine import Engine
from lifecycle.events import EmailEngaged
from lifecycle.ids import event_digest
from lifecycle.lead import RECENT_SEEN, Lead
from lifecycle.policy import Policy

BASE = 1_772_442_000_000


def opens(n, start=0):
    return [EmailEngaged(event_id=f"e{i}", lead_id="L1", occurred_at=BASE + i, action="open") for i in range(start, start + n)]


def test_every_event_id_is_remembered_past_the_compact_blob():
    engine, lead = Engine(Policy()), None
    for event in opens(5 * RECENT_SEEN):
        lead = engine.apply(lead, event, BASE).lead
    assert lead.seen_older and lead.seen_count == 5 * RECENT_SEEN
    assert all(engine.apply(lead, event, BASE).duplicate for event in opens(5 * RECENT_SEEN))
    assert not engine.apply(lead, opens(1, start=10_000)[0], BASE).duplicate


def test_a_digest_found_across_two_neighbours_is_not_a_duplicate():
    a, b = event_digest("a"), event_digest("b")
    lead = Lead("L1", seen=a + b)
    straddling = a[4:] + b[:4]
    assert lead.has_seen(a) and lead.has_seen(b) and not lead.has_seen(straddling)


def test_older_copies_do_not_see_ids_added_to_newer_ones():
    engine = Engine(Policy())
    lead = None
    for event in opens(2 * RECENT_SEEN):
        lead = engine.apply(lead, event, BASE).lead
    later = engine.apply(lead, opens(1, start=999)[0], BASE).lead
    assert later.has_seen(event_digest("e999")) and not lead.has_seen(event_digest("e999"))


def test_state_round_trip_keeps_every_digest():
    engine, lead = Engine(Policy()), None
    for event in opens(3 * RECENT_SEEN + 5):
        lead = engine.apply(lead, event, BASE).lead
    assert Lead.from_state(lead.to_state()) == lead
    assert Lead.from_state(lead.to_state()).seen_count == lead.seen_count
