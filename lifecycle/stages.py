"""Lifecycle stages and the one shared state machine that moves every lead.

The transition table lives in a single ``transitions.Machine`` built once at import. Leads do not
become models of the machine (``add_model`` costs ~260 µs and keeps the lead alive): a single
:class:`_Cursor` model is pointed at a lead's stage, triggered, and read back.
"""

from __future__ import annotations

import enum
from typing import Final

from transitions import Machine


class Stage(str, enum.Enum):
    NEW = "new"
    ENGAGED = "engaged"
    MQL = "mql"
    SAL = "sal"
    SQL = "sql"
    OPPORTUNITY = "opportunity"
    CUSTOMER = "customer"
    RECYCLED = "recycled"
    DISQUALIFIED = "disqualified"

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.value


#: The demand waterfall, in order; ``skipped_stages`` are the stages of this path a jump passes over.
MAIN_PATH: Final = (
    Stage.NEW,
    Stage.ENGAGED,
    Stage.MQL,
    Stage.SAL,
    Stage.SQL,
    Stage.OPPORTUNITY,
    Stage.CUSTOMER,
)
TERMINAL: Final = frozenset({Stage.CUSTOMER, Stage.DISQUALIFIED})
OPEN: Final = tuple(s for s in Stage if s not in TERMINAL)
_POSITION: Final = {stage: i for i, stage in enumerate(MAIN_PATH)}


class Trigger(str, enum.Enum):
    """What an event asks of the machine; the engine classifies each event into at most one."""

    ENGAGE = "engage"  # scored activity
    REACH_THRESHOLD = "reach_threshold"  # the score reached the MQL threshold
    HAND_RAISE = "hand_raise"  # form_fill with a hand-raiser form type
    TOUCH = "touch"  # sales_touch
    ACCEPT = "accept"
    QUALIFY = "qualify"
    REJECT = "reject"
    DISQUALIFY = "disqualify"
    OPEN_DEAL = "open_deal"  # deal_stage_change to created/discovery/proposal/negotiation
    WIN_DEAL = "win_deal"  # deal_stage_change closed_won
    LOSE_DEAL = "lose_deal"  # deal_stage_change closed_lost


_S = Stage
TRANSITIONS: Final = (
    (Trigger.ENGAGE, (_S.NEW, _S.RECYCLED), _S.ENGAGED),
    (Trigger.REACH_THRESHOLD, (_S.NEW, _S.ENGAGED, _S.RECYCLED), _S.MQL),
    (Trigger.HAND_RAISE, (_S.NEW, _S.ENGAGED, _S.RECYCLED), _S.MQL),
    (Trigger.TOUCH, (_S.MQL,), _S.SAL),
    (Trigger.ACCEPT, (_S.MQL,), _S.SAL),
    (Trigger.QUALIFY, (_S.MQL, _S.SAL), _S.SQL),
    (Trigger.REJECT, (_S.MQL, _S.SAL, _S.SQL), _S.RECYCLED),
    (Trigger.DISQUALIFY, OPEN, _S.DISQUALIFIED),
    (Trigger.OPEN_DEAL, (_S.NEW, _S.ENGAGED, _S.MQL, _S.SAL, _S.SQL), _S.OPPORTUNITY),
    (Trigger.WIN_DEAL, OPEN, _S.CUSTOMER),
    (Trigger.LOSE_DEAL, (_S.OPPORTUNITY,), _S.RECYCLED),
)


class _Cursor:
    """The machine's only model: it holds the stage (by name) of whichever lead is being moved."""

    state: str


_CURSOR: Final = _Cursor()
# States are the stages' string values: transitions handles Enum states through properties that cost
# more than the rest of a trigger, and the engine maps names back to ``Stage`` with one dict lookup.
MACHINE: Final = Machine(
    model=_CURSOR,
    states=[stage.value for stage in Stage],
    transitions=[
        {"trigger": trigger.value, "source": [s.value for s in sources], "dest": dest.value}
        for trigger, sources, dest in TRANSITIONS
    ],
    initial=Stage.NEW.value,
    auto_transitions=False,
    ignore_invalid_triggers=True,
)
_BY_VALUE: Final = {stage.value: stage for stage in Stage}

# (stage, trigger) pairs that move a lead, read off the machine once, so that events that move
# nothing (the common case) cost a set lookup instead of a trigger call.
_MOVES: Final = {
    (_BY_VALUE[source], Trigger(name)): name
    for name, event in MACHINE.events.items()
    for source in event.transitions
}


def move(stage: Stage, trigger: Trigger) -> Stage | None:
    """The stage ``trigger`` takes a lead in ``stage`` to, or ``None`` when it moves nothing."""
    name = _MOVES.get((stage, trigger))
    if name is None:
        return None
    _CURSOR.state = stage._value_
    getattr(_CURSOR, "trigger")(name)
    return _BY_VALUE[_CURSOR.state]


def skipped_stages(source: Stage, dest: Stage) -> tuple[Stage, ...]:
    """Stages of the main path strictly between ``source`` and ``dest`` (empty off the main path)."""
    lo = _POSITION.get(source)
    hi = _POSITION.get(dest)
    if lo is None or hi is None or hi <= lo + 1:
        return ()
    return MAIN_PATH[lo + 1 : hi]


#: (source, dest) -> the skipped stages' names, as lifecycle records carry them.
SKIPPED_NAMES: Final = {
    (source, dest): tuple(s.value for s in skipped_stages(source, dest)) for source in Stage for dest in Stage
}
