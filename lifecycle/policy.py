"""The validated policy: scoring, the business calendar and SLA deadlines, every default built in.

The core only ever sees this frozen value; reading the TOML file and naming the file, line and key of
a mistake is ``schemas.policy_file``'s job.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import json
import re
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
    #: The first 12 hex digits of the SHA-256 of ``canonical_form(self)`` (SPEC 11): the same
    #: effective rules give the same version, whatever the file's layout, comments or name.
    policy_version: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "default_team", TeamPolicy(self.calendar, self.slas, self.lateness))
        digest = hashlib.sha256(canonical_form(self).encode("utf-8")).hexdigest()
        object.__setattr__(self, "policy_version", digest[:VERSION_DIGITS])

    def for_team(self, team: str | None) -> TeamPolicy:
        """The team's policy; an unknown or missing team works by the top-level calendar and SLAs."""
        found = self.teams.get(team) if team is not None else None
        return found if found is not None else self.default_team


# -- the policy's version (SPEC 11) -------------------------------------------------------------

VERSION_DIGITS: Final = 12
#: Fields that say where a policy came from or are derived from the others: not part of its rules.
_NOT_RULES: Final = frozenset({"source"})


def canonical_form(policy: Policy) -> str:
    """The effective rules of ``policy`` as one JSON text: every default filled in, keys sorted,
    sets sorted, durations in milliseconds (a business day stays a business day: its length is the
    calendar's), teams that change nothing left out. Two policies that judge every lead alike
    give the same text; the file's layout, comments and path never show.

    Every field of every policy dataclass is included unless it is ``source`` or not compared
    (derived ones such as ``default_team``), so a rule added to the policy later changes the
    version without a change here.
    """
    rules = _canonical(policy)
    default_team = _canonical(policy.default_team)
    rules["teams"] = {name: team for name, team in rules["teams"].items() if team != default_team}
    return json.dumps(rules, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _duration_ms(duration: Duration, business: bool) -> int | dict[str, float]:
    """Milliseconds; a business day is ``{"business_days": n}`` (its length depends on the calendar)."""
    if duration.unit == "d" and business:
        return {"business_days": _number(duration.amount)}
    return round(duration.amount * DURATION_UNITS_MS[duration.unit])


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def _canonical(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)
               if f.compare and f.name not in _NOT_RULES}
        if isinstance(value, SlaPolicy):
            out["within"] = _duration_ms(value.within, value.business)
            if value.escalate_after is not None:
                out["escalate_after"] = _duration_ms(value.escalate_after, value.business)
        elif isinstance(value, CalendarPolicy):
            out["workdays"] = [WEEKDAYS[day] for day in sorted(set(value.workdays))]
        return out
    if isinstance(value, Mapping):
        return {str(key): _canonical(item) for key, item in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted((_canonical(item) for item in value), key=lambda item: json.dumps(item, sort_keys=True))
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    if isinstance(value, enum.Enum):
        return _canonical(value.value)
    if isinstance(value, re.Pattern):
        return {"pattern": value.pattern, "flags": value.flags}
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return _number(value)
    raise TypeError(f"policy_version: no canonical form for {type(value).__name__} {value!r}")
