"""Attribution and fit (SPEC section 10): the channel and campaign of a marketing event, a lead's
merged ``fields``, its fit points and its grade. Pure: no I/O, no clock.

A *marketing event* is a ``form_fill`` or an ``email_engagement``. Its channel is ``utm_medium`` when
present (an empty string counts as absent), else ``form`` / ``email``; its campaign is
``utm_campaign`` when present, else the form's ``form_id`` or the email's ``campaign_id``, else None.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from lifecycle.events import EmailEngaged, FieldValue, Fields, FormFilled, LeadEvent
from lifecycle.policy import LOWEST_GRADE, Grading, GradingRule, Operand

#: The most distinct field names a lead keeps. Once it holds this many, a value for a name it does
#: not hold yet is dropped (truncation, not a dead letter: the event itself was valid); names it
#: holds keep taking later values.
MAX_LEAD_FIELDS: Final = 64


def channel_of(event: LeadEvent) -> str | None:
    """The channel of a marketing event; None for any other event."""
    kind = type(event)
    if kind is FormFilled:
        return event.utm_medium or "form"  # type: ignore[attr-defined]
    if kind is EmailEngaged:
        return "email"
    return None


def campaign_of(event: LeadEvent) -> str | None:
    """The campaign of a marketing event (None when it names none, and for any other event)."""
    kind = type(event)
    if kind is FormFilled:
        return event.utm_campaign or event.form_id or None  # type: ignore[attr-defined]
    if kind is EmailEngaged:
        return event.campaign_id or None  # type: ignore[attr-defined]
    return None


def merge_fields(held: Fields, new: Fields) -> Fields:
    """``held`` with the values of ``new`` over it (later wins), at most ``MAX_LEAD_FIELDS`` names,
    in the order the names first came."""
    if not new:
        return held
    merged = dict(held)
    if len(merged) + len(new) <= MAX_LEAD_FIELDS:
        merged.update(new)
    else:
        for name, value in new:
            if name in merged or len(merged) < MAX_LEAD_FIELDS:
                merged[name] = value
    return tuple(merged.items())


#: (name, value) pairs of leads' fields, each kept once: most values come from small vocabularies
#: (country, industry, title), so leads share their pairs instead of holding ~60 bytes of
#: copies each (~400 bytes a lead in replay). Bounded: emptied when it reaches this many.
_PAIRS_MAX = 16_384
_pairs: dict[tuple[str, FieldValue], tuple[str, FieldValue]] = {}  # a pair -> the one kept


def shared_pairs(fields: Fields) -> Fields:
    """``fields`` with each pair replaced by an equal one already held, when there is one."""
    pairs = _pairs
    if len(pairs) + len(fields) > _PAIRS_MAX:
        pairs.clear()
    out = []
    for pair in fields:
        kind = type(pair[1])
        # only strings and ints: equal ones are indistinguishable (1.0 == 1 == True, -0.0 == 0.0)
        if kind is str or kind is int:
            kept = pairs.get(pair)
            if kept is None or type(kept[1]) is not kind:
                kept = pairs[pair] = pair
            pair = kept
        out.append(pair)
    return tuple(out)


def as_number(value: FieldValue) -> float | None:
    """A number, or a string that reads as one (``" 1200 "``); None otherwise."""
    if type(value) is str:
        try:
            return float(value.strip())
        except ValueError:
            return None
    return value  # type: ignore[return-value]


def _equals(operand: Operand) -> Callable[[FieldValue], bool]:
    if type(operand) is str:
        return lambda value: value == operand
    return lambda value: as_number(value) == operand


def rule_test(rule: GradingRule) -> Callable[[FieldValue], bool]:
    """Whether a field value meets the rule's condition."""
    condition, operand = rule.condition, rule.operand
    if condition == "equals":
        return _equals(operand)  # type: ignore[arg-type]
    if condition == "in":
        tests = [_equals(o) for o in operand]  # type: ignore[union-attr]
        return lambda value: any(test(value) for test in tests)
    if condition == "at_least":
        return lambda value: (n := as_number(value)) is not None and n >= operand  # type: ignore[operator]
    if condition == "below":
        return lambda value: (n := as_number(value)) is not None and n < operand  # type: ignore[operator]
    if condition == "matches":
        search = re.compile(operand).search  # type: ignore[arg-type]
        return lambda value: search(value if type(value) is str else str(value)) is not None
    raise ValueError(f"unknown condition {condition!r}")


class Grader:
    """A policy's ``[grading]``, compiled once per engine: rule tests, and grades by threshold."""

    def __init__(self, grading: Grading) -> None:
        self.active = bool(grading.rules)
        self._rules = tuple((rule.field, rule_test(rule), rule.points) for rule in grading.rules)
        #: (grade, points it needs), highest first; below the last is LOWEST_GRADE
        self.ladder = tuple(sorted(grading.grades.items(), key=lambda item: -item[1]))
        self._rank = {name: i for i, (name, _) in enumerate(self.ladder)}
        self._rank[LOWEST_GRADE] = len(self.ladder)
        self.minimum = grading.minimum_for_mql

    def fit_points(self, fields: Fields) -> int:
        """The sum of the points of every rule that holds for the field's value."""
        values = dict(fields)
        total = 0
        for name, test, points in self._rules:
            value = values.get(name)
            if value is not None and test(value):
                total += points
        return total

    def grade(self, points: int) -> str | None:
        """The grade of ``points`` fit points; None when the policy has no rules."""
        if not self.active:
            return None
        for name, needs in self.ladder:
            if points >= needs:
                return name
        return LOWEST_GRADE

    def rank(self, grade: str) -> int:
        """0 for the best grade; larger is worse."""
        return self._rank[grade]

    def allows_mql(self, grade: str | None) -> bool:
        """Whether a lead of ``grade`` may enter ``mql`` (``minimum_for_mql``; no minimum: always)."""
        if self.minimum is None or grade is None:
            return True
        return self._rank.get(grade, len(self.ladder)) <= self._rank[self.minimum]
