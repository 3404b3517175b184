"""Parallel replay (``leadflow.replay_jobs``): N shards merged give the bytes of one process."""

from __future__ import annotations

import dataclasses
import json
import tempfile
import threading
import time
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from leadflow.replay import OUTPUT_FILES, ClockWatch, Source, decode_line, read_blocks, replay
from leadflow.replay_jobs import (Merger, close_pipes, exchange_for, line_shard, make_pipes, merge_tallies,
                                  run_shard, shard_of)
from lifecycle.events import MAX_FIELDS
from lifecycle.policy import Policy
from schemas.codec import encode_event_json
from schemas.policy_file import parse_policy
from tests.strategies import BASE_MS, HOUR_MS, events, wild_events

REORDER = parse_policy('[lateness]\nreorder = "5m"\ngrace = "2m"\n')
garbage = st.sampled_from([b"{", b"[]", b'{"event_id":"x"}', b'{"fields":{"lead_id":"L2"}}',
                           b'{"lead_id":"L3","event_type":"nope"}', b'{"lead_id" : "L4", "lead_id": 7}'])


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


def sharded(sources: list[Source], policy: Policy, until: int | None, jobs: int, tmp: Path, block: int | None = None,
            watch: ClockWatch | None = None):
    """The shards run at once, job 0 in this thread merging as it goes (``Merger``), the others in
    threads, exchanging their lines' times through pipes as the processes do (``block`` lines per
    block: smaller than the default is always safe): what ``--jobs`` does in N processes."""
    tmp.mkdir(exist_ok=True)
    parts = [tmp / f"job-{job}" for job in range(jobs)]
    for part in parts:
        part.touch()
    pipes, default_block = make_pipes(jobs)
    tallies: list = [None] * jobs
    errors: list[BaseException] = []

    def run(job: int, writer=None) -> None:
        exchange = exchange_for(job, pipes, block or default_block) if jobs > 1 else None
        try:
            tallies[job] = run_shard(sources, policy, until, job, jobs, parts[job], (read_blocks, decode_line),
                                     watch=watch if job == 0 else None, exchange=exchange, writer=writer)
        except BaseException as error:  # noqa: BLE001 - raised below
            errors.append(error)

    out = tmp / "merged"
    out.mkdir()
    threads = [threading.Thread(target=run, args=(job,)) for job in range(1, jobs)]
    try:
        with open(out / OUTPUT_FILES[0], "wb") as a, open(out / OUTPUT_FILES[1], "wb") as b, \
                open(out / OUTPUT_FILES[2], "wb") as c:
            merger = Merger((a, b, c), parts[1:], lambda: time.sleep(0.001))
            for thread in threads:
                thread.start()
            run(0, merger)
            merger.close()
        for thread in threads:
            thread.join()
    finally:
        close_pipes(pipes)
    if errors:
        raise errors[0]
    return merge_tallies(tallies), outputs(out)


@examples
@given(streams, st.integers(1, 4), st.booleans(), st.one_of(st.none(), st.integers(0, 5 * 86_400_000)),
       st.integers(1, 8))
def test_shards_merged_are_the_one_process_output_byte_for_byte(lines, jobs, reorder, until_offset, block):
    policy = REORDER if reorder else Policy()
    until = None if until_offset is None else BASE_MS + until_offset
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.jsonl"
        path.write_bytes(b"".join(line + b"\n" for line in lines))
        sources = [Source(str(path))]
        watch_one, watch_jobs = ClockWatch(HOUR_MS), ClockWatch(HOUR_MS)
        one = replay(sources, Path(tmp) / "one", policy, until, watch=watch_one)
        tally, merged = sharded(sources, policy, until, jobs, Path(tmp), block, watch_jobs)
        assert merged == outputs(Path(tmp) / "one")
        assert tally == one
        assert watch_jobs.jumps == watch_one.jumps  # the clock warnings name the same events


def spellings(line: bytes) -> list[bytes]:
    """The same event written other ways: spaces, escapes, the lead id first, a "lead_id" nested in
    a form's fields too."""
    obj = orjson.loads(line)
    first = {"lead_id": obj.pop("lead_id"), **obj}
    out = [line, json.dumps(first).encode(), json.dumps(first, ensure_ascii=False).encode(),
           json.dumps(first, indent=None, separators=(" , ", " :\t")).encode()]
    if obj["event_type"] == "form_fill" and len(obj.get("fields") or {}) < MAX_FIELDS:
        out.append(orjson.dumps({**first, "fields": {**(obj.get("fields") or {}), "lead_id": "elsewhere"}}))
        nested = {**obj, "fields": {**(obj.get("fields") or {}), "lead_id": "elsewhere"}}
        out.append(b'{"lead_id" : ' + orjson.dumps(first["lead_id"]) + b"," + orjson.dumps(nested)[1:])
    return out


@settings(max_examples=200, deadline=None)
@given(st.one_of(events(), wild_events()), st.integers(2, 5))
def test_a_valid_event_belongs_to_the_job_of_its_lead_however_it_is_written(event, jobs):
    for line in spellings(encode_event_json(event)):
        decoded = decode_line(line)
        assert line_shard(line, jobs) == shard_of(decoded.lead_id, jobs), line


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


def test_a_job_that_fails_stops_the_others_and_the_replay_says_why(tmp_path, monkeypatch):
    import leadflow.replay
    from leadflow.replay_jobs import ShardFailed

    doomed = next(f"L{i}" for i in range(7) if shard_of(f"L{i}", 3) == 1)  # one of the leads below
    decode = leadflow.replay.decode_line

    def failing(line: bytes):
        event = decode(line)
        if event.lead_id == doomed:
            raise RuntimeError("boom")
        return event

    monkeypatch.setattr(leadflow.replay, "decode_line", failing)
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(
        b'{"event_id":"e%d","event_type":"email_engagement","lead_id":"L%d","action":"click",'
        b'"campaign_id":"c","occurred_at":"2026-03-%02dT10:00:00Z"}\n' % (i, i % 7, 2 + i % 20) for i in range(200)))
    with pytest.raises(ShardFailed, match="replay job 1 of 3 failed: RuntimeError: boom"):
        replay([Source(str(path))], tmp_path / "out", Policy(), jobs=3)
