"""Fuzzing the whole replay path: files of random bytes, random JSON and hostile events, replayed
with ``leadflow.replay.replay`` and shown with the replay view. No exception escapes, every line is
accounted for (read == applied + duplicates + dead-lettered), every output line is a valid record."""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from leadflow.replay import ClockWatch, Source, replay
from leadflow.replay_view import clock_warnings, describe, summary
from lifecycle.calendar import EARLIEST_MS, LATEST_MS
from lifecycle.policy import Policy
from lifecycle.records import AlertRecord, DlqRecord, LifecycleRecord, Record
from schemas.codec import decode_record, encode_event_json
from schemas.policy_file import parse_policy
from tests.schemas.test_codec_fuzz import HOSTILE_TEXT, TIMES, event_like, json_values
from tests.strategies import events

fuzz = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

def dumps(document: object) -> bytes:
    """JSON text of ``document``; integers beyond 64 bits too (the standard library writes them)."""
    try:
        return orjson.dumps(document, option=orjson.OPT_NON_STR_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(document).encode("utf-8", "surrogatepass")


QUICK = parse_policy('[sla.first_touch]\nwithin = "2h"\nbusiness = false\nescalate_after = "1h"\nwarn_at = 0.5\n')
hostile_ids = st.sampled_from(["L1", "L2", *HOSTILE_TEXT])
edge_events = st.builds(
    lambda kind, lead, event_id, at, owner: {
        "event_id": event_id, "event_type": kind, "lead_id": lead, "occurred_at": at,
        "form_type": "demo_request", "owner_id": owner, "decision": "reject", "stage": "closed_won",
        "action": "click"},
    st.sampled_from(["form_fill", "lead_assigned", "sales_disposition", "deal_stage_change",
                     "email_engagement", "sales_touch"]),
    hostile_ids, st.sampled_from(["e1", "e2", "e3", "[/]"]),
    st.sampled_from(TIMES + ["2026-03-02T09:00:00Z", "2026-03-02T15:00:00Z", "2030-01-01T00:00:00Z",
                             "9989-12-29T10:00:00Z", "9989-12-31T23:59:59.999Z", "1970-01-01T00:00:00Z"]),
    hostile_ids,
)
line = st.one_of(
    st.binary(max_size=80).map(lambda b: b.replace(b"\n", b" ")),
    json_values.map(dumps),
    event_like.map(dumps),
    edge_events.map(orjson.dumps),
    events().map(encode_event_json),
)
until = st.none() | st.sampled_from([EARLIEST_MS, 1_800_000_000_000, LATEST_MS])


def _counted(data: bytes) -> int:
    """Lines ``read_lines`` hands the engine: blank ones are skipped."""
    return sum(1 for raw in data.split(b"\n") if raw.rstrip(b"\r").strip())


@fuzz
@given(st.lists(line, max_size=40), until, st.sampled_from([Policy(), QUICK]))
def test_no_input_file_makes_replay_raise_and_every_line_is_accounted_for(
        lines: list[bytes], until_ms: int | None, policy: Policy) -> None:
    data = b"\n".join(lines) + b"\n"
    shown = Console(file=io.StringIO(), width=120, force_terminal=True, color_system="truecolor")
    watch = ClockWatch(3_600_000)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.jsonl"
        path.write_bytes(data)
        out = Path(tmp) / "out"
        tally = replay([Source(str(path))], out, policy, until_ms,
                       on_record=lambda r: shown.print(describe(r)), watch=watch)
        assert tally.read == _counted(data) == tally.applied + tally.duplicates + tally.dead_lettered
        written: dict[type, list[Record]] = {}
        for name, cls in (("lifecycle.jsonl", LifecycleRecord), ("alerts.jsonl", AlertRecord),
                          ("dlq.jsonl", DlqRecord)):
            written[cls] = [decode_record(cls, raw) for raw in (out / name).read_bytes().splitlines()]
        assert len(written[DlqRecord]) == tally.dead_lettered
        assert len(written[LifecycleRecord]) == tally.transitions
        assert len(written[AlertRecord]) == sum(tally.alerts.values())
        shown.print(summary(tally, out))
        for warning in clock_warnings(watch):
            shown.print(warning)
    text = shown.file.getvalue()
    assert "\x07" not in text and "\x1b]" not in text
