"""``leadflow replay --jobs N``: the leads shared among N processes, the outputs merged into exactly
the bytes one process writes.

The clock is global: it is the watermark of *all* valid events, and an SLA step is stamped with it.
So every job reads every line, but decodes only its own: a line belongs to the job of its lead
(``line_shard``: ``shard_of`` the lead id, read from the line's bytes without decoding it; a line
that is no event still belongs to exactly one job, the same in all). A job decodes and validates
its own lines of a block and sends every other job their times, in line order (``Exchange``:
one pipe into each job): ``occurred_at`` for a valid event, ``INVALID`` for a line that goes to the
dead-letter queue (and does not move the clock). With the times of every line of a block, a job
steps it: it applies the events of its own leads, dead-letters its own invalid lines, and only
moves the clock for the others', so each of its leads sees exactly the clock it would see in one
process. Jobs decode ``AHEAD`` blocks ahead of the block they step, so none waits for another
unless one falls that far behind; the block size keeps everything sent and not yet read within
half a pipe's capacity, so no write ever blocks and no job can wait for one that waits for it.

Each output record is tagged with where it falls in the one-process order (``Key``):

- line ``i``, phase 0: a row stepped because the clock passed its wake-up before line ``i``'s event,
  ordered by (due time, lead id) — the order ``TimerSet`` pops them in, whichever leads a job holds;
- line ``i``, phase 1: line ``i``'s event itself (or its dead letter);
- after the last line (``END``): phase 0 the final advance to ``--until``, phase 1 the events still
  held by a reorder window, lead by lead in order of first appearance, phase 2 what those started;

then in the order the job made them. Job 0 runs in the calling process (progress, clock warnings);
the others are forked and write their tagged records to a temporary file in frames, each saying up
to which line the job is done. Job 0 merges as it goes (``Merger``): after each block it reads the
others' new frames and writes, in key order (``heapq.merge``), every record of the lines all jobs
have passed; at the end it waits for the others' last frames. The merge would otherwise run alone
after the jobs (~8% of a job's work, serial); so that job 0 finishes with the others, it takes
fewer leads (``MERGE_SHARE``).
"""

from __future__ import annotations

import gc
import bisect
import heapq
import multiprocessing
import multiprocessing.connection
import os
import pickle
import select
import struct
import sys
import tempfile
import zlib
from array import array
from collections import deque
from itertools import chain, islice
from operator import itemgetter
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Sequence

import orjson

from lifecycle.engine import Engine, Records
from lifecycle.errors import EventError, LeadflowError
from lifecycle.policy import Policy
from lifecycle.processor import Processor, Tally
from lifecycle.records import LifecycleRecord
from schemas.codec import dlq_record
from schemas.wire import record_json

#: Line index of everything after the last line (no input has this many lines).
END = 1 << 62
#: (line index, phase, due time or first line, lead id)
Key = tuple[int, int, int, str]
#: Tagged records written per pickle chunk.
_CHUNK = 8192
#: Inputs smaller than this replay in one process unless ``--jobs`` is given: forking costs more.
PARALLEL_MIN_BYTES = 8 * 1024 * 1024

#: A line's time in the exchange when it is no valid event (every valid time is >= EARLIEST_MS, 0).
INVALID = -1
#: Blocks a job decodes (and sends the times of) ahead of the block it steps.
AHEAD = 4
#: Lines per block in one process, and the most in any job.
MAX_BLOCK = 8192
#: The pipe capacity asked for (Linux allows up to /proc/sys/fs/pipe-max-size, 1 MiB by default).
_PIPE_BYTES = 1 << 20
#: Packet header: sender, kind, number of times that follow (int64 each).
_PACKET = struct.Struct("=HBxI")
_DATA, _LAST, _FAILED = 0, 1, 2
#: Times per packet: a write of at most PIPE_BUF bytes to a pipe is atomic, so packets of several
#: senders into one pipe never interleave.
_TIMES_PER_PACKET = (select.PIPE_BUF - _PACKET.size) // 8
#: Seconds a job waits for its peers' times before it checks that they are still there.
_POLL_MS = 1000


class ShardFailed(LeadflowError):
    """A replay job process failed; the message says how."""


class PeerFailed(ShardFailed):
    """Another replay job failed or ended: its lines' times will not come."""


def default_jobs() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


#: Job 0 also merges every job's records while it replays (``Merger``): a lead goes to it with
#: the weight ``1 - MERGE_SHARE * jobs`` against 1 for another job. With two jobs and 0.08 job 0
#: used ~6% less CPU than job 1 (1M events, bench/replay_ab.py), so 0.05: 47% of the leads.
MERGE_SHARE = 0.05
_SCALE = 1 << 16
_first_cut: dict[int, int] = {}


def owner_of(crc: int, jobs: int) -> int:
    """The job of a lead whose id has CRC-32 ``crc``: job 0 for the lowest ``_first_cut`` of
    ``_SCALE`` values, the others in equal parts."""
    if jobs == 1:
        return 0
    cut = _first_cut.get(jobs)
    if cut is None:
        weight = max(0.3, 1 - MERGE_SHARE * jobs)
        cut = _first_cut[jobs] = round(_SCALE * weight / (weight + jobs - 1))
    part = crc % _SCALE
    return 0 if part < cut else 1 + (part - cut) * (jobs - 1) // (_SCALE - cut)


def shard_of(lead_id: str, jobs: int) -> int:
    """The job that owns ``lead_id``: stable across processes and runs (CRC-32, not ``hash``)."""
    return owner_of(zlib.crc32(lead_id.encode()), jobs)


_KEY = b'"lead_id":"'
_KEY_LENGTH = len(_KEY)


def line_shard(line: bytes, jobs: int) -> int:
    """The job that owns an input line, from its bytes: ``shard_of`` its lead id for every line that
    is a valid event, and for any other line some job, the same in every job.

    Without a backslash in the line every ``"`` delimits a string, so a single ``"lead_id"``,
    followed by ``:"``, is the key of a valid event's lead id, and the bytes up to the next ``"`` are
    its UTF-8 (no escapes); any other line is parsed (orjson, as the decoder does)."""
    at = line.find(_KEY)
    if at >= 0 and line.count(b'"lead_id"') == 1 and b"\\" not in line:
        start = at + _KEY_LENGTH
        end = line.find(b'"', start)
        if end >= 0:
            return owner_of(zlib.crc32(line[start:end]), jobs)
    try:
        lead_id = orjson.loads(line).get("lead_id")
        return shard_of(lead_id, jobs) if type(lead_id) is str else 0
    except (orjson.JSONDecodeError, AttributeError, UnicodeEncodeError):
        return 0


class Exchange:
    """One job's end of the exchange of line times: the read end of its own pipe and the write end
    of every other job's. ``send`` writes the times of this job's lines of the next block to every
    other job; ``receive(peer)`` returns the next block's times from ``peer``. ``alive`` is called
    when nothing came for a while, and raises ``PeerFailed`` if a peer is gone. The file
    descriptors belong to whoever made them."""

    def __init__(self, job: int, inbound: int, outbound: dict[int, int], block: int,
                 alive: Callable[[], None] | None = None) -> None:
        self.job, self.inbound, self.outbound, self.block, self.alive = job, inbound, outbound, block, alive
        self.peers = sorted(outbound)
        self._buffer = bytearray()
        self._partial = {peer: array("q") for peer in outbound}
        self._blocks: dict[int, deque[array]] = {peer: deque() for peer in outbound}
        self._poll = select.poll()
        self._poll.register(inbound, select.POLLIN)

    def send(self, times: array) -> None:
        data, step, job = times.tobytes(), _TIMES_PER_PACKET * 8, self.job
        packets = [_PACKET.pack(job, _LAST, 0)] if not data else [
            _PACKET.pack(job, _LAST if start + step >= len(data) else _DATA, min(step, len(data) - start) // 8)
            + data[start:start + step] for start in range(0, len(data), step)]
        for fd in self.outbound.values():
            for packet in packets:
                os.write(fd, packet)  # atomic (at most PIPE_BUF), and never blocks: see the block size

    def receive(self, peer: int) -> array:
        blocks = self._blocks[peer]
        while not blocks:
            self._read()
        return blocks.popleft()

    def fail(self) -> None:
        """Tell every other job that this one failed (best effort: never blocks)."""
        packet = _PACKET.pack(self.job, _FAILED, 0)
        for fd in self.outbound.values():
            try:
                os.set_blocking(fd, False)
                os.write(fd, packet)
            except OSError:
                pass

    def _read(self) -> None:
        while not self._poll.poll(_POLL_MS):
            if self.alive is not None:
                self.alive()
        chunk = os.read(self.inbound, 1 << 16)
        if not chunk:
            raise PeerFailed("a replay job ended before sending its lines' times")
        buffer = self._buffer
        buffer += chunk
        position, header, size = 0, _PACKET.size, len(buffer)
        while size - position >= header:
            sender, kind, count = _PACKET.unpack_from(buffer, position)
            end = position + header + 8 * count
            if end > size:
                break
            if kind == _FAILED:
                raise PeerFailed(f"replay job {sender} failed")
            partial = self._partial[sender]
            partial.frombytes(buffer[position + header:end])
            if kind == _LAST:
                self._blocks[sender].append(partial)
                self._partial[sender] = array("q")
            position = end
        del buffer[:position]


def make_pipes(jobs: int) -> tuple[list[tuple[int, int]], int]:
    """One pipe into each job, and the lines per block: everything sent and not yet read is at most
    the times of ``2 * AHEAD + 1`` blocks (a job sends block ``b + AHEAD`` before it reads block
    ``b``, and a peer can be ``AHEAD`` blocks further on), kept within half the smallest pipe's capacity."""
    pipes: list[tuple[int, int]] = []
    try:
        capacity = _PIPE_BYTES
        for _ in range(jobs):
            read, write = os.pipe()
            pipes.append((read, write))
            try:
                import fcntl

                try:
                    fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
                except OSError:
                    pass
                capacity = min(capacity, fcntl.fcntl(write, fcntl.F_GETPIPE_SZ))
            except (ImportError, AttributeError):  # pragma: no cover - not Linux: POSIX's least
                capacity = min(capacity, select.PIPE_BUF * 16)
    except BaseException:
        close_pipes(pipes)
        raise
    per_block = capacity // 2 // (2 * AHEAD + 1) - jobs * _PACKET.size  # a block from each other job: a header or more
    block = min(MAX_BLOCK, per_block * _TIMES_PER_PACKET // select.PIPE_BUF - 1)
    if block < 1:
        close_pipes(pipes)
        raise ShardFailed(f"pipes of {capacity} bytes are too small for {jobs} replay jobs; use fewer")
    return pipes, block


def close_pipes(pipes: Sequence[tuple[int, int]], keep: Sequence[int] = ()) -> None:
    for pipe in pipes:
        for fd in pipe:
            if fd not in keep:
                try:
                    os.close(fd)
                except OSError:
                    pass


def exchange_for(job: int, pipes: Sequence[tuple[int, int]], block: int,
                 alive: Callable[[], None] | None = None) -> Exchange:
    return Exchange(job, pipes[job][0], {peer: pipe[1] for peer, pipe in enumerate(pipes) if peer != job}, block, alive)


def _keeps(job: int, pipes: Sequence[tuple[int, int]]) -> list[int]:
    """The file descriptors job ``job`` uses: its pipe's read end, the others' write ends."""
    return [pipes[job][0], *(pipe[1] for peer, pipe in enumerate(pipes) if peer != job)]


class Writer:
    """Tagged records of one job, to a file in frames: one entry per step that wrote any,
    ``(*key head, sequence, lifecycle lines, alert lines, dead letter)``; the sequence (entries of
    this job so far) keeps two entries with the same key head in the order they were made. A frame
    is ``(done, length)`` then the pickle of its entries: every entry of a line up to ``done``
    (``END`` at the end) is written, so a merge can read the file while it grows."""

    def __init__(self, out: BinaryIO | None) -> None:
        self.out, self.chunk, self.sequence, self.done = out, [], 0, -1

    def add(self, key_head: tuple, records: Records) -> None:
        lifecycle, alerts = [], []
        for record in records:
            (lifecycle if type(record) is LifecycleRecord else alerts).append(record_json(record))
        self.sequence += 1
        self.chunk.append((*key_head, self.sequence, b"\n".join(lifecycle) + b"\n" if lifecycle else b"",
                           b"\n".join(alerts) + b"\n" if alerts else b"", b""))
        if len(self.chunk) >= _CHUNK:
            self.frame(self.done)

    def add_dead(self, index: int, data: bytes) -> None:
        self.sequence += 1
        self.chunk.append((index, 1, 0, "", self.sequence, b"", b"", data))

    def block_done(self, done: int) -> None:
        """Every line up to ``done`` is replayed."""
        self.done = done
        self.frame(done)

    def finish(self) -> None:
        self.frame(END)

    def frame(self, done: int) -> None:
        data = pickle.dumps(self.chunk, protocol=pickle.HIGHEST_PROTOCOL)
        self.out.write(_FRAME.pack(done, len(data)) + data)  # type: ignore[union-attr]
        self.out.flush()  # type: ignore[union-attr]
        self.chunk = []


_FRAME = struct.Struct("<qQ")


class Frames:
    """The frames of a job's file read so far: ``entries`` not yet taken, every line up to ``done``."""

    def __init__(self, path: Path) -> None:
        self.path, self.fd, self.offset, self.entries, self.done = path, None, 0, [], -1

    def poll(self) -> None:
        """Read every whole frame written since."""
        if self.fd is None:
            self.fd = os.open(self.path, os.O_RDONLY)
        size, header = os.fstat(self.fd).st_size, _FRAME.size
        while size >= self.offset + header:
            done, length = _FRAME.unpack(os.pread(self.fd, header, self.offset))
            if size < self.offset + header + length:
                break
            self.entries.extend(pickle.loads(os.pread(self.fd, length, self.offset + header)))
            self.offset += header + length
            self.done = done

    def take(self, limit: int) -> list:
        """The entries of lines up to ``limit`` (in key order), removed."""
        cut = bisect.bisect_left(self.entries, (limit + 1,))
        taken = self.entries[:cut]
        del self.entries[:cut]
        return taken

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Merger(Writer):
    """Job 0's writer: its records merged with those of the other jobs (their files, read as they
    grow) into ``outputs`` (lifecycle, alerts, dlq) as the lines are replayed, up to the line every
    job has passed; ``finish`` waits for the others (``wait()`` between looks) and writes the rest."""

    def __init__(self, outputs: Sequence[BinaryIO], parts: Sequence[Path], wait: Callable[[], None]) -> None:
        super().__init__(None)
        self.outputs, self.wait = outputs, wait
        self.others = [Frames(part) for part in parts]
        self.own = Frames(Path())  # this job's entries, handed over without a file

    def frame(self, done: int) -> None:
        self.own.entries.extend(self.chunk)
        self.chunk = []
        self.own.done = done
        while True:
            for other in self.others:
                other.poll()
            if done != END or all(other.done == END for other in self.others):
                break
            self.wait()
        limit = min([done, *(other.done for other in self.others)])
        _write(heapq.merge(*(frames.take(limit) for frames in (self.own, *self.others))), self.outputs)

    def close(self) -> None:
        for other in self.others:
            other.close()


def _write(entries: Iterator[tuple], outputs: Sequence[BinaryIO]) -> None:
    """The lifecycle, alert and dead-letter lines of ``entries`` (in order) to ``outputs``."""
    lifecycle, alerts, dead = itemgetter(5), itemgetter(6), itemgetter(7)
    while True:
        chunk = list(islice(entries, _CHUNK))
        if not chunk:
            return
        for take, output in ((lifecycle, outputs[0]), (alerts, outputs[1]), (dead, outputs[2])):
            data = b"".join(map(take, chunk))
            if data:
                output.write(data)


#: How replay reads a source's lines in lists and decodes one (``leadflow.replay.read_blocks``, ``decode_line``).
Reader = tuple[Callable, Callable]


def _blocks(sources: Sequence, read_blocks: Callable, size: int) -> Iterator[tuple[str, list[tuple[int, bytes, int]]]]:
    """``(source name, lines)``: every source's lines in turn, at most ``size`` at a time, each
    ``(line number, line, bytes consumed)``."""
    for source in sources:
        stream = source.open()
        try:
            lines = chain.from_iterable(read_blocks(source, stream))
            while True:
                block = list(islice(lines, size))
                if not block:
                    break
                yield source.name, block
        finally:
            if not source.is_stdin:
                stream.close()


def run_shard(
    sources: Sequence, policy: Policy, until: int | None, job: int, jobs: int, out_path: Path, reader: Reader,
    on_progress: Callable[[int], None] | None = None, watch=None, exchange: Exchange | None = None,
    writer: Writer | None = None,
) -> Tally:
    """Replay every line, applying the events of job ``job`` of ``jobs``; write its tagged records
    to ``out_path`` (or give them to ``writer``, a ``Merger``). With more than one job, ``exchange`` brings the times of the other jobs' lines
    (and takes this job's), so every job must run at the same time. ``watch`` (a ``ClockWatch``)
    sees every valid event, whichever job owns it."""
    if jobs > 1 and exchange is None:
        raise ValueError("a replay job of several needs an Exchange with the others")
    try:
        if writer is not None:
            return _run_shard(sources, policy, until, job, jobs, writer, reader, on_progress, watch, exchange)
        with open(out_path, "wb") as out:
            return _run_shard(sources, policy, until, job, jobs, Writer(out), reader, on_progress, watch, exchange)
    except BaseException:
        if exchange is not None:
            exchange.fail()
        raise


def _run_shard(
    sources: Sequence, policy: Policy, until: int | None, job: int, jobs: int, writer: Writer, reader: Reader,
    on_progress: Callable[[int], None] | None, watch, exchange: Exchange | None,
) -> Tally:
    read_blocks, decode_line = reader
    processor = Processor(Engine(policy))
    timers, steps_due, take, observe = processor.timers, processor.steps_due, processor.take, processor.observe
    holds = processor.app.reorder_ms > 0
    first_line: dict[str, int] = {}  # with a reorder window: where each lead of the job first appeared
    rows = processor.rows
    block_size = exchange.block if exchange is not None else MAX_BLOCK
    blocks = _blocks(sources, read_blocks, block_size)
    peers = exchange.peers if exchange is not None else []

    def read_block() -> tuple[str, list, list[int], list] | None:
        """The next block of lines, their jobs, and this job's lines decoded (event or error); the
        times of this job's lines sent to the others."""
        name, block = next(blocks, (None, None))
        if block is None:
            return None
        owners = [line_shard(item[1], jobs) for item in block] if jobs > 1 else [0] * len(block)
        mine: list = []
        times = array("q")
        for item, owner in zip(block, owners):
            if owner == job:
                try:
                    event = decode_line(item[1])
                except EventError as error:
                    mine.append(error)
                    times.append(INVALID)
                else:
                    mine.append(event)
                    times.append(event.occurred_at)
        if exchange is not None:
            exchange.send(times)
        return name, block, owners, mine

    index = -1
    add = writer.add

    def step_due(until: int, line: int, phase: int, inclusive: bool) -> None:
        """Step the rows due before ``until`` (or at it), their records tagged ``(line, phase, due,
        lead id)``."""
        for lead_id, due, records in steps_due(until, inclusive=inclusive):
            if records:
                add((line, phase, due, lead_id), records)

    ahead: deque = deque()
    while len(ahead) < AHEAD:
        first = read_block()
        if first is None:
            break
        ahead.append(first)
    while ahead:
        name, block, owners, mine = ahead.popleft()
        following = read_block()
        if following is not None:
            ahead.append(following)
        sequences: list = [None] * jobs  # per job, its lines' items of this block in order
        sequences[job] = iter(mine)
        for peer in peers:
            sequences[peer] = iter(exchange.receive(peer))  # type: ignore[union-attr]
        items = [next(sequences[owner]) for owner in owners]  # an event or error, or another job's time
        if on_progress is not None:
            on_progress(sum(map(itemgetter(2), block)))  # a block at a time: a progress bar is not free
        for (number, line, _), item in zip(block, items):
            index += 1
            if type(item) is int:  # another job's line: only the clock moves, if it is an event
                if item == INVALID:
                    continue
                before = processor.clock
                if timers.any_due(item):
                    step_due(item, index, 0, False)
                if before is None or item > before:
                    processor.clock = item
                if watch is not None:
                    watch.observe_line(before, processor.clock, item, line, name, number)
                continue
            if isinstance(item, EventError):
                processor.reject(item.code)
                dead = dlq_record(line, None, item, name, None, number)
                writer.add_dead(index, record_json(dead) + b"\n")
                continue
            at = item.occurred_at
            before = processor.clock
            if timers.any_due(at):
                step_due(at, index, 0, False)
            lead_id = item.lead_id
            if holds and lead_id not in rows:
                first_line[lead_id] = index
            records = take(item)
            if records:
                add((index, 1, 0, ""), records)
            if watch is not None:
                watch.observe(before, processor.clock, item, name, number)
        writer.block_done(index)
    final = until if until is not None else processor.clock
    if final is not None:
        step_due(final, END, 0, True)
        observe(final)
        flushed = False
        for lead_id, records in processor.flush_held(final):
            flushed = True
            if records:
                add((END, 1, first_line[lead_id], lead_id), records)
        if flushed:
            step_due(final, END, 2, True)
    writer.finish()
    return processor.tally


def _child(sources: Sequence, policy: Policy, until: int | None, job: int, jobs: int, out_path: Path,
           reader: Reader, result_path: Path, pipes: Sequence[tuple[int, int]], block: int, parent: int) -> None:
    close_pipes(pipes, keep=_keeps(job, pipes))

    def alive() -> None:
        if os.getppid() != parent:
            raise PeerFailed("the replay's parent process ended")

    try:
        outcome: tuple = ("ok", run_shard(sources, policy, until, job, jobs, out_path, reader,
                                          exchange=exchange_for(job, pipes, block, alive)), False)
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which raises it
        outcome = ("error", f"{type(error).__name__}: {error}", isinstance(error, PeerFailed))
    with open(result_path, "wb") as result:
        pickle.dump(outcome, result)
    if outcome[0] != "ok":
        sys.exit(1)


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
        for part in parts:
            part.touch()  # job 0 looks at the others' files from the start
        pipes, block = make_pipes(jobs)
        kept: list[int] = []
        children = [
            context.Process(target=_child, args=(sources, policy, until, job, jobs, parts[job], reader, results[job],
                                                 pipes, block, os.getpid()),
                            name=f"leadflow-replay-{job}", daemon=True)
            for job in range(1, jobs)
        ]

        def alive() -> None:
            for job, child in enumerate(children, start=1):
                if child.exitcode not in (None, 0):
                    raise PeerFailed(f"replay job {job} of {jobs} ended with status {child.exitcode}")

        idle = 0

        def wait() -> None:
            """Job 0 waits for the others' last records: a moment, or until one ends."""
            nonlocal idle
            alive()
            running = [child.sentinel for child in children if child.exitcode is None]
            if running:
                multiprocessing.connection.wait(running, timeout=0.005)
            else:  # all ended well: their files are whole, the next look finds their last frame
                idle += 1
                if idle > 2:
                    raise ShardFailed("a replay job ended without writing its last records")

        gc.freeze()  # the children's collector leaves the parent's objects alone: no copy-on-write of them
        try:
            for child in children:
                child.start()
            gc.unfreeze()
            kept = _keeps(0, pipes)
            close_pipes(pipes, keep=kept)
            merger = Merger(outputs, parts[1:], wait)
            try:
                tallies = [run_shard(sources, policy, until, 0, jobs, parts[0], reader, on_progress, watch,
                                     exchange_for(0, pipes, block, alive), merger)]
            except PeerFailed as failed:
                raise _failure(children, results, jobs) or failed
            finally:
                merger.close()
            for job, child in enumerate(children, start=1):
                child.join()
                status, value, _ = _outcome(results[job], child)
                if status != "ok":
                    raise ShardFailed(f"replay job {job} of {jobs} failed: {value}")
                tallies.append(value)
        finally:
            for child in children:
                if child.is_alive():
                    child.terminate()
                    child.join()
            close_pipes(pipes if not kept else [tuple(kept)])
    return merge_tallies(tallies)


def _outcome(path: Path, child) -> tuple:
    """A job's ``(status, tally or why it failed, whether it failed because another job did)``."""
    try:
        with open(path, "rb") as result:
            return pickle.load(result)
    except (OSError, EOFError, pickle.UnpicklingError):
        return "error", f"exited with status {child.exitcode}", False


def _failure(children: Sequence, results: Sequence[Path], jobs: int) -> ShardFailed | None:
    """Why the jobs failed, from the first that failed on its own (not because another did)."""
    for job, child in enumerate(children, start=1):
        child.join(timeout=10)
        if child.is_alive():
            continue
        status, value, because_of_peer = _outcome(results[job], child)
        if status != "ok" and not because_of_peer:
            return ShardFailed(f"replay job {job} of {jobs} failed: {value}")
    return None
