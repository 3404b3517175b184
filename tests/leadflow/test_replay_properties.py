"""Replay over files: deterministic, independent of how the input is split, every line accounted for."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from leadflow.replay import Source, replay
from lifecycle.policy import Policy
from schemas.codec import encode_event_json
from tests.strategies import events

garbage = st.sampled_from([b"{", b"[]", b"\xff\xfe", b'{"event_id":"x"}', b'{"event_id":"x","event_type":"fax","lead_id":"L1","occurred_at":"2026-03-02T10:00:00Z"}'])
lines = st.lists(st.one_of(events().map(encode_event_json), garbage), max_size=50)
examples = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run(parts: list[list[bytes]], until: int | None = None, runs: int = 1):
    """Replay ``parts`` as files ``runs`` times (same paths each time); the tally and the outputs."""
    with tempfile.TemporaryDirectory() as tmp:
        sources = []
        for index, part in enumerate(parts):
            path = Path(tmp) / f"part{index}.jsonl"
            path.write_bytes(b"".join(line + b"\n" for line in part))
            sources.append(Source(str(path)))
        results = []
        for attempt in range(runs):
            out_dir = Path(tmp) / f"out{attempt}"
            tally = replay(sources, out_dir, Policy(), until)
            names = ("lifecycle.jsonl", "alerts.jsonl", "dlq.jsonl")
            results.append((tally, {name: (out_dir / name).read_bytes() for name in names}))
    return results if runs > 1 else results[0]


@examples
@given(lines, st.lists(st.integers(0, 50), max_size=3))
def test_splitting_the_input_into_files_changes_no_lifecycle_or_alert_byte(data, cuts):
    bounds = [0, *sorted(min(c, len(data)) for c in cuts), len(data)]
    parts = [data[a:b] for a, b in zip(bounds, bounds[1:])]
    _, whole = run([data])
    _, split = run(parts)
    assert whole["lifecycle.jsonl"] == split["lifecycle.jsonl"]
    assert whole["alerts.jsonl"] == split["alerts.jsonl"]
    assert whole["dlq.jsonl"].count(b"\n") == split["dlq.jsonl"].count(b"\n")


@examples
@given(lines)
def test_every_line_is_applied_a_duplicate_or_dead_lettered(data):
    tally, out = run([data])
    assert tally.read == len(data) == tally.applied + tally.duplicates + tally.dead_lettered
    assert out["dlq.jsonl"].count(b"\n") == tally.dead_lettered


@examples
@given(lines)
def test_two_runs_give_the_same_bytes(data):
    (_, first), (_, second) = run([data], until=1_800_000_000_000, runs=2)
    assert first == second
