"""``leadflow replay``: the engine over JSON-lines files with the event-time clock.

Deterministic byte for byte: the same input lines in the same order give the same three output files,
however the lines are split into files (DLQ records name the file and line they came from).
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

from lifecycle.engine import Engine
from lifecycle.errors import EventError
from lifecycle.policy import Policy
from lifecycle.processor import Processor, Tally
from lifecycle.records import DlqRecord, LifecycleRecord, Record
from schemas.codec import decode_json, dlq_record
from schemas.wire import record_json
from sinks.base import FanOut, Sink, deliver

OUTPUT_FILES = ("lifecycle.jsonl", "alerts.jsonl", "dlq.jsonl")


@dataclass(frozen=True)
class Source:
    """One input: a path, or ``-`` for standard input."""

    name: str

    @property
    def is_stdin(self) -> bool:
        return self.name == "-"

    def size(self) -> int | None:
        return None if self.is_stdin else os.path.getsize(self.name)

    def open(self) -> BinaryIO:
        return sys.stdin.buffer if self.is_stdin else open(self.name, "rb")


def read_lines(source: Source, stream: BinaryIO) -> Iterator[tuple[int, bytes, int]]:
    """``(line number from 1, line without its newline, bytes consumed)``; blank lines are skipped."""
    for number, raw in enumerate(stream, start=1):
        line = raw.rstrip(b"\r\n")
        if line.strip():
            yield number, line, len(raw)


def replay(
    sources: Iterable[Source],
    out_dir: Path,
    policy: Policy,
    until: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_record: Callable[[Record], None] | None = None,
    processor: Processor | None = None,
    sink: Sink | None = None,
) -> Tally:
    """Run every source through one processor, in order; write the three output files into ``out_dir``.

    ``sink`` (SQL, webhook, ...) also gets every record; it is closed, so flushed, before returning,
    and what it dead-letters (an alert the webhook could not deliver) is appended to ``dlq.jsonl``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    if processor is None:
        processor = Processor(Engine(policy))
    with ExitStack() as stack:
        lifecycle_out, alerts_out, dlq_out = (
            stack.enter_context(open(out_dir / name, "wb")) for name in OUTPUT_FILES
        )

        def write(records: list) -> None:
            for record in records:
                target = lifecycle_out if isinstance(record, LifecycleRecord) else alerts_out
                target.write(record_json(record) + b"\n")
                if on_record is not None:
                    on_record(record)
                if sink is not None:
                    deliver(sink, record)

        for source in sources:
            stream = source.open()
            try:
                for number, line, consumed in read_lines(source, stream):
                    if on_progress is not None:
                        on_progress(consumed)
                    try:
                        event = decode_json(line)
                    except EventError as error:
                        dead = dlq_record(line, None, error, source.name, None, number)
                        processor.reject(error.code)
                        dlq_out.write(record_json(dead) + b"\n")
                        if on_record is not None:
                            on_record(dead)
                        if sink is not None:
                            deliver(sink, dead)
                        continue
                    records = processor.submit(event)
                    if records:
                        write(records)
            finally:
                if not source.is_stdin:
                    stream.close()
        write(processor.finish(until))
    if sink is not None:
        sink.close()
    return processor.tally


def sinks_for(out_dir: Path, sql_url: str | None, webhook_url: str | None) -> Sink | None:
    """The sinks chosen on the command line; the webhook's dead letters go to ``dlq.jsonl``."""
    chosen: list[Sink] = []
    if sql_url:
        from sinks.sql import SqlSink

        chosen.append(SqlSink(sql_url))
    if webhook_url:
        from sinks.webhook import WebhookSink

        def dead_letter(record: DlqRecord) -> None:
            with open(out_dir / "dlq.jsonl", "ab") as dlq_out:
                dlq_out.write(record_json(record) + b"\n")

        chosen.append(WebhookSink(webhook_url, dead_letters=dead_letter))
    if not chosen:
        return None
    return chosen[0] if len(chosen) == 1 else FanOut(*chosen)
