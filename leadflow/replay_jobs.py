"""``leadflow replay --jobs N``: the leads shared among N processes, the outputs merged into exactly
the bytes one process writes.

Every job reads and decodes every input line, because the clock is global: it is the watermark of
*all* valid events, and an SLA step is stamped with it. A job applies only the events of its own
leads (``shard_of``: a stable hash of the lead id; invalid lines belong to job 0) and only moves
the clock for the others, so each of its leads sees exactly the clock it would see in one process.

Each output record is tagged with where it falls in the one-process order (``Key``):

- line ``i``, phase 0: a row stepped because the clock passed its wake-up before line ``i``'s event,
  ordered by (due time, lead id) — the order ``TimerSet`` pops them in, whichever leads a job holds;
- line ``i``, phase 1: line ``i``'s event itself (or its dead letter);
- after the last line (``END``): phase 0 the final advance to ``--until``, phase 1 the events still
  held by a reorder window, lead by lead in order of first appearance, phase 2 what those started;

then by position within the step. Job 0 runs in the calling process (progress, clock warnings);
the others are forked, write their tagged records to a temporary file in chunks, and the parent
merges the sorted streams (``heapq.merge``) into the three output files.
"""

from __future__ import annotations

import gc
import heapq
import multiprocessing
import os
import pickle
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Sequence

from lifecycle.engine import Engine, Records
from lifecycle.errors import EventError, LeadflowError
from lifecycle.policy import Policy
from lifecycle.processor import Processor, Tally
from lifecycle.records import LifecycleRecord
from schemas.codec import dlq_record
from schemas.wire import record_json

#: Line index of everything after the last line (no input has this many lines).
END = 1 << 62
#: (line index, phase, due time or first line, lead id, position within the step)
Key = tuple[int, int, int, str, int]
#: Tagged records written per pickle chunk.
_CHUNK = 8192
#: Inputs smaller than this replay in one process unless ``--jobs`` is given: forking costs more.
PARALLEL_MIN_BYTES = 8 * 1024 * 1024

LIFECYCLE, ALERTS, DLQ = 0, 1, 2


class ShardFailed(LeadflowError):
    """A replay job process failed; the message says how."""


def default_jobs() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def shard_of(lead_id: str, jobs: int) -> int:
    """The job that owns ``lead_id``: stable across processes and runs (CRC-32, not ``hash``)."""
    return zlib.crc32(lead_id.encode()) % jobs


@dataclass
class _Writer:
    """Tagged records of one job, pickled in chunks to a file."""

    out: BinaryIO
    chunk: list

    def add(self, key_head: tuple, records: Records) -> None:
        chunk = self.chunk
        for position, record in enumerate(records):
            kind = LIFECYCLE if type(record) is LifecycleRecord else ALERTS
            chunk.append(((*key_head, position), kind, record_json(record) + b"\n"))
        if len(chunk) >= _CHUNK:
            self.flush()

    def add_dead(self, index: int, data: bytes) -> None:
        self.chunk.append(((index, 1, 0, "", 0), DLQ, data))

    def flush(self) -> None:
        if self.chunk:
            pickle.dump(self.chunk, self.out, protocol=pickle.HIGHEST_PROTOCOL)
            self.chunk = []


def _read_chunks(path: Path) -> Iterator[tuple[Key, int, bytes]]:
    with open(path, "rb") as stream:
        while True:
            try:
                chunk = pickle.load(stream)
            except EOFError:
                return
            yield from chunk


#: How replay reads a source's lines and decodes one (``leadflow.replay.read_lines``, ``decode_line``).
Reader = tuple[Callable, Callable]


def run_shard(
    sources: Sequence, policy: Policy, until: int | None, job: int, jobs: int, out_path: Path, reader: Reader,
    on_progress: Callable[[int], None] | None = None, watch=None,
) -> Tally:
    """Replay every line, applying the events of job ``job`` of ``jobs``; write its tagged records
    to ``out_path``. ``watch`` (a ``ClockWatch``) sees every valid event, whichever job owns it."""
    read_lines, decode_line = reader
    processor = Processor(Engine(policy))
    timers, steps_due, take, observe = processor.timers, processor.steps_due, processor.take, processor.observe
    holds = processor.app.reorder_ms > 0
    first_line: dict[str, int] = {}  # with a reorder window: where each lead of the job first appeared
    rows = processor.rows
    index = -1
    with open(out_path, "wb") as out:
        writer = _Writer(out, [])
        add = writer.add
        for source in sources:
            stream = source.open()
            try:
                for number, line, consumed in read_lines(source, stream):
                    index += 1
                    if on_progress is not None:
                        on_progress(consumed)
                    try:
                        event = decode_line(line)
                    except EventError as error:
                        if job == 0:
                            processor.reject(error.code)
                            dead = dlq_record(line, None, error, source.name, None, number)
                            writer.add_dead(index, record_json(dead) + b"\n")
                        continue
                    at = event.occurred_at
                    before = processor.clock
                    if timers.any_due(at):
                        for lead_id, due, records in steps_due(at, inclusive=False):
                            if records:
                                add((index, 0, due, lead_id), records)
                    lead_id = event.lead_id
                    if zlib.crc32(lead_id.encode()) % jobs == job:
                        if holds and lead_id not in rows:
                            first_line[lead_id] = index
                        records = take(event)
                        if records:
                            add((index, 1, 0, ""), records)
                    else:
                        observe(at)
                    if watch is not None:
                        watch.observe(before, processor.clock, event, source.name, number)
            finally:
                if not source.is_stdin:
                    stream.close()
        final = until if until is not None else processor.clock
        if final is not None:
            for lead_id, due, records in steps_due(final, inclusive=True):
                if records:
                    add((END, 0, due, lead_id), records)
            observe(final)
            flushed = False
            for lead_id, records in processor.flush_held(final):
                flushed = True
                if records:
                    add((END, 1, first_line[lead_id], lead_id), records)
            if flushed:
                for lead_id, due, records in steps_due(final, inclusive=True):
                    if records:
                        add((END, 2, due, lead_id), records)
        writer.flush()
    return processor.tally


def _child(sources: Sequence, policy: Policy, until: int | None, job: int, jobs: int, out_path: Path,
           reader: Reader, result_path: Path) -> None:
    try:
        outcome: tuple = ("ok", run_shard(sources, policy, until, job, jobs, out_path, reader))
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which raises it
        outcome = ("error", f"{type(error).__name__}: {error}")
    with open(result_path, "wb") as result:
        pickle.dump(outcome, result)


def merge_tallies(tallies: Sequence[Tally]) -> Tally:
    total = Tally()
    for tally in tallies:
        total.read += tally.read
        total.applied += tally.applied
        total.duplicates += tally.duplicates
        total.dead_lettered += tally.dead_lettered
        total.transitions += tally.transitions
        total.alerts.update(tally.alerts)
        total.dlq_errors.update(tally.dlq_errors)
        total.late += tally.late
        total.max_late_ms = max(total.max_late_ms, tally.max_late_ms)
    return total


def replay_parallel(
    sources: Sequence, outputs: Sequence[BinaryIO], policy: Policy, until: int | None, jobs: int, reader: Reader,
    on_progress: Callable[[int], None] | None = None, watch=None,
) -> Tally:
    """Replay ``sources`` (regular files: every job reads them) in ``jobs`` processes; write the
    merged records to ``outputs`` (lifecycle, alerts, dlq) and return the summed tally."""
    context = multiprocessing.get_context("fork")
    with tempfile.TemporaryDirectory(prefix="leadflow-jobs-") as tmp:
        tmp_path = Path(tmp)
        parts = [tmp_path / f"job-{job}.pickle" for job in range(jobs)]
        results = [tmp_path / f"job-{job}.result" for job in range(jobs)]
        children = [
            context.Process(target=_child, args=(sources, policy, until, job, jobs, parts[job], reader, results[job]),
                            name=f"leadflow-replay-{job}", daemon=True)
            for job in range(1, jobs)
        ]
        gc.freeze()  # the children's collector leaves the parent's objects alone: no copy-on-write of them
        try:
            for child in children:
                child.start()
            gc.unfreeze()
            tallies = [run_shard(sources, policy, until, 0, jobs, parts[0], reader, on_progress, watch)]
            for job, child in enumerate(children, start=1):
                child.join()
                try:
                    with open(results[job], "rb") as result:
                        status, value = pickle.load(result)
                except (OSError, EOFError, pickle.UnpicklingError):
                    status, value = "error", f"exited with status {child.exitcode}"
                if status != "ok":
                    raise ShardFailed(f"replay job {job} of {jobs} failed: {value}")
                tallies.append(value)
        finally:
            for child in children:
                if child.is_alive():
                    child.terminate()
                    child.join()
        merge_parts(parts, outputs)
    return merge_tallies(tallies)


def merge_parts(parts: Sequence[Path], outputs: Sequence[BinaryIO]) -> None:
    """Merge the jobs' tagged records, each file in key order, into ``outputs`` (lifecycle, alerts, dlq)."""
    write = [output.write for output in outputs]
    for _, kind, data in heapq.merge(*(_read_chunks(part) for part in parts)):
        write[kind](data)
