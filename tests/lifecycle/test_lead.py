"""Lead state: the idempotency memory is exact within its window and bounded whatever the history."""

from __future__ import annotations

import orjson

from lifecycle.engine import Engine
from lifecycle.events import EmailEngaged
from lifecycle.ids import event_digest
from lifecycle.lead import DEDUPE_WINDOW, Lead
from lifecycle.policy import Policy

BASE = 1_772_442_000_000


def opens(n, start=0):
    return [EmailEngaged(event_id=f"e{i}", lead_id="L1", occurred_at=BASE + i, action="open") for i in range(start, start + n)]


def _lead_after(n: int) -> Lead:
    engine, lead = Engine(Policy()), None
    for event in opens(n):
        lead = engine.apply(lead, event, BASE, in_place=lead is not None).lead
    return lead


def test_every_event_id_within_the_window_is_remembered():
    engine, lead = Engine(Policy()), _lead_after(DEDUPE_WINDOW)
    assert lead.seen_count == DEDUPE_WINDOW
    assert all(engine.apply(lead, event, BASE).duplicate for event in opens(DEDUPE_WINDOW))
    assert not engine.apply(lead, opens(1, start=10 * DEDUPE_WINDOW)[0], BASE).duplicate


def test_the_window_keeps_the_latest_ids_and_lets_the_oldest_go():
    engine, lead = Engine(Policy()), _lead_after(DEDUPE_WINDOW + 10)
    assert lead.seen_count == DEDUPE_WINDOW
    assert not engine.apply(lead, opens(1)[0], BASE).duplicate          # e0 left the window
    assert engine.apply(lead, opens(1, start=10)[0], BASE).duplicate    # e10 is the oldest kept


def test_a_leads_state_stays_small_whatever_its_history():
    small, large = _lead_after(DEDUPE_WINDOW), _lead_after(20 * DEDUPE_WINDOW)
    size = len(orjson.dumps(large.to_state()))
    assert abs(size - len(orjson.dumps(small.to_state()))) < 16  # same window: only the score's digits
    assert size < 70_000  # far below the broker's 1 MiB message limit


def test_a_digest_found_across_two_neighbours_is_not_a_duplicate():
    a, b = event_digest("a"), event_digest("b")
    lead = Lead("L1", seen=a + b)
    straddling = a[4:] + b[:4]
    assert lead.has_seen(a) and lead.has_seen(b) and not lead.has_seen(straddling)


def test_older_copies_do_not_see_ids_added_to_newer_ones():
    engine = Engine(Policy())
    lead = _lead_after(200)
    later = engine.apply(lead, opens(1, start=999)[0], BASE).lead
    assert later.has_seen(event_digest("e999")) and not lead.has_seen(event_digest("e999"))


def test_state_round_trip_keeps_every_digest():
    lead = _lead_after(300)
    assert Lead.from_state(lead.to_state()) == lead
    assert Lead.from_state(lead.to_state()).seen_count == 300


def test_a_row_written_with_a_longer_memory_reads_back_within_the_window():
    state = _lead_after(10).to_state()
    state["seen"] = b"".join(event_digest(f"x{i}") for i in range(DEDUPE_WINDOW + 5)).hex()
    lead = Lead.from_state(state)
    assert lead.seen_count == DEDUPE_WINDOW and lead.has_seen(event_digest(f"x{DEDUPE_WINDOW + 4}"))


def test_history_is_kept_flat_and_reads_back_as_triples_of_the_last_eight() -> None:
    from lifecycle.lead import HISTORY_LENGTH

    lead = Lead("L-1", history=(("new", 1, "form_fill"),))
    for at in range(2, 12):
        lead.add_history("engaged", at, "email_engagement")
    assert len(lead.history) == HISTORY_LENGTH
    assert lead.history[0] == ("engaged", 4, "email_engagement") and lead.history[-1][1] == 11
    assert len(lead._history) == 3 * HISTORY_LENGTH  # one flat tuple, not a tuple per entry
    assert Lead.from_state(lead.to_state()) == lead
    assert lead.to_state()["history"][-1] == ["engaged", 11, "email_engagement"]


def test_leads_share_equal_field_pairs_and_keep_the_type_they_got() -> None:
    from lifecycle.grading import shared_pairs

    first = shared_pairs((("country", "DE"), ("employees", 500)))
    second = shared_pairs((("country", "D" + "E"), ("employees", 500), ("ratio", 1.0), ("flag", True)))
    assert second[0] is first[0] and second[1] is first[1]
    assert second == (("country", "DE"), ("employees", 500), ("ratio", 1.0), ("flag", True))
    assert type(shared_pairs((("employees", 500.0),))[0][1]) is float  # never the int 500 it equals
