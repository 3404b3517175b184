"""The validated policy: scoring, the business calendar and SLA deadlines, every default built in.

The core only ever sees this frozen value; reading the TOML file and naming the file, line and key of
a mistake is ``schemas.policy_file``'s job.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Mapping


DURATION_UNITS_MS: Final = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class Duration:
    """``<number><unit>``. With ``business`` time, a day (``d``) is one working day of the calendar."""

    amount: float
    unit: str  # one of DURATION_UNITS_MS

    def scaled(self, fraction: float) -> Duration:
        return Duration(self.amount * fraction, self.unit)

    def __str__(self) -> str:
        amount = int(self.amount) if float(self.amount).is_integer() else self.amount
        return f"{amount}{self.unit}"


@dataclass(frozen=True, slots=True)
class SlaPolicy:
    within: Duration
    business: bool
    warn_at: float | None = None  # fraction of ``within``; None: no warning
    escalate_after: Duration | None = None  # after the breach, on the same clock; None: no escalation


@dataclass(frozen=True, slots=True)
class CalendarPolicy:
    timezone: str = "UTC"
    workdays: tuple[int, ...] = (0, 1, 2, 3, 4)  # Monday = 0, as datetime.weekday()
    day_start: dt.time = dt.time(9, 0)
    day_end: dt.time = dt.time(17, 0)
    holidays: frozenset[dt.date] = frozenset()


def frozen_map(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


DEFAULT_POINTS: Final = frozen_map(
    {
        "form_fill:content_download": 15,
        "form_fill:webinar": 20,
        "form_fill:*": 10,
        "email_engagement:open": 1,
        "email_engagement:click": 5,
        "email_engagement:reply": 15,
        "email_engagement:unsubscribe": -20,
    }
)


@dataclass(frozen=True, slots=True)
class Scoring:
    mql_threshold: int = 50
    hand_raisers: frozenset[str] = frozenset({"demo_request", "contact_us", "pricing"})
    points: Mapping[str, int] = field(default_factory=lambda: DEFAULT_POINTS)

    def points_for(self, event_type: str, qualifier: str) -> int:
        """Points for ``<event_type>:<qualifier>``, falling back to ``<event_type>:*``, else 0."""
        points = self.points.get(f"{event_type}:{qualifier}")
        if points is None:
            points = self.points.get(f"{event_type}:*", 0)
        return points

    def table(self, event_type: str) -> dict[str, int]:
        """``qualifier -> points`` memo for one event type, filled as qualifiers are met (hot path)."""
        return _PointsTable(self, event_type)


class _PointsTable(dict):
    """A dict that asks the scoring for a qualifier it has not seen yet, then remembers it."""

    def __init__(self, scoring: Scoring, event_type: str) -> None:
        super().__init__()
        self._scoring = scoring
        self._event_type = event_type

    def __missing__(self, qualifier: str) -> int:
        points = self[qualifier] = self._scoring.points_for(self._event_type, qualifier)
        return points


DEFAULT_SLAS: Final = frozen_map(
    {
        "assignment": SlaPolicy(Duration(15, "m"), business=False),
        "first_touch": SlaPolicy(
            Duration(4, "h"), business=True, warn_at=0.75, escalate_after=Duration(4, "h")
        ),
        "qualification": SlaPolicy(Duration(5, "d"), business=True),
        "opportunity": SlaPolicy(Duration(10, "d"), business=True),
        "nurture": SlaPolicy(Duration(7, "d"), business=False),
    }
)


@dataclass(frozen=True, slots=True)
class Lateness:
    """How long the clock waits for late evidence (SPEC 9); calendar time, in milliseconds.

    ``grace``: a timer alert whose threshold is T fires at T + grace unless evidence from before T
    arrived. ``reorder``: a lead's events are held until the clock passes their time + reorder and
    applied in event-time order. Timer alerts wait for the larger of the two.
    """

    grace_ms: int = 0
    reorder_ms: int = 0

    @property
    def delay_ms(self) -> int:
        return max(self.grace_ms, self.reorder_ms)


@dataclass(frozen=True, slots=True)
class TeamPolicy:
    """What a team works by: its calendar, its SLAs and its lateness (the defaults with the team's
    overrides)."""

    calendar: CalendarPolicy
    slas: Mapping[str, SlaPolicy]
    lateness: Lateness = Lateness()


#: A rule's condition: exactly one per rule (SPEC section 10).
CONDITIONS: Final = ("equals", "in", "at_least", "below", "matches")
#: The grade of fit points below every named grade's threshold; a policy cannot name it.
LOWEST_GRADE: Final = "D"
DEFAULT_GRADES: Final = frozen_map({"A": 60, "B": 40, "C": 20})

Operand = str | int | float


@dataclass(frozen=True, slots=True)
class GradingRule:
    """``points`` when the lead's latest value of ``field`` meets ``condition`` with ``operand``.

    ``equals``/``in``: a string operand is compared with string values exactly, a number with
    numeric values (and strings that read as numbers); ``at_least``/``below``: numbers, or strings
    that read as numbers; ``matches``: a regular expression (Python syntax) searched in the value's
    text. ``operand`` is a tuple for ``in``, else one value.
    """

    field: str
    condition: str  # one of CONDITIONS
    operand: Operand | tuple[Operand, ...]
    points: int


@dataclass(frozen=True, slots=True)
class Grading:
    """Fit: rules over the lead's merged ``fields``, grade thresholds, and the grade MQL needs.

    No rules: every lead's grade is null. ``grades``: name -> fit points it needs (distinct); below
    the lowest is ``LOWEST_GRADE``. ``minimum_for_mql``: a grade name or ``LOWEST_GRADE``; None lets
    every grade through.
    """

    rules: tuple[GradingRule, ...] = ()
    grades: Mapping[str, int] = field(default_factory=lambda: DEFAULT_GRADES)
    minimum_for_mql: str | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    scoring: Scoring = field(default_factory=Scoring)
    calendar: CalendarPolicy = field(default_factory=CalendarPolicy)
    slas: Mapping[str, SlaPolicy] = field(default_factory=lambda: DEFAULT_SLAS)
    teams: Mapping[str, TeamPolicy] = field(default_factory=lambda: frozen_map({}))
    source: str = "<built-in defaults>"
    lateness: Lateness = Lateness()
    grading: Grading = field(default_factory=Grading)
    #: What a team without its own section works by; built once, ``for_team`` runs per event.
    default_team: TeamPolicy = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "default_team", TeamPolicy(self.calendar, self.slas, self.lateness))

    def for_team(self, team: str | None) -> TeamPolicy:
        """The team's policy; an unknown or missing team works by the top-level calendar and SLAs."""
        found = self.teams.get(team) if team is not None else None
        return found if found is not None else self.default_team
