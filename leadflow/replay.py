"""``leadflow replay``: the engine over JSON-lines files with the event-time clock.

Deterministic byte for byte: the same input lines in the same order give the same three output files,
however the lines are split into files (DLQ records name the file and line they came from).
The files appear in the output directory only when the run completed, with ``manifest.json``
(``leadflow.replay_output``); input lines are read one at a time, at most ``MAX_LINE_BYTES`` each
(``leadflow.jsonlines``: a longer one is dead-lettered as ``line_too_long``).
"""

from __future__ import annotations

import gc
import os
import stat
import sys
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator, TypeVar

from leadflow import jsonlines
from leadflow.replay_output import OUTPUT_FILES, ReplayOutput  # noqa: F401 - OUTPUT_FILES: re-exported
from lifecycle.engine import Engine
from lifecycle.errors import ConfigError, EventError, LeadflowError
from lifecycle.events import LeadEvent
from lifecycle.policy import Policy
from lifecycle.processor import Processor, Tally
from lifecycle.records import DlqRecord, LifecycleRecord, Record
from schemas.codec import decode_json, dlq_record
from schemas.wire import record_json
from sinks.base import FanOut, Position, Sink, SinkError
from sinks.checkpoint import Checkpoint



class InputError(LeadflowError):
    """An input file could not be read; the message names it."""

#: a sink's store that fails this long (seconds, retried with back-off) ends the replay with an error
SINK_GIVE_UP_AFTER = 60.0
#: the webhook in a replay: total deadline per request, attempts per alert, and how long the
#: endpoint may fail before every alert left is dead-lettered (``webhook_failed``) at once, so a
#: replay against a webhook that never answers ends within about WEBHOOK_GIVE_UP_AFTER + WEBHOOK_DEADLINE
WEBHOOK_DEADLINE = 10.0
WEBHOOK_ATTEMPTS = 4
WEBHOOK_GIVE_UP_AFTER = 20.0
#: an interrupted replay discards its files, except the sinks' dead letters, written here
INTERRUPTED_DLQ = "dlq.interrupted.jsonl"


@dataclass(frozen=True)
class Source:
    """One input: a path, or ``-`` for standard input."""

    name: str

    @property
    def is_stdin(self) -> bool:
        return self.name == "-"

    def size(self) -> int | None:
        """Bytes in the file; None for standard input and anything that is not a regular file (a
        FIFO, ``/dev/null``), whose size says nothing about what will be read."""
        if self.is_stdin:
            return None
        info = os.stat(self.name)
        return info.st_size if stat.S_ISREG(info.st_mode) else None

    def open(self) -> BinaryIO:
        if self.is_stdin:
            if sys.stdin is None:
                raise ConfigError("FILE '-': standard input is closed")
            return sys.stdin.buffer
        try:
            return open(self.name, "rb")
        except OSError as exc:
            raise InputError(f"cannot read {self.name}: {exc.strerror or exc}") from None

    def problem(self) -> str | None:
        """Why this input cannot be read, before anything starts; None when it can. A FIFO, a
        character device (``/dev/null``: no events) and standard input are read like a file."""
        if self.is_stdin:
            return "standard input is closed" if sys.stdin is None else None
        if not os.path.exists(self.name):
            return f"no such file: {self.name}"
        if os.path.isdir(self.name):
            return f"is a directory: {self.name}"
        if not os.access(self.name, os.R_OK):
            return f"cannot read (permission denied): {self.name}"
        return None


#: Lifecycle and alert lines a replay keeps before it writes them at once.
WRITE_EVERY = 4096
#: Lines between two ``gc.freeze()`` calls while a replay reads (``read_lines``).
FREEZE_EVERY = 1 << 16

T = TypeVar("T")


def read_lines(source: Source, stream: BinaryIO) -> Iterator[tuple[int, bytes, int]]:
    """``(line number from 1, line without its newline, bytes consumed)``; blank lines are skipped,
    a line over ``jsonlines.MAX_LINE_BYTES`` comes as a ``jsonlines.LongLine``; a read error names the input.

    Every ``FREEZE_EVERY`` lines what is alive is moved out of the collector's sight
    (``gc.freeze``), until the source is read: the leads' rows hold no reference cycles and are
    freed by reference counting, but collections walked them again and again (with the default
    thresholds, ~12% of the CPU of a replay of 1 000 000 events over 100 000 leads); young
    collections are made rarer too. Garbage cycles frozen on the way are collected after
    ``gc.unfreeze``; the thresholds are restored."""
    return _reading(source, jsonlines.read_lines(stream), itemgetter(0))


def read_blocks(source: Source, stream: BinaryIO) -> Iterator[list[tuple[int, bytes, int]]]:
    """The items of ``read_lines`` in lists, read a chunk at a time (``jsonlines.read_blocks``): for
    regular files, whose lines need not come as they are written. The collector as in ``read_lines``."""
    return _reading(source, jsonlines.read_blocks(stream), _last_line)


def _last_line(block: list[tuple[int, bytes, int]]) -> int:
    return block[-1][0]


def _reading(source: Source, items: Iterator[T], line_of: Callable[[T], int]) -> Iterator[T]:
    """``items`` of ``source`` (``line_of`` an item: the last line number it holds), with the
    collector kept off the rows as ``read_lines`` says and a read error naming the input."""
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], 100_000), *thresholds[1:])  # and fewer young collections
    next_freeze = FREEZE_EVERY
    try:
        for item in items:
            yield item
            if line_of(item) >= next_freeze:
                gc.freeze()
                next_freeze = line_of(item) + FREEZE_EVERY
    except OSError as exc:
        raise InputError(f"cannot read {source.name}: {exc.strerror or exc}") from None
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def decode_line(line: bytes) -> LeadEvent:
    """One input line -> a validated event; ``EventError`` (a dead letter) otherwise, ``line_too_long``
    for a ``jsonlines.LongLine``."""
    if isinstance(line, jsonlines.LongLine):
        raise line.error()
    return decode_json(line)


@dataclass
class ClockJump:
    """An event that moved the replay clock ahead by more than the margin, and how many later events
    were then more than the margin behind the clock (their SLAs were judged at its time)."""

    source: str
    line: int
    lead_id: str
    event_id: str
    from_ms: int | None
    to_ms: int
    behind: int = 0


@dataclass
class ClockWatch:
    """Watches the replay clock (the watermark: the largest ``occurred_at`` seen) for jumps ahead of
    the data, e.g. one event dated 2030 among events of 2026, which moves the clock for every lead.

    A jump counts when the clock moves by more than ``margin_ms`` (``LEADFLOW_FUTURE_MARGIN``;
    the first event moves it from nothing) and a later event is more than ``margin_ms`` behind the
    clock it set; sorted input with quiet nights never warns.
    """

    margin_ms: int
    jumps: list[ClockJump] = field(default_factory=list)
    _last: ClockJump | None = field(default=None, init=False, repr=False)

    def observe(self, before: int | None, after: int | None, event: LeadEvent, source: str, line: int) -> None:
        self._see(before, after, event.occurred_at, event, source, line)

    def observe_line(self, before: int | None, after: int | None, occurred_at: int, raw: bytes, source: str,
                     line: int) -> None:
        """``observe`` for a valid event known by its time and its line (one another replay job
        applies): the line is decoded only when a jump names its event."""
        self._see(before, after, occurred_at, raw, source, line)

    def _see(self, before: int | None, after: int | None, occurred_at: int, event: LeadEvent | bytes, source: str,
             line: int) -> None:
        if after is None:
            return
        if before is None or after - before > self.margin_ms:
            if isinstance(event, bytes):
                event = decode_line(event)
            self._last = ClockJump(source, line, event.lead_id, event.event_id, before, after)
        elif after - occurred_at > self.margin_ms and self._last is not None:
            if self._last.behind == 0:
                self.jumps.append(self._last)
            self._last.behind += 1


def replay(
    sources: Iterable[Source],
    out_dir: Path | ReplayOutput,
    policy: Policy,
    until: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_record: Callable[[Record], None] | None = None,
    processor: Processor | None = None,
    sink: Sink | None = None,
    watch: ClockWatch | None = None,
    jobs: int = 1,
) -> Tally:
    """Run every source through one processor, in order; write the three output files into ``out_dir``
    (a directory, or a ``ReplayOutput`` already open), all at once when the run completed.

    ``jobs`` > 1: the leads are shared among that many processes (``leadflow.replay_jobs``), with
    the same output byte for byte; only when every source is a regular file (each job reads it) and
    no ``on_record``, ``sink`` or ``processor`` is given (they see records in one process).

    ``watch`` sees the clock before and after every event (``ClockWatch``).

    ``sink`` (SQL, webhook, ...) also gets every record with its position (file, line), through a
    ``Checkpoint`` that flushes it before the files are put in place. A record a store refuses, and
    an alert the webhook could not deliver, become dead letters (``sink_refused``,
    ``webhook_failed``) appended to ``dlq.jsonl`` by this function alone, and the summary counts
    them (``dead_letter_counts``); the rest is stored. A store that stays unavailable for
    ``SINK_GIVE_UP_AFTER`` s raises ``StoreUnavailable``. On an exception (Ctrl-C) the sink is
    aborted and what it still held is dead-lettered the same way. A run that fails or is
    interrupted leaves the directory as it was.
    """
    sources = list(sources)
    with ExitStack() as stack:
        output = out_dir if isinstance(out_dir, ReplayOutput) else stack.enter_context(ReplayOutput.open(out_dir))
        lifecycle_out, alerts_out, dlq_out = output.begin()

        def commit() -> None:
            output.commit([source.name for source in sources], until, getattr(policy, "policy_version", None))

        checkpoint: Checkpoint | None = None
        if sink is not None:
            sink_dead: list[bytes] = []  # kept apart too: an interrupted run publishes only these

            def dead_letter(record: DlqRecord) -> None:
                line = record_json(record) + b"\n"
                dlq_out.write(line)
                sink_dead.append(line)
                if on_record is not None:
                    on_record(record)

            checkpoint = Checkpoint(sink, dead_letters=dead_letter, give_up_after=SINK_GIVE_UP_AFTER,
                                    origin="end of input", name="replay", log_each=False)
            stack.push(_aborting(checkpoint, output.path / INTERRUPTED_DLQ, sink_dead))
        here: Position | None = None

        if jobs > 1 and on_record is None and sink is None and processor is None and all(
            source.size() is not None for source in sources
        ):
            from leadflow.replay_jobs import replay_parallel

            tally = replay_parallel(sources, (lifecycle_out, alerts_out, dlq_out), policy, until, jobs,
                                    (read_blocks, decode_line), on_progress, watch)
            commit()
            return tally
        if processor is None:
            processor = Processor(Engine(policy))

        pending: tuple[list[bytes], list[bytes]] = ([], [])  # lifecycle and alert lines not yet written

        def write_pending() -> None:
            for lines, target in zip(pending, (lifecycle_out, alerts_out)):
                if lines:
                    target.write(b"".join(lines))
                    lines.clear()

        def write(records: list) -> None:
            for record in records:
                pending[0 if isinstance(record, LifecycleRecord) else 1].append(record_json(record) + b"\n")
                if on_record is not None:
                    on_record(record)
                if checkpoint is not None:
                    checkpoint.add(record, here)
            if len(pending[0]) + len(pending[1]) >= WRITE_EVERY:
                write_pending()

        for source in sources:
            stream = source.open()
            try:
                lines = chain.from_iterable(read_blocks(source, stream)) if source.size() is not None else \
                    read_lines(source, stream)
                for number, line, consumed in lines:
                    if on_progress is not None:
                        on_progress(consumed)
                    if checkpoint is not None:
                        here = Position(source.name, None, number)
                    try:
                        event = decode_line(line)
                    except EventError as error:
                        dead = dlq_record(line, None, error, source.name, None, number)
                        processor.reject(error.code)
                        dlq_out.write(record_json(dead) + b"\n")
                        if on_record is not None:
                            on_record(dead)
                        if checkpoint is not None:
                            checkpoint.add(dead, here)
                        continue
                    before = processor.clock
                    records = processor.submit(event)
                    if watch is not None:
                        watch.observe(before, processor.clock, event, source.name, number)
                    if records:
                        write(records)
            finally:
                if not source.is_stdin:
                    stream.close()
        here = None
        write(processor.finish(until))
        write_pending()
        if checkpoint is not None:
            checkpoint.close()
        commit()
    return processor.tally


def _aborting(checkpoint: Checkpoint, where: Path, dead: list[bytes]) -> Callable[..., None]:
    """Exit callback: after an exception (Ctrl-C) abort the sink while the output files are still
    open and let that exception win. The run's files are discarded (an interrupted run leaves the
    directory as it was), but what the sink could not deliver did happen outside: those dead
    letters (``webhook_failed``, ``sink_refused``) are written to ``where``, and said on stderr.
    (A run that completes closes the checkpoint itself, before the files are put in place.)"""
    def abort(exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc_type is None:
            return
        try:
            checkpoint.close(abort=True)
        except SinkError:
            pass
        if dead:
            try:
                where.write_bytes(b"".join(dead))
                print(f"leadflow: {len(dead)} records the sinks did not take are dead-lettered in {where}",
                      file=sys.stderr)
            except OSError as error:
                print(f"leadflow: cannot write {where}: {error.strerror}", file=sys.stderr)

    return abort


def dead_letter_counts(out_dir: Path) -> Counter[str]:
    """Dead letters in ``dlq.jsonl`` by error code: the inputs that failed and what the sinks
    dead-lettered on the way (``webhook_failed``, ...), read back from the file written."""
    import orjson

    counts: Counter[str] = Counter()
    with open(out_dir / "dlq.jsonl", "rb") as lines:
        for line in lines:
            try:
                counts[str(orjson.loads(line).get("error"))] += 1
            except (orjson.JSONDecodeError, AttributeError):
                counts["unreadable"] += 1
    return counts


def sinks_for(output: ReplayOutput | Path, sql_url: str | None, webhook_url: str | None) -> Sink | None:
    """The sinks chosen on the command line. What they cannot store, ``replay`` dead-letters to
    ``dlq.jsonl`` of the output."""
    chosen: list[Sink] = []
    if sql_url:
        from sinks.sql import SqlSink

        chosen.append(SqlSink(sql_url))
    if webhook_url:
        from sinks.webhook import RetryPolicy, WebhookSink

        retry = RetryPolicy(max_retries=WEBHOOK_ATTEMPTS - 1, timeout=WEBHOOK_DEADLINE,
                            give_up_after=WEBHOOK_GIVE_UP_AFTER)
        try:
            chosen.append(WebhookSink(webhook_url, retry=retry))
        except BaseException:
            for one in chosen:
                one.close()
            raise
    if not chosen:
        return None
    return chosen[0] if len(chosen) == 1 else FanOut(*chosen)
