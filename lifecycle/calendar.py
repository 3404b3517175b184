"""Business-hours arithmetic: deadlines that count only the working time of a calendar.

Times are epoch milliseconds (UTC). Working hours are local wall-clock times in the calendar's time
zone, so a 09:00-17:00 day stays 09:00-17:00 local across daylight-saving changes while its UTC offset
moves. Working time is real elapsed time inside those hours; a business day (``d``) is the nominal
length of one working day (``day_end - day_start``). Pure: no clock, no I/O.

The range of time: leadflow handles instants from ``EARLIEST_MS`` (1970-01-01T00:00:00.000Z) to
``LATEST_MS`` (9989-12-31T23:59:59.999Z). An event outside it is dead-lettered
(``invalid_timestamp``, ``schemas.codec``); a deadline that would fall after it is clamped to
``LATEST_MS`` by :meth:`BusinessCalendar.add`. The range ends ten years short of ``datetime``'s,
so that a wake-up a policy delays past a deadline (a grace or a reorder window, at most 3650 days
each) can still be written as RFC 3339, and every instant has a local date in every time zone.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Final
from zoneinfo import ZoneInfo

from lifecycle.policy import DURATION_UNITS_MS, CalendarPolicy, Duration

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MS = dt.timedelta(milliseconds=1)
#: Working intervals of this many local days are kept per calendar (about 22 years).
_DAYS_CACHED = 8192
#: The first and the last instant leadflow handles, epoch milliseconds (see the module docstring).
EARLIEST_MS: Final = 0
LATEST_MS: Final = 253_086_767_999_999
#: The last local date ``datetime`` can hold (9999-12-31).
_LAST_ORDINAL: Final = dt.date.max.toordinal()


def _ms_of_day(time: dt.time) -> int:
    return ((time.hour * 60 + time.minute) * 60 + time.second) * 1000 + time.microsecond // 1000


class BusinessCalendar:
    """Adds durations to instants and measures working time, by one :class:`CalendarPolicy`."""

    def __init__(self, policy: CalendarPolicy) -> None:
        if policy.day_start >= policy.day_end:
            raise ValueError(
                f"day_start {policy.day_start:%H:%M} must be before day_end {policy.day_end:%H:%M}"
            )
        if not policy.workdays:
            raise ValueError("a calendar needs at least one working day")
        self.policy = policy
        self._zone = ZoneInfo(policy.timezone)
        self._workdays = frozenset(policy.workdays)
        #: Length of one business day ("d" with business time), in milliseconds.
        self.workday_ms = _ms_of_day(policy.day_end) - _ms_of_day(policy.day_start)
        # Per instance, so each calendar keeps its own days; the calendar itself is cached.
        self._day_interval = functools.lru_cache(maxsize=_DAYS_CACHED)(self._compute_day_interval)

    def __repr__(self) -> str:
        return f"BusinessCalendar({self.policy!r})"

    def duration_ms(self, duration: Duration, business: bool) -> int:
        """The duration in milliseconds; a business day counts ``workday_ms``, not 24 hours."""
        if duration.unit == "d" and business:
            unit_ms = self.workday_ms
        else:
            unit_ms = DURATION_UNITS_MS[duration.unit]
        total = round(duration.amount * unit_ms)
        if total < 0:
            raise ValueError(f"negative duration {duration}")
        return total

    def add(self, start_ms: int, duration: Duration, business: bool) -> int:
        """The instant ``duration`` after ``start_ms``; with ``business`` only working time counts.

        Outside working hours the clock starts at the next working moment. A deadline that lands
        exactly at the end of a working day is that end, not the next morning.

        Clamped: a deadline that would fall after ``LATEST_MS`` (9989-12-31T23:59:59.999Z) is
        ``LATEST_MS``, so it never overflows the range of time; it fires when the clock reaches the
        end of the range. A policy whose deadlines can be more than
        ``schemas.policy_file.MAX_DEADLINE_DAYS`` after their start is refused at load, so only
        events near the end of the range meet the clamp.
        """
        remaining = self.duration_ms(duration, business)
        if not business:
            return min(start_ms + remaining, LATEST_MS)
        return self.add_working_ms(start_ms, remaining)

    def add_working_ms(self, start_ms: int, working_ms: int) -> int:
        """The instant when ``working_ms`` of working time have passed since ``start_ms``; at most
        ``LATEST_MS`` (clamped, as in :meth:`add`)."""
        if start_ms >= LATEST_MS:
            return LATEST_MS
        remaining = working_ms
        day = self._local_ordinal(start_ms)
        while day <= _LAST_ORDINAL:
            interval = self._day_interval(day)
            if interval is not None:
                begin, end = interval
                if begin >= LATEST_MS:
                    break
                if begin < start_ms:
                    begin = start_ms
                if begin < end:
                    available = end - begin
                    if remaining <= available:
                        return min(begin + remaining, LATEST_MS)
                    remaining -= available
            day += 1
        return LATEST_MS

    def working_ms_between(self, start_ms: int, end_ms: int) -> int:
        """Working time in ``[start_ms, end_ms)``; 0 when ``end_ms`` is not after ``start_ms``."""
        if end_ms <= start_ms:
            return 0
        total = 0
        last_day = self._local_ordinal(end_ms)
        for day in range(self._local_ordinal(start_ms), last_day + 1):
            interval = self._day_interval(day)
            if interval is not None:
                begin = max(interval[0], start_ms)
                end = min(interval[1], end_ms)
                if begin < end:
                    total += end - begin
        return total

    def is_working(self, at_ms: int) -> bool:
        """Whether ``at_ms`` falls in working time (the start of a day counts, its end does not)."""
        interval = self._day_interval(self._local_ordinal(at_ms))
        return interval is not None and interval[0] <= at_ms < interval[1]

    def _local_ordinal(self, at_ms: int) -> int:
        """The proleptic ordinal of the local date at ``at_ms``."""
        return (_EPOCH + at_ms * _MS).astimezone(self._zone).toordinal()

    def _compute_day_interval(self, ordinal: int) -> tuple[int, int] | None:
        """The working interval ``[begin, end)`` in epoch ms of a local date; None if not a workday.

        Each boundary is the first moment the local clock reads at or after it (``_boundary``); a
        day whose working hours collapse that way (both inside one spring-forward gap) has none.
        """
        date = dt.date.fromordinal(ordinal)
        if date.weekday() not in self._workdays or date in self.policy.holidays:
            return None
        begin_ms = self._boundary(date, self.policy.day_start)
        end_ms = self._boundary(date, self.policy.day_end)
        return (begin_ms, end_ms) if begin_ms < end_ms else None

    def _boundary(self, date: dt.date, time: dt.time) -> int:
        """The first instant (epoch ms) at which the local clock of ``date`` reads ``time`` or later.

        In a fall-back fold the wall time happens twice: the first occurrence (``fold=0``). In a
        spring-forward gap it never happens: the clock jumps from before it to after it, so the
        answer is the instant of the jump (zoneinfo's ``fold=0`` would read the time with the
        offset from before the jump, an instant the clock already shows later than ``time``).
        """
        local = dt.datetime.combine(date, time, tzinfo=self._zone)
        at_ms = (local - _EPOCH) // _MS
        if (_EPOCH + at_ms * _MS).astimezone(self._zone).replace(tzinfo=None) == local.replace(tzinfo=None):
            return at_ms  # the wall time exists (once, or first of two)
        # In the gap: the jump lies between this wall time read with the offset after it
        # (``fold=1``: an instant before the jump) and with the offset before it (``at_ms``).
        before = (local.replace(fold=1) - _EPOCH) // _MS
        offset = (_EPOCH + before * _MS).astimezone(self._zone).utcoffset()
        lo, hi = before, at_ms  # offset(lo) is the old one, offset(hi) the new one
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if (_EPOCH + mid * _MS).astimezone(self._zone).utcoffset() == offset:
                lo = mid
            else:
                hi = mid
        return hi


@functools.lru_cache(maxsize=256)
def calendar_for(policy: CalendarPolicy) -> BusinessCalendar:
    """The calendar of ``policy``, built once: its day intervals are cached inside it."""
    return BusinessCalendar(policy)
