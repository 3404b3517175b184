"""The timer set: earliest first, replace and cancel, bounded memory, against a model (hypothesis)."""

from __future__ import annotations

from hypothesis import given, strategies as st

from lifecycle.timers import TimerSet


def test_pops_due_timers_earliest_first_and_keeps_later_ones():
    timers = TimerSet()
    timers.set("b", 20)
    timers.set("a", 10)
    timers.set("c", 30)
    assert list(timers.pop_due(20)) == [("a", 10), ("b", 20)]
    assert timers.next_due() == 30 and len(timers) == 1


def test_equal_due_times_pop_in_lead_id_order_whatever_the_order_they_were_set():
    timers = TimerSet()
    for lead in ("c", "a", "b"):
        timers.set(lead, 10)
    timers.set("a", 5)
    timers.set("a", 10)  # back to 10: its old heap entry is live again, the new one a stale copy
    assert list(timers.pop_due(10)) == [("a", 10), ("b", 10), ("c", 10)]
    assert len(timers) == 0 and timers.next_due() is None


def test_exclusive_bound_leaves_timers_due_exactly_then():
    timers = TimerSet()
    timers.set("a", 10)
    assert list(timers.pop_due(10, inclusive=False)) == []
    assert list(timers.pop_due(10)) == [("a", 10)]


def test_setting_again_replaces_and_none_cancels():
    timers = TimerSet()
    timers.set("a", 10)
    timers.set("a", 50)
    timers.set("b", 5)
    timers.set("b", None)
    assert list(timers.pop_due(100)) == [("a", 50)]


def test_stale_entries_are_compacted_so_memory_follows_live_timers():
    timers = TimerSet()
    for round_ in range(100):
        for lead in range(10):
            timers.set(f"l{lead}", round_ * 100 + lead)
    assert len(timers) == 10
    assert len(timers._heap) <= 2 * 64


ops = st.lists(
    st.tuples(st.sampled_from("abcdefgh"), st.one_of(st.none(), st.integers(0, 1000))), max_size=80
)


@given(ops, st.integers(0, 1000))
def test_behaves_like_a_dict_of_deadlines(operations, until):
    timers, model = TimerSet(), {}
    for lead, due in operations:
        timers.set(lead, due)
        if due is None:
            model.pop(lead, None)
        else:
            model[lead] = due
    popped = list(timers.pop_due(until))
    expected = sorted(((lead, due) for lead, due in model.items() if due <= until), key=lambda x: (x[1], x[0]))
    assert popped == expected  # by due time, then lead id: the order depends on nothing else
    assert dict(timers.items()) == {lead: due for lead, due in model.items() if due > until}
