"""Business-hours arithmetic: working hours are local wall-clock times, only working time counts."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lifecycle.calendar import LATEST_MS, BusinessCalendar, calendar_for
from lifecycle.policy import CalendarPolicy, Duration

HOUR = 3_600_000
UTC_9_TO_5 = CalendarPolicy()  # Mon-Fri 09:00-17:00 UTC


def at(iso: str) -> int:
    """Epoch ms of an ISO time that carries its own offset."""
    return int(dt.datetime.fromisoformat(iso).timestamp() * 1000)


def add(policy: CalendarPolicy, start: str, duration: str, business: bool = True) -> int:
    amount, unit = float(duration[:-1]), duration[-1]
    return calendar_for(policy).add(at(start), Duration(amount, unit), business)


# --- within the working week --------------------------------------------------------------------


def test_a_deadline_within_one_working_day():
    # Tuesday 10:00 + 4h.
    assert add(UTC_9_TO_5, "2026-03-10T10:00+00:00", "4h") == at("2026-03-10T14:00+00:00")


def test_a_deadline_carries_across_the_night():
    # Tuesday 15:00 + 4h = 2h on Tuesday, 2h on Wednesday.
    assert add(UTC_9_TO_5, "2026-03-10T15:00+00:00", "4h") == at("2026-03-11T11:00+00:00")


def test_a_deadline_carries_from_friday_over_the_weekend_to_monday():
    assert add(UTC_9_TO_5, "2026-03-13T15:00+00:00", "4h") == at("2026-03-16T11:00+00:00")


def test_a_holiday_is_not_working_time():
    # Wednesday 2026-03-11 off: Tuesday 15:00 + 4h ends on Thursday.
    policy = CalendarPolicy(holidays=frozenset({dt.date(2026, 3, 11)}))
    assert add(policy, "2026-03-10T15:00+00:00", "4h") == at("2026-03-12T11:00+00:00")


def test_landing_exactly_at_the_end_of_the_day_is_the_end_of_that_day():
    assert add(UTC_9_TO_5, "2026-03-10T13:00+00:00", "4h") == at("2026-03-10T17:00+00:00")


@pytest.mark.parametrize(
    "start",
    [
        "2026-03-14T12:00+00:00",  # Saturday
        "2026-03-13T18:30+00:00",  # Friday after hours
        "2026-03-16T06:00+00:00",  # Monday before hours
    ],
)
def test_outside_working_hours_the_clock_starts_at_the_next_working_moment(start):
    assert add(UTC_9_TO_5, start, "1h") == at("2026-03-16T10:00+00:00")


def test_a_business_day_is_one_working_day_so_5d_is_five_working_days():
    # Monday 11:00 + 5 business days = next Monday 11:00 (5 x 8h of working time).
    cal = calendar_for(UTC_9_TO_5)
    start = at("2026-03-09T11:00+00:00")
    end = cal.add(start, Duration(5, "d"), business=True)
    assert end == at("2026-03-16T11:00+00:00")
    assert cal.working_ms_between(start, end) == 5 * 8 * HOUR


def test_a_business_day_follows_the_length_of_the_calendars_day():
    short_days = CalendarPolicy(day_start=dt.time(10, 0), day_end=dt.time(14, 0))
    assert add(short_days, "2026-03-09T12:00+00:00", "1d") == at("2026-03-10T12:00+00:00")
    assert calendar_for(short_days).workday_ms == 4 * HOUR


def test_a_fraction_of_a_duration_is_exact_to_the_millisecond():
    # 75% of 4 business hours = 3h; Tuesday 16:00 + 3h = Wednesday 11:00.
    warning = Duration(4, "h").scaled(0.75)
    cal = calendar_for(UTC_9_TO_5)
    assert cal.add(at("2026-03-10T16:00+00:00"), warning, business=True) == at("2026-03-11T11:00+00:00")
    assert add(UTC_9_TO_5, "2026-03-10T09:00+00:00", "0.001s") == at("2026-03-10T09:00+00:00") + 1


def test_calendar_time_ignores_working_hours_weekends_and_holidays():
    policy = CalendarPolicy(holidays=frozenset({dt.date(2026, 3, 14)}))
    saturday_night = "2026-03-14T23:00+00:00"
    assert add(policy, saturday_night, "15m", business=False) == at("2026-03-14T23:15+00:00")
    assert add(policy, saturday_night, "7d", business=False) == at("2026-03-21T23:00+00:00")


def test_is_working_counts_the_start_of_the_day_and_not_its_end():
    cal = calendar_for(UTC_9_TO_5)
    assert cal.is_working(at("2026-03-10T09:00+00:00"))
    assert not cal.is_working(at("2026-03-10T17:00+00:00"))
    assert not cal.is_working(at("2026-03-14T12:00+00:00"))  # Saturday


def test_working_time_between_two_instants_skips_nights_and_weekends():
    cal = calendar_for(UTC_9_TO_5)
    friday_4pm, monday_10am = at("2026-03-13T16:00+00:00"), at("2026-03-16T10:00+00:00")
    assert cal.working_ms_between(friday_4pm, monday_10am) == 2 * HOUR
    assert cal.working_ms_between(monday_10am, friday_4pm) == 0


def test_a_calendar_whose_day_ends_before_it_starts_is_refused():
    with pytest.raises(ValueError, match="day_start"):
        BusinessCalendar(CalendarPolicy(day_start=dt.time(17, 0), day_end=dt.time(9, 0)))


def test_calendars_are_built_once_per_policy():
    assert calendar_for(CalendarPolicy(timezone="Europe/Berlin")) is calendar_for(
        CalendarPolicy(timezone="Europe/Berlin")
    )


# --- daylight-saving time: 09:00-17:00 stays 09:00-17:00 local -----------------------------------

BERLIN = CalendarPolicy(timezone="Europe/Berlin")
NEW_YORK = CalendarPolicy(timezone="America/New_York")


@pytest.mark.parametrize(
    ("policy", "friday_4pm", "monday_10am_utc"),
    [
        # Berlin springs forward on Sunday 2026-03-29: CET (+01) on Friday, CEST (+02) on Monday.
        (BERLIN, "2026-03-27T16:00+01:00", "2026-03-30T08:00+00:00"),
        # Berlin falls back on Sunday 2026-10-25: CEST on Friday, CET on Monday.
        (BERLIN, "2026-10-23T16:00+02:00", "2026-10-26T09:00+00:00"),
        # New York springs forward on Sunday 2026-03-08: EST (-05) to EDT (-04).
        (NEW_YORK, "2026-03-06T16:00-05:00", "2026-03-09T14:00+00:00"),
        # New York falls back on Sunday 2026-11-01: EDT to EST.
        (NEW_YORK, "2026-10-30T16:00-04:00", "2026-11-02T15:00+00:00"),
    ],
)
def test_working_hours_stay_local_across_a_daylight_saving_change(policy, friday_4pm, monday_10am_utc):
    # 1h on Friday, then 1h from Monday 09:00 local, whatever the new UTC offset.
    assert add(policy, friday_4pm, "2h") == at(monday_10am_utc)
    assert add(policy, friday_4pm, "1d") == at(monday_10am_utc) + 6 * HOUR


def test_a_working_day_that_spans_utc_midnight_moves_with_the_offset():
    # Auckland 09:00-17:00 is 20:00-04:00 UTC (NZDT, +13) and 21:00-05:00 UTC (NZST, +12) after
    # daylight saving ends on Sunday 2026-04-05.
    auckland = CalendarPolicy(timezone="Pacific/Auckland")
    assert add(auckland, "2026-04-03T16:00+13:00", "2h") == at("2026-04-05T22:00+00:00")
    cal = calendar_for(auckland)
    assert cal.is_working(at("2026-04-05T21:00+00:00"))  # Monday 09:00 NZST
    assert not cal.is_working(at("2026-04-05T20:30+00:00"))  # Monday 08:30 NZST


def test_a_working_day_sees_the_hour_the_clocks_skip_as_missing():
    # Working hours 01:00-05:00 every day in Berlin: on 2026-03-29 02:00 jumps to 03:00, so that
    # day holds 3h of working time; the deadline counts real elapsed time.
    night_shift = CalendarPolicy(
        timezone="Europe/Berlin", workdays=tuple(range(7)), day_start=dt.time(1), day_end=dt.time(5)
    )
    cal = calendar_for(night_shift)
    assert cal.working_ms_between(at("2026-03-29T01:00+01:00"), at("2026-03-29T05:00+02:00")) == 3 * HOUR
    assert add(night_shift, "2026-03-29T01:00+01:00", "3h") == at("2026-03-29T05:00+02:00")


def every_day(timezone: str, start: tuple[int, int], end: tuple[int, int]) -> CalendarPolicy:
    return CalendarPolicy(timezone=timezone, workdays=tuple(range(7)), day_start=dt.time(*start),
                          day_end=dt.time(*end))


def interval(policy: CalendarPolicy, date: str) -> tuple[int, int] | None:
    return calendar_for(policy)._day_interval(dt.date.fromisoformat(date).toordinal())


# A working day starts and ends at the FIRST moment the local clock reads at or after the boundary:
# inside a spring-forward gap that is the jump itself, inside a fall-back fold the first occurrence.

@pytest.mark.parametrize(
    ("timezone", "date", "jump"),
    [
        ("America/New_York", "2026-03-08", "2026-03-08T07:00+00:00"),  # 02:00 EST -> 03:00 EDT
        ("Europe/Berlin", "2026-03-29", "2026-03-29T01:00+00:00"),  # 02:00 CET -> 03:00 CEST
    ],
)
def test_a_day_starting_inside_the_spring_forward_gap_starts_at_the_jump(timezone, date, jump):
    policy = every_day(timezone, (2, 30), (8, 0))
    cal = calendar_for(policy)
    begin, end = interval(policy, date)
    assert begin == at(jump)  # 03:00 after the jump: the first moment the clock reads >= 02:30
    assert cal.is_working(at(jump)) and not cal.is_working(at(jump) - 1)
    assert cal.working_ms_between(begin, end) == 5 * HOUR  # 03:00-08:00 local


def test_the_issue_11_repro_a_first_touch_due_in_one_business_hour_on_the_spring_forward_day():
    # New York, every day 02:30-08:00; a demo request and its assignment at 07:15Z (03:15 EDT): the
    # day began at 03:00 EDT, so one working hour later is 08:15Z (not 08:30Z).
    from lifecycle.policy import Policy, SlaPolicy
    from tests.lifecycle.scenario import Scenario, assign, form_fill

    slas = dict(Policy().slas)
    slas["first_touch"] = SlaPolicy(within=Duration(1, "h"), business=True)
    s = Scenario(Policy(calendar=every_day("America/New_York", (2, 30), (8, 0)), slas=slas))
    s.send(form_fill("L1", "2026-03-08T07:15:00Z", "demo_request"), assign("L1", "2026-03-08T07:15:00Z"))
    assert s.lead().sla("first_touch").due_at == at("2026-03-08T08:15+00:00")


def test_a_day_ending_inside_the_spring_forward_gap_ends_at_the_jump():
    # 00:30-02:30 New York: on 2026-03-08 the clock jumps from 02:00 EST to 03:00 EDT at 07:00Z,
    # so the day is 00:30 EST (05:30Z) to 07:00Z: 1h30 of working time, nothing after 02:30.
    policy = every_day("America/New_York", (0, 30), (2, 30))
    cal = calendar_for(policy)
    assert interval(policy, "2026-03-08") == (at("2026-03-08T05:30+00:00"), at("2026-03-08T07:00+00:00"))
    assert not cal.is_working(at("2026-03-08T07:00+00:00"))  # 03:00 EDT: after the day's end
    # 1h30 that day, the last 30 minutes from 00:30 EDT the next day (04:30Z)
    assert add(policy, "2026-03-08T05:30+00:00", "2h") == at("2026-03-09T05:00+00:00")


def test_a_day_wholly_inside_the_gap_has_no_working_time():
    policy = every_day("America/New_York", (2, 10), (2, 50))
    assert interval(policy, "2026-03-08") is None
    assert interval(policy, "2026-03-09") == (at("2026-03-09T02:10-04:00"), at("2026-03-09T02:50-04:00"))


def test_a_day_starting_inside_the_fall_back_fold_starts_at_the_first_occurrence():
    # New York 2026-11-01: 01:00-02:00 EDT, then the clocks go back and 01:00-02:00 EST follows.
    policy = every_day("America/New_York", (1, 30), (8, 0))
    cal = calendar_for(policy)
    assert interval(policy, "2026-11-01") == (at("2026-11-01T01:30-04:00"), at("2026-11-01T08:00-05:00"))
    assert cal.is_working(at("2026-11-01T01:30-04:00")) and not cal.is_working(at("2026-11-01T01:29-04:00"))
    assert cal.working_ms_between(at("2026-11-01T00:00-04:00"), at("2026-11-02T00:00-05:00")) == 7.5 * HOUR


def test_a_day_ending_inside_the_fall_back_fold_ends_at_the_first_occurrence():
    policy = every_day("America/New_York", (0, 30), (1, 30))
    cal = calendar_for(policy)
    assert interval(policy, "2026-11-01") == (at("2026-11-01T00:30-04:00"), at("2026-11-01T01:30-04:00"))
    assert not cal.is_working(at("2026-11-01T01:15-05:00"))  # the second 01:15: the day is over
    assert add(policy, "2026-11-01T00:30-04:00", "1h") == at("2026-11-01T01:30-04:00")


def first_moment_reading(zone: str, date: dt.date, time: dt.time) -> int:
    """Brute force: the first whole minute whose local reading is ``date time`` or later."""
    boundary, tz = dt.datetime.combine(date, time), ZoneInfo(zone)
    moment = (boundary - dt.timedelta(hours=16)).replace(tzinfo=dt.timezone.utc)
    while moment.astimezone(tz).replace(tzinfo=None) < boundary:
        moment += dt.timedelta(minutes=1)
    return int(moment.timestamp() * 1000)


#: Days with a clock change, odd ones included: 30-minute DST (Lord Howe), a 45-minute zone
#: (Chatham), a change at 00:01 (St John's, 2010), a 2-hour change (Troll), a skipped day (Apia).
DST_DAYS = [
    ("America/New_York", "2026-03-08"), ("America/New_York", "2026-11-01"),
    ("Europe/Berlin", "2026-03-29"), ("Europe/Berlin", "2026-10-25"),
    ("Australia/Lord_Howe", "2026-10-04"), ("Australia/Lord_Howe", "2026-04-05"),
    ("Pacific/Chatham", "2026-09-27"), ("America/St_Johns", "2010-03-14"),
    ("Antarctica/Troll", "2026-03-29"), ("Pacific/Apia", "2011-12-30"),
]


@settings(max_examples=200, deadline=None)
@given(day=st.sampled_from(DST_DAYS), minute=st.integers(0, 24 * 60 - 1))
def test_a_boundary_is_the_first_moment_the_local_clock_reads_it_or_later(day, minute):
    zone, date = day[0], dt.date.fromisoformat(day[1])
    time = dt.time(minute // 60, minute % 60)
    cal = calendar_for(CalendarPolicy(timezone=zone, workdays=tuple(range(7))))
    assert cal._boundary(date, time) == first_moment_reading(zone, date, time)


# --- properties ---------------------------------------------------------------------------------

CALENDARS = st.sampled_from(
    [
        UTC_9_TO_5,
        BERLIN,
        NEW_YORK,
        CalendarPolicy(
            timezone="Europe/Berlin",
            workdays=(0, 1, 2, 3, 5),
            day_start=dt.time(8, 30),
            day_end=dt.time(18, 15),
            holidays=frozenset({dt.date(2026, 12, 25), dt.date(2026, 3, 30), dt.date(2026, 10, 26)}),
        ),
        every_day("America/New_York", (2, 30), (8, 0)),  # starts inside the spring-forward gap
        every_day("Europe/Berlin", (0, 30), (2, 30)),  # ends inside it, and inside the fold
    ]
)
STARTS = st.integers(min_value=at("2025-12-01T00:00+00:00"), max_value=at("2027-02-01T00:00+00:00"))
WORKING_MS = st.integers(min_value=0, max_value=40 * 8 * HOUR)


@settings(max_examples=300, deadline=None)
@given(policy=CALENDARS, start=STARTS, working_ms=WORKING_MS)
def test_working_time_between_is_the_inverse_of_adding_business_time(policy, start, working_ms):
    cal = calendar_for(policy)
    end = cal.add(start, Duration(working_ms / 1000, "s"), business=True)
    assert cal.working_ms_between(start, end) == working_ms


@settings(max_examples=300, deadline=None)
@given(policy=CALENDARS, start=STARTS, shorter=WORKING_MS, longer=WORKING_MS)
def test_adding_more_business_time_never_ends_earlier(policy, start, shorter, longer):
    shorter, longer = sorted((shorter, longer))
    cal = calendar_for(policy)
    first = cal.add(start, Duration(shorter / 1000, "s"), business=True)
    assert first <= cal.add(start, Duration(longer / 1000, "s"), business=True)
    assert first >= start


# --- the end of the range of time: deadlines are clamped, never overflow ----------------------------


@pytest.mark.parametrize("timezone", ["UTC", "Pacific/Kiritimati", "Etc/GMT+12", "Europe/Berlin"])
@pytest.mark.parametrize("business", [True, False])
def test_a_deadline_past_the_end_of_the_range_is_clamped_to_it(timezone: str, business: bool):
    calendar = calendar_for(CalendarPolicy(timezone=timezone))
    for start in (LATEST_MS - 10 * 86_400_000, LATEST_MS - HOUR, LATEST_MS):
        due = calendar.add(start, Duration(30, "d"), business)
        assert due == LATEST_MS
    assert calendar.add(LATEST_MS - 30 * 86_400_000, Duration(1, "s"), False) == LATEST_MS - 30 * 86_400_000 + 1000


def test_a_deadline_inside_the_range_is_not_clamped():
    # Friday 9989-12-29 10:00 UTC + 4 business hours: 14:00, the same day.
    assert add(UTC_9_TO_5, "9989-12-29T10:00+00:00", "4h") == at("9989-12-29T14:00+00:00")
    assert add(UTC_9_TO_5, "1970-01-01T00:00+00:00", "1h") == at("1970-01-01T10:00+00:00")
