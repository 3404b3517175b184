"""JSON-lines files read one line at a time, each line at most ``MAX_LINE_BYTES`` long.

A file with no newline in it (a 2 GB sparse file, a binary dump) must not become one 2 GB ``bytes``:
a longer line is skipped in chunks and handed on as :class:`LongLine`, its first
``LONG_LINE_KEPT`` bytes and its real length, which replay dead-letters as ``line_too_long`` and a
report refuses. Memory stays near ``MAX_LINE_BYTES`` whatever the input.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from lifecycle.errors import EventError

#: The longest line read: events are a few hundred bytes, so 1 MiB is generous.
MAX_LINE_BYTES = 1024 * 1024
#: What a dead letter keeps of a line over the limit.
LONG_LINE_KEPT = 4096
LINE_TOO_LONG = "line_too_long"


class LongLine(bytes):
    """The first ``LONG_LINE_KEPT`` bytes of a line over ``MAX_LINE_BYTES``; ``length`` is its whole size."""

    length: int
    limit: int

    def __new__(cls, head: bytes, length: int, limit: int = MAX_LINE_BYTES) -> "LongLine":
        line = super().__new__(cls, head)
        line.length = length
        line.limit = limit
        return line

    def error(self) -> EventError:
        return EventError(LINE_TOO_LONG, f"a line of {self.length:,} bytes; at most {self.limit:,} are read "
                          f"(the first {len(self):,} are kept)")


def read_lines(stream: BinaryIO, limit: int = MAX_LINE_BYTES, *, skip_long: bool = True
               ) -> Iterator[tuple[int, bytes, int]]:
    """``(line number from 1, line without its newline, bytes consumed)``; blank lines are skipped.

    A line longer than ``limit`` comes as a :class:`LongLine`, read past without being kept; with
    ``skip_long=False`` it comes at once (``length`` is then what was read of it) and ends the lines.
    """
    number = 0
    while True:
        raw = stream.readline(limit + 1)
        if not raw:
            return
        number += 1
        consumed = len(raw)
        if consumed > limit and not raw.endswith(b"\n"):
            head = raw[:LONG_LINE_KEPT]
            del raw
            if not skip_long:
                yield number, LongLine(head, consumed, limit), consumed
                return
            while True:  # the rest of the line, a chunk at a time
                chunk = stream.readline(limit)
                consumed += len(chunk)
                if not chunk or chunk.endswith(b"\n"):
                    break
            yield number, LongLine(head, consumed - (1 if chunk.endswith(b"\n") else 0), limit), consumed
            continue
        line = raw.rstrip(b"\r\n")
        if line.strip():
            yield number, line, consumed


#: Bytes ``read_blocks`` reads at a time.
CHUNK_BYTES = 1024 * 1024


def read_blocks(stream: BinaryIO, limit: int = MAX_LINE_BYTES, chunk_bytes: int = CHUNK_BYTES
                ) -> Iterator[list[tuple[int, bytes, int]]]:
    """The lines of ``read_lines`` (long ones skipped), in lists: what ``chunk_bytes`` of the stream
    hold, split at once (several times faster per line than a ``readline`` each). ``stream.read``
    waits for a whole chunk, so this is for files, not for a pipe whose lines should come as written.
    Memory stays near ``2 * chunk_bytes + limit`` whatever the input."""
    number = 0
    rest = b""
    while True:
        chunk = stream.read(chunk_bytes)
        if not chunk:
            break
        data = rest + chunk if rest else chunk
        end = data.rfind(b"\n")
        if end >= 0:
            rest = data[end + 1:]
            pieces = data[:end].split(b"\n")
            block = _split(pieces, number, limit)
            number += len(pieces)
            if block:
                yield block
        elif len(data) <= limit:
            rest = data
        else:  # a long line: read past it to its newline
            head, length, rest = data[:min(LONG_LINE_KEPT, limit + 1)], len(data), b""
            while True:
                chunk = stream.read(chunk_bytes)
                newline = chunk.find(b"\n")
                if newline >= 0:
                    number += 1
                    yield [(number, LongLine(head, length + newline, limit), length + newline + 1)]
                    rest = chunk[newline + 1:]
                    break
                length += len(chunk)
                if not chunk:
                    yield [(number + 1, LongLine(head, length, limit), length)]
                    return
    if rest:  # what followed the last newline read, lines of their own and one without a newline
        pieces = rest.split(b"\n")
        block = _split(pieces, number, limit, last_unterminated=True)
        if block:
            yield block


_plus_one = (1).__add__


def _split(pieces: list[bytes], number: int, limit: int, last_unterminated: bool = False
           ) -> list[tuple[int, bytes, int]]:
    """``read_lines``' items for ``pieces``, lines numbered from ``number + 1``, each consumed with
    its newline (but the last one if ``last_unterminated``). A long line keeps what ``read_lines``
    keeps of it: its first ``min(LONG_LINE_KEPT, limit + 1)`` bytes."""
    if not last_unterminated and b"\r" not in b"".join(pieces) and all(map(bytes.strip, pieces)) and \
            max(map(len, pieces), default=0) <= limit:
        # the common case, with no Python code per line: no carriage return, blank or long line
        return list(zip(range(number + 1, number + 1 + len(pieces)), pieces, map(_plus_one, map(len, pieces))))
    out = []
    append = out.append
    last = len(pieces) - 1 if last_unterminated else -1
    for at, raw in enumerate(pieces):
        number += 1
        consumed = len(raw) + (at != last)
        if not consumed:
            continue
        if len(raw) > limit:
            append((number, LongLine(raw[:min(LONG_LINE_KEPT, limit + 1)], len(raw), limit), consumed))
            continue
        line = raw.rstrip(b"\r")
        if line.strip():
            append((number, line, consumed))
    return out
