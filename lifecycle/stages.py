"""Lifecycle stages and the one shared state machine that moves every lead.

The transition table lives in a single ``transitions.Machine`` built once at import; the engine reads
it as ``MOVES`` and never makes a lead a model of the machine.
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


# The machine is the single source of the transition table; it drives no model. Each lead's stage
# is a plain field, and the table is read off the machine once (``get_transitions``), so moving a
# lead is one dict lookup: no model per lead (``add_model`` costs ~260 µs and keeps the lead alive)
# and no shared cursor model to point at each lead in turn.
MACHINE: Final = Machine(
    model=None,
    states=[stage.value for stage in Stage],
    transitions=[
        {"trigger": trigger.value, "source": [s.value for s in sources], "dest": dest.value}
        for trigger, sources, dest in TRANSITIONS
    ],
    initial=Stage.NEW.value,
    auto_transitions=False,
)
_BY_VALUE: Final = {stage.value: stage for stage in Stage}
#: (stage, trigger) -> the stage it moves to; pairs that move nothing are absent.
MOVES: Final = {
    (stage, trigger): _BY_VALUE[transition.dest]
    for trigger in Trigger
    for stage in Stage
    for transition in MACHINE.get_transitions(trigger.value, source=stage.value)
}


def move(stage: Stage, trigger: Trigger) -> Stage | None:
    """The stage ``trigger`` takes a lead in ``stage`` to, or ``None`` when it moves nothing."""
    return MOVES.get((stage, trigger))


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
