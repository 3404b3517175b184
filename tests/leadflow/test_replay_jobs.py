"""Parallel replay (``leadflow.replay_jobs``): N shards merged give the bytes of one process."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from leadflow.replay import OUTPUT_FILES, Source, decode_line, read_lines, replay
from leadflow.replay_jobs import merge_parts, merge_tallies, run_shard, shard_of
from lifecycle.policy import Policy
from schemas.codec import encode_event_json
from schemas.policy_file import parse_policy
from tests.strategies import BASE_MS, HOUR_MS, events

REORDER = parse_policy('[lateness]\nreorder = "5m"\ngrace = "2m"\n')
garbage = st.sampled_from([b"{", b"[]", b'{"event_id":"x"}'])


def on_the_hour(event):
    """Times on whole hours: events of different leads at the same time start SLAs that fall due at
    the same millisecond, where the order among leads must not depend on the order timers were set."""
    return dataclasses.replace(event, occurred_at=BASE_MS + (event.occurred_at - BASE_MS) // HOUR_MS * HOUR_MS)


streams = st.lists(
    st.one_of(events(lead_ids=("L1", "L2", "L3", "L4", "L5"), span_ms=3 * 86_400_000).map(on_the_hour)
              .map(encode_event_json), garbage),
    max_size=40,
)
examples = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outputs(out_dir: Path) -> dict[str, bytes]:
    return {name: (out_dir / name).read_bytes() for name in OUTPUT_FILES}


def sharded(sources: list[Source], policy: Policy, until: int | None, jobs: int, tmp: Path):
    """The shards run one after the other in this process, then merged: what ``--jobs`` does in N."""
    tmp.mkdir(exist_ok=True)
    parts = [tmp / f"job-{job}" for job in range(jobs)]
    tallies = [run_shard(sources, policy, until, job, jobs, parts[job], (read_lines, decode_line)) for job in range(jobs)]
    out = tmp / "merged"
    out.mkdir()
    with open(out / OUTPUT_FILES[0], "wb") as a, open(out / OUTPUT_FILES[1], "wb") as b, \
            open(out / OUTPUT_FILES[2], "wb") as c:
        merge_parts(parts, (a, b, c))
    return merge_tallies(tallies), outputs(out)


@examples
@given(streams, st.integers(1, 4), st.booleans(), st.one_of(st.none(), st.integers(0, 5 * 86_400_000)))
def test_shards_merged_are_the_one_process_output_byte_for_byte(lines, jobs, reorder, until_offset):
    policy = REORDER if reorder else Policy()
    until = None if until_offset is None else BASE_MS + until_offset
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.jsonl"
        path.write_bytes(b"".join(line + b"\n" for line in lines))
        sources = [Source(str(path))]
        one = replay(sources, Path(tmp) / "one", policy, until)
        tally, merged = sharded(sources, policy, until, jobs, Path(tmp))
        assert merged == outputs(Path(tmp) / "one")
        assert tally == one


def test_a_lead_always_belongs_to_the_same_job():
    assert [shard_of("L-000001", 3)] * 2 == [shard_of("L-000001", 3), shard_of("L-000001", 3)]
    assert {shard_of(f"L-{i}", 3) for i in range(100)} == {0, 1, 2}


def test_parallel_replay_in_processes_writes_the_same_files(tmp_path):
    lines = (b'{"event_id":"e%d","event_type":"email_engagement","lead_id":"L%d","action":"click",'
             b'"campaign_id":"c","occurred_at":"2026-03-%02dT10:00:00Z"}' % (i, i % 7, 2 + i % 20) for i in range(200))
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join([*lines, b"not json"]) + b"\n")
    one = replay([Source(str(path))], tmp_path / "one", REORDER)
    three = replay([Source(str(path))], tmp_path / "three", REORDER, jobs=3)
    assert outputs(tmp_path / "three") == outputs(tmp_path / "one")
    assert three == one and one.dead_lettered == 1


def test_deadlines_at_the_same_millisecond_fire_in_lead_id_order_in_one_process_and_in_shards(tmp_path):
    # L2 becomes an MQL before L1 in the input, at the same time: their assignment SLAs fall due at
    # the same millisecond. One process used to fire them in the order they were set (L2 first),
    # which no shard can know; now lead ids decide (L1 first) in one process and in the merge.
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(
        b'{"event_id":"%s-1","event_type":"form_fill","lead_id":"%s","form_type":"demo_request",'
        b'"form_id":"f1","occurred_at":"2026-03-02T10:00:00Z"}\n' % (lead, lead) for lead in (b"L2", b"L1")))
    sources, until = [Source(str(path))], BASE_MS + 30 * 86_400_000
    replay(sources, tmp_path / "one", Policy(), until)
    alerts = [line for line in (tmp_path / "one" / "alerts.jsonl").read_bytes().splitlines() if b"\"sla\":\"assignment\"" in line]
    assert [line[line.index(b'"lead_id"'):][:14] for line in alerts] == [b'"lead_id":"L1"', b'"lead_id":"L2"']
    for jobs in (2, 3):
        _, merged = sharded(sources, Policy(), until, jobs, tmp_path / f"j{jobs}")
        assert merged == outputs(tmp_path / "one")
