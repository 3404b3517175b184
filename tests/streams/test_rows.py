"""The lead table's row codec (``streams.rows``): every part of a row survives the changelog."""

from __future__ import annotations

import orjson
from hypothesis import HealthCheck, given, settings, strategies as st

from lifecycle.application import Application, Position, Row
from lifecycle.engine import Engine
from lifecycle.lead import Lead
from schemas.policy_file import parse_policy
from schemas import codec
from streams import rows
from tests.strategies import HOUR_MS, events

POLICY = parse_policy('[lateness]\nreorder = "2h"\ngrace = "5m"\n')


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(events(lead_ids=("L1",)), max_size=30))
def test_a_row_reads_back_as_written(stream):
    app = Application(Engine(POLICY), lambda record: rows.keep(record, codec.encode_json(record)))
    row: Row = rows.EMPTY
    for offset, event in enumerate(stream):
        row = app.on_event(row, event, event.occurred_at + HOUR_MS, Position("t", 0, offset)).row
        back = rows.decode(rows.encode(row))
        assert (back.lead, back.outbox, back.version, back.held, back.wake_at) == (
            row.lead, row.outbox, row.version, row.held, row.wake_at)
        assert rows.wake_of(rows.encode(row)) == row.wake_at


def test_rows_written_before_versions_and_holds_still_read():
    lead = Lead("L1", created_at=1)
    state = lead.to_state()
    state.pop("hold")
    state["slas"] = [[*sla[:6]] for sla in state["slas"]]
    old = orjson.dumps({"wake": None, "lead": state, "outbox": []})
    assert rows.decode(old) == Row(lead)
    assert rows.wake_of(old) is None
    assert rows.wake_of(orjson.dumps({"wake": 1234, "lead": state, "outbox": []})) == 1234
