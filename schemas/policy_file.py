"""Reading the policy file (TOML) into a validated :class:`~lifecycle.policy.Policy`.

A file that cannot be used raises :class:`~lifecycle.errors.PolicyError` naming the file, the line
and the key; the core never sees the file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import math
import os
import re
import tomllib
import zoneinfo
from typing import Any, Final, Mapping

from lifecycle.calendar import BusinessCalendar
from lifecycle.errors import PolicyError
from lifecycle.events import EMAIL_ACTIONS, EMAIL_ENGAGEMENT, FORM_FILL, MAX_FIELD_NAME
from lifecycle.slas import SLA_NAMES
from lifecycle.policy import (
    CONDITIONS,
    DEFAULT_GRADES,
    DEFAULT_POINTS,
    DEFAULT_SLAS,
    DURATION_UNITS_MS,
    LOWEST_GRADE,
    WEEKDAYS,
    CalendarPolicy,
    Duration,
    Grading,
    GradingRule,
    Lateness,
    Policy,
    Scoring,
    SlaPolicy,
    TeamPolicy,
    frozen_map,
)

# --- Loading a policy file (SPEC section 7) -------------------------------------------------------

#: The longest duration a policy may name: beyond it a deadline is a typo, and business-time
#: arithmetic walks the calendar day by day.
MAX_DURATION_MS: Final = 3650 * DURATION_UNITS_MS["d"]
#: Every deadline of an SLA instance (its escalation included) falls at most this many days after
#: the instance starts, in the worst case of its calendar: a policy that could do otherwise is
#: refused at load (business time on a calendar of one minute a week takes millennia). Deadlines
#: near the end of the range of time are clamped (``lifecycle.calendar.LATEST_MS``).
MAX_DEADLINE_DAYS: Final = 3650
#: Arrays and inline tables nested deeper than this are refused (a policy needs three levels).
MAX_NESTING: Final = 64
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_CLOCK_TIME = re.compile(r"(\d{2}):(\d{2})")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_INDEX = re.compile(r"\[\d+\]")  # a path part naming the n-th table of an array of tables
_TOML_ERROR_AT = re.compile(r"\s*\(at line (\d+), column \d+\)$")
_TOML_ERROR_AT_END = re.compile(r"\s*\(at end of document\)$")

_TOP_KEYS: Final = ("scoring", "calendar", "sla", "teams", "lateness", "grading")
_LATENESS_KEYS: Final = ("grace", "reorder")
_GRADING_KEYS: Final = ("minimum_for_mql", "grades", "rules")
_RULE_KEYS: Final = ("field", *CONDITIONS, "points")
_SCORING_KEYS: Final = ("mql_threshold", "hand_raisers", "points")
_CALENDAR_KEYS: Final = ("timezone", "workdays", "day_start", "day_end", "holidays")
_SLA_KEYS: Final = ("within", "business", "warn_at", "escalate_after")
_TEAM_KEYS: Final = ("calendar", "sla", "lateness")
_POINTS_EVENT_TYPES: Final = (FORM_FILL, EMAIL_ENGAGEMENT)

_Path = tuple[str, ...]


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """The policy in the TOML file at ``path``; a file that cannot be used raises PolicyError."""
    file = os.fspath(path)
    try:
        with open(file, "rb") as stream:
            data = stream.read()
    except OSError as exc:
        raise PolicyError(file, None, None, f"cannot read: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PolicyError(
            file, line, None, f"not UTF-8 text (byte {exc.start}); save the policy as UTF-8"
        ) from exc
    return parse_policy(text, file)


def parse_policy(text: str, file: str = "<policy>") -> Policy:
    """The policy in TOML ``text``; ``file`` only names where it came from in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(exc, text, file) from exc
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise PolicyError(file, _too_deep_line(text), None,
                          f"arrays or inline tables nested more than {MAX_NESTING} deep") from None
    return _PolicyReader(text, file).read(data)


def _too_deep_line(text: str) -> int | None:
    """The line where brackets and braces (outside strings and comments) first nest deeper than
    ``MAX_NESTING``; None if they never do."""
    depth, line = 0, 1
    for match in _TOKEN.finditer(text):
        token = match.group()
        if match.lastgroup == "punct" and token in "[{":
            depth += 1
            if depth > MAX_NESTING:
                return line
        elif match.lastgroup == "punct" and token in "]}":
            depth = max(0, depth - 1)
        line += token.count("\n")
    return None


def _syntax_error(exc: tomllib.TOMLDecodeError, text: str, file: str) -> PolicyError:
    message = str(exc)
    at = _TOML_ERROR_AT.search(message)
    if at is not None:
        return PolicyError(file, int(at.group(1)), None, f"invalid TOML: {message[: at.start()]}")
    at_end = _TOML_ERROR_AT_END.search(message)
    if at_end is not None:
        line = text.count("\n") + (0 if text.endswith("\n") else 1)
        return PolicyError(file, max(line, 1), None, f"invalid TOML: {message[: at_end.start()]}")
    return PolicyError(file, None, None, f"invalid TOML: {message}")


def dotted(path: _Path) -> str:
    """A key path as written in TOML: ``sla.first_touch.within``, ``scoring.points."form_fill:*"``;
    the n-th table of an array of tables (from 1) as ``grading.rules[2].matches``."""
    out = ""
    for part in path:
        if _INDEX.fullmatch(part):
            out += part
        else:
            out += ("." if out else "") + (part if _BARE_KEY.fullmatch(part) else _quoted(part))
    return out


def _quoted(part: str) -> str:
    return '"' + part.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _PolicyReader:
    """Checks parsed TOML against the schema; every refusal names the file, the line and the key."""

    def __init__(self, text: str, file: str) -> None:
        self.text = text
        self.file = file
        self._key_lines: dict[_Path, int] | None = None  # located only when an error needs it

    def fail(self, path: _Path, problem: str) -> PolicyError:
        if self._key_lines is None:
            try:
                self._key_lines = key_lines(self.text)
            except RecursionError:  # deeply nested values: the error still names file and key
                self._key_lines = {}
        line = None
        for length in range(len(path), 0, -1):
            line = self._key_lines.get(path[:length])
            if line is not None:
                break
        return PolicyError(self.file, line, dotted(path) or None, problem)

    def read(self, data: dict[str, Any]) -> Policy:
        self.table(data, (), _TOP_KEYS)
        scoring = self.scoring(data.get("scoring", {}), ("scoring",))
        calendar = self.calendar(CalendarPolicy(), data.get("calendar", {}), ("calendar",))
        slas = self.slas(DEFAULT_SLAS, data.get("sla", {}), ("sla",))
        lateness = self.lateness(Lateness(), data.get("lateness", {}), ("lateness",), _LATENESS_KEYS)
        self.deadlines_in_range(calendar, slas, ("sla",))
        teams: dict[str, TeamPolicy] = {}
        for team, section in self.table(data.get("teams", {}), ("teams",)).items():
            path = ("teams", team)
            self.table(section, path, _TEAM_KEYS)
            teams[team] = TeamPolicy(
                self.calendar(calendar, section.get("calendar", {}), (*path, "calendar")),
                self.slas(slas, section.get("sla", {}), (*path, "sla")),
                # a lead's events are held before its team is known: reorder is deployment-wide
                self.lateness(lateness, section.get("lateness", {}), (*path, "lateness"), ("grace",)),
            )
            self.deadlines_in_range(teams[team].calendar, teams[team].slas, (*path, "sla"))
        grading = self.grading(data.get("grading", {}), ("grading",))
        return Policy(scoring, calendar, slas, frozen_map(teams), source=self.file, lateness=lateness,
                      grading=grading)

    def lateness(self, base: Lateness, section: Any, path: _Path, keys: tuple[str, ...]) -> Lateness:
        changes = {f"{key}_ms": self.calendar_ms(value, (*path, key))
                   for key, value in self.table(section, path, keys).items()}
        return dataclasses.replace(base, **changes)

    def calendar_ms(self, value: Any, path: _Path) -> int:
        """A calendar duration that may be zero (``"0s"``), in milliseconds."""
        if isinstance(value, str) and _DURATION.fullmatch(value) and float(_DURATION.fullmatch(value).group(1)) == 0:
            return 0
        duration = self.duration(value, path)
        return round(duration.amount * DURATION_UNITS_MS[duration.unit])

    def deadlines_in_range(self, calendar: CalendarPolicy, slas: Mapping[str, SlaPolicy], path: _Path) -> None:
        """Refuse an SLA whose last deadline can fall more than ``MAX_DEADLINE_DAYS`` after its start
        in ``calendar``: the worst case counts whole weeks of the calendar's working time, one week
        more for where in a week the SLA starts, and every holiday."""
        business_calendar = BusinessCalendar(calendar)
        week_ms = len(calendar.workdays) * business_calendar.workday_ms
        for name, sla in slas.items():
            steps = [sla.within] + ([sla.escalate_after] if sla.escalate_after is not None else [])
            total_ms = sum(business_calendar.duration_ms(step, sla.business) for step in steps)
            if sla.business:
                days = math.ceil(total_ms / week_ms * 7) + 7 + len(calendar.holidays)
            else:
                days = math.ceil(total_ms / DURATION_UNITS_MS["d"])
            if days > MAX_DEADLINE_DAYS:
                clock = "business time" if sla.business else "calendar time"
                shown = " + ".join(str(step) for step in steps)
                raise self.fail((*path, name, "within"),
                                f"{shown} of {clock} can end {days:,} days after the SLA starts in this "
                                f"calendar; every deadline must fall within {MAX_DEADLINE_DAYS} days "
                                "(shorten the SLA or widen the working hours)")

    def table(self, value: Any, path: _Path, keys: tuple[str, ...] | None = None) -> dict:
        if not isinstance(value, dict):
            raise self.fail(path, f"must be a table, not {_type_name(value)}")
        if keys is not None:
            for key in value:
                if key not in keys:
                    raise self.fail((*path, key), _unknown("key", key, keys))
        return value

    def scoring(self, section: Any, path: _Path) -> Scoring:
        self.table(section, path, _SCORING_KEYS)
        changes: dict[str, Any] = {}
        if "mql_threshold" in section:
            changes["mql_threshold"] = self.integer(section["mql_threshold"], (*path, "mql_threshold"))
        if "hand_raisers" in section:
            key = (*path, "hand_raisers")
            forms = section["hand_raisers"]
            if not isinstance(forms, list) or not all(isinstance(f, str) and f for f in forms):
                raise self.fail(key, "must be a list of form types (non-empty strings)")
            changes["hand_raisers"] = frozenset(forms)
        if "points" in section:
            changes["points"] = self.points(section["points"], (*path, "points"))
        return dataclasses.replace(Scoring(), **changes)

    def points(self, section: Any, path: _Path) -> Mapping[str, int]:
        points = dict(DEFAULT_POINTS)
        for name, value in self.table(section, path).items():
            key = (*path, name)
            event_type, colon, qualifier = name.partition(":")
            if not colon or not qualifier:
                raise self.fail(key, 'expected "<event_type>:<form_type or action>" (or ":*")')
            if event_type not in _POINTS_EVENT_TYPES:
                raise self.fail(key, _unknown("event type", event_type, _POINTS_EVENT_TYPES))
            actions = (*sorted(EMAIL_ACTIONS), "*")
            if event_type == EMAIL_ENGAGEMENT and qualifier not in actions:
                raise self.fail(key, _unknown("email action", qualifier, actions))
            points[name] = self.integer(value, key)
        return frozen_map(points)

    def calendar(self, base: CalendarPolicy, section: Any, path: _Path) -> CalendarPolicy:
        """``base`` with the keys of ``section`` replaced, checked as a whole."""
        self.table(section, path, _CALENDAR_KEYS)
        changes: dict[str, Any] = {}
        for key, value in section.items():
            changes[key] = getattr(self, f"calendar_{key}")(value, (*path, key))
        calendar = dataclasses.replace(base, **changes)
        try:
            BusinessCalendar(calendar)
        except ValueError as exc:
            given = [key for key in ("day_end", "day_start") if key in section]
            raise self.fail((*path, given[0]) if given else path, str(exc)) from exc
        return calendar

    def calendar_timezone(self, value: Any, path: _Path) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"must be an IANA time zone name, not {_type_name(value)}")
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise self.fail(path, f"unknown time zone {value!r} (expected e.g. 'Europe/Berlin')")
        return value

    def calendar_workdays(self, value: Any, path: _Path) -> tuple[int, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail(path, f"must be a non-empty list of weekdays ({', '.join(WEEKDAYS)})")
        days = set()
        for day in value:
            name = day.lower() if isinstance(day, str) else day
            if name not in WEEKDAYS:
                raise self.fail(path, _unknown("weekday", str(day), WEEKDAYS))
            days.add(WEEKDAYS.index(name))
        return tuple(sorted(days))

    def calendar_day_start(self, value: Any, path: _Path) -> dt.time:
        return self.clock_time(value, path)

    def calendar_day_end(self, value: Any, path: _Path) -> dt.time:
        return self.clock_time(value, path)

    def calendar_holidays(self, value: Any, path: _Path) -> frozenset[dt.date]:
        if not isinstance(value, list):
            raise self.fail(path, "must be a list of ISO dates, e.g. [\"2026-12-25\"]")
        dates = set()
        for day in value:
            date = _iso_date(day)
            if date is None:
                raise self.fail(path, f"{day!r} is not an ISO date (YYYY-MM-DD)")
            dates.add(date)
        return frozenset(dates)

    def clock_time(self, value: Any, path: _Path) -> dt.time:
        if isinstance(value, dt.time):
            return value
        match = _CLOCK_TIME.fullmatch(value) if isinstance(value, str) else None
        if match is None or int(match.group(1)) > 23 or int(match.group(2)) > 59:
            raise self.fail(path, f"{value!r} is not a local time \"HH:MM\" (00:00 to 23:59)")
        return dt.time(int(match.group(1)), int(match.group(2)))

    def slas(
        self, base: Mapping[str, SlaPolicy], section: Any, path: _Path
    ) -> Mapping[str, SlaPolicy]:
        """``base`` with each named SLA's given keys replaced; the other keys stay as in ``base``."""
        slas = dict(base)
        for name, override in self.table(section, path).items():
            key = (*path, name)
            if name not in SLA_NAMES:
                raise self.fail(key, _unknown("SLA", name, SLA_NAMES))
            self.table(override, key, _SLA_KEYS)
            changes = {k: getattr(self, f"sla_{k}")(v, (*key, k)) for k, v in override.items()}
            slas[name] = dataclasses.replace(base[name], **changes)
        return frozen_map(slas)

    def sla_within(self, value: Any, path: _Path) -> Duration:
        return self.duration(value, path)

    def sla_business(self, value: Any, path: _Path) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"must be true or false, not {_type_name(value)}")
        return value

    def sla_warn_at(self, value: Any, path: _Path) -> float | None:
        if value is False:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            problem = f"must be a fraction between 0 and 1 (exclusive), or false; got {value!r}"
            raise self.fail(path, problem)
        return value

    def sla_escalate_after(self, value: Any, path: _Path) -> Duration | None:
        return None if value is False else self.duration(value, path)

    def duration(self, value: Any, path: _Path) -> Duration:
        match = _DURATION.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            problem = 'is not a duration: <number><unit>, unit s, m, h or d (e.g. "4h")'
            raise self.fail(path, f"{value!r} {problem}")
        amount = float(match.group(1))
        unit = match.group(2)
        if amount <= 0:
            raise self.fail(path, f"{value!r}: a duration must be greater than 0")
        if amount * DURATION_UNITS_MS[unit] > MAX_DURATION_MS:
            raise self.fail(path, f"{value!r}: a duration must be at most 3650d")
        return Duration(int(amount) if amount.is_integer() else amount, unit)

    def grading(self, section: Any, path: _Path) -> Grading:
        """``[grading]``: rules (each a field, exactly one condition, points), grades, minimum_for_mql."""
        self.table(section, path, _GRADING_KEYS)
        grades = DEFAULT_GRADES
        if "grades" in section:
            grades = self.grades(section["grades"], (*path, "grades"))
        rules: list[GradingRule] = []
        if "rules" in section:
            listed = section["rules"]
            if not isinstance(listed, list):
                raise self.fail((*path, "rules"), "must be an array of tables ([[grading.rules]])")
            rules = [self.rule(rule, (*path, "rules", f"[{n}]")) for n, rule in enumerate(listed, 1)]
        minimum = None
        if "minimum_for_mql" in section:
            key = (*path, "minimum_for_mql")
            minimum = section["minimum_for_mql"]
            known = (*grades, LOWEST_GRADE)
            if not isinstance(minimum, str) or minimum not in known:
                raise self.fail(key, _unknown("grade", str(minimum), tuple(known)))
            if not rules:
                raise self.fail(key, "needs at least one [[grading.rules]]: without rules no lead has a grade")
        return Grading(tuple(rules), grades, minimum)

    def grades(self, section: Any, path: _Path) -> Mapping[str, int]:
        grades: dict[str, int] = {}
        for name, needs in self.table(section, path).items():
            key = (*path, name)
            if name == LOWEST_GRADE:
                raise self.fail(key, f"{LOWEST_GRADE!r} is the grade below the lowest one named; do not name it")
            points = self.integer(needs, key)
            same = [other for other, p in grades.items() if p == points]
            if same:
                raise self.fail(key, f"needs {points} fit points, like grade {same[0]!r}: each grade needs its own")
            grades[name] = points
        if not grades:
            raise self.fail(path, "names no grade (e.g. A = 60)")
        return frozen_map(grades)

    def rule(self, rule: Any, path: _Path) -> GradingRule:
        self.table(rule, path, _RULE_KEYS)
        name = rule.get("field")
        if not isinstance(name, str) or not 0 < len(name) <= MAX_FIELD_NAME:
            raise self.fail((*path, "field") if "field" in rule else path,
                            f"needs field = \"<name>\" (1 to {MAX_FIELD_NAME} characters)")
        given = [c for c in CONDITIONS if c in rule]
        if len(given) != 1:
            what = "no condition" if not given else f"{len(given)} conditions ({', '.join(given)})"
            key = (*path, given[1]) if len(given) > 1 else path
            raise self.fail(key, f"has {what}; a rule needs exactly one of {', '.join(CONDITIONS)}")
        condition = given[0]
        key = (*path, condition)
        operand = getattr(self, f"rule_{condition}")(rule[condition], key)
        if "points" not in rule:
            raise self.fail(path, "needs points = <integer>")
        return GradingRule(name, condition, operand, self.integer(rule["points"], (*path, "points")))

    def rule_equals(self, value: Any, path: _Path) -> str | int | float:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.fail(path, f"must be a string or a number, not {_type_name(value)}")
        return value

    def rule_in(self, value: Any, path: _Path) -> tuple[str | int | float, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail(path, "must be a non-empty list of strings or numbers")
        return tuple(self.rule_equals(item, path) for item in value)

    def rule_at_least(self, value: Any, path: _Path) -> int | float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(path, f"must be a number, not {_type_name(value)}")
        return value

    def rule_below(self, value: Any, path: _Path) -> int | float:
        return self.rule_at_least(value, path)

    def rule_matches(self, value: Any, path: _Path) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"must be a regular expression in a string, not {_type_name(value)}")
        try:
            re.compile(value)
        except re.error as exc:
            raise self.fail(path, f"bad regular expression {value!r}: {exc}") from None
        return value

    def integer(self, value: Any, path: _Path) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"must be an integer, not {_type_name(value)}")
        return value


def _iso_date(value: Any) -> dt.date | None:
    """A TOML local date, or a string "YYYY-MM-DD"; None for anything else."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _unknown(what: str, name: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {what} {name!r}{hint} (expected one of: {', '.join(known)})"


def _type_name(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list"}
    names.update({dict: "a table", dt.datetime: "a date-time", dt.date: "a date", dt.time: "a time"})
    return names.get(type(value), type(value).__name__)


# --- Locating keys: tomllib gives no line numbers ----------------------------------------------

_TOKEN = re.compile(
    r'''
     (?P<space>[ \t]+)
    |(?P<comment>\#[^\n]*)
    |(?P<newline>\r?\n)
    |(?P<string>"""(?:\\.|[^\\])*?"""(?!")|'\'\'[\s\S]*?\'\'\'(?!')|"(?:\\.|[^"\\\n])*"|'[^'\n]*')
    |(?P<punct>[\[\]{}=,.])
    |(?P<bare>[A-Za-z0-9_+:-]+)
    |(?P<other>.)
    ''',
    re.VERBOSE,
)


def key_lines(text: str) -> dict[_Path, int]:
    """The line (from 1) where each key path is written: table headers, keys, dotted keys, and
    keys inside inline tables; the n-th table of an array of tables ``[[a.b]]`` is ``("a", "b", "[n]")``.
    ``text`` must be valid TOML. Keys inside (inline) arrays are not located."""
    return _KeyLocator(text).locate()


class _KeyLocator:
    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str, int]] = []  # (kind, text, line)
        line = 1
        for match in _TOKEN.finditer(text):
            kind = match.lastgroup or "other"
            if kind not in ("space", "comment"):
                self.tokens.append((kind, match.group(), line))
            line += match.group().count("\n")
        self.tokens.append(("end", "", line))
        self.at = 0
        self.lines: dict[_Path, int] = {}

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.at]

    def take(self) -> tuple[str, str, int]:
        token = self.tokens[self.at]
        self.at = min(self.at + 1, len(self.tokens) - 1)
        return token

    def locate(self) -> dict[_Path, int]:
        table: _Path = ()
        tables: dict[_Path, int] = {}  # tables of each array of tables so far
        while self.peek()[0] != "end":
            kind, text, line = self.peek()
            if kind == "newline":
                self.take()
            elif text == "[":
                brackets = 0
                while self.peek()[1] == "[":
                    self.take()
                    brackets += 1
                table = self.key()
                self.lines.setdefault(table, line)
                if brackets == 2:  # [[array.of.tables]]: its n-th table is (*path, "[n]")
                    tables[table] = tables.get(table, 0) + 1
                    table = (*table, f"[{tables[table]}]")
                    self.lines.setdefault(table, line)
                self.skip_line()
            else:
                path = (*table, *self.key())
                self.lines.setdefault(path, line)
                self.take()  # "="
                self.value(path)
                self.skip_line()
        return self.lines

    def skip_line(self) -> None:
        while self.peek()[0] not in ("newline", "end"):
            self.take()

    def key(self) -> _Path:
        parts = [self.part(self.take())]
        while self.peek()[1] == ".":
            self.take()
            parts.append(self.part(self.take()))
        return tuple(parts)

    @staticmethod
    def part(token: tuple[str, str, int]) -> str:
        kind, text, _ = token
        if kind == "string":
            return text[1:-1] if text.startswith("'") else tomllib.loads(f"k = {text}")["k"]
        return text

    def value(self, path: _Path | None) -> None:
        """Skip one value, noting the keys of inline tables under ``path`` (None: not noted)."""
        kind, text, line = self.take()
        if text == "{":
            while self.peek()[1] != "}" and self.peek()[0] != "end":
                if self.peek()[1] == "," or self.peek()[0] == "newline":
                    self.take()
                    continue
                line = self.peek()[2]
                inner = self.key()
                inner_path = None if path is None else (*path, *inner)
                if inner_path is not None:
                    self.lines.setdefault(inner_path, line)
                self.take()  # "="
                self.value(inner_path)
            self.take()
        elif text == "[":
            while self.peek()[1] != "]" and self.peek()[0] != "end":
                if self.peek()[1] == "," or self.peek()[0] == "newline":
                    self.take()
                    continue
                self.value(None)
            self.take()
        else:
            while self.peek()[0] not in ("newline", "end") and self.peek()[1] not in (",", "}", "]"):
                self.take()
