"""JSON lines read one at a time, each at most MAX_LINE_BYTES: a file without newlines costs no memory."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from hypothesis import given, settings, strategies as st

from leadflow.jsonlines import LINE_TOO_LONG, LONG_LINE_KEPT, LongLine, read_blocks, read_lines


def test_lines_numbers_and_bytes_consumed_blank_lines_skipped() -> None:
    stream = io.BytesIO(b'{"a":1}\r\n\n   \n{"b":2}')
    assert list(read_lines(stream)) == [(1, b'{"a":1}', 9), (4, b'{"b":2}', 7)]


def test_a_line_over_the_limit_is_a_long_line_and_the_next_lines_still_come() -> None:
    stream = io.BytesIO(b"x" * 10 + b"\n" + b"y" * 5000 + b"\n" + b"z" * 100 + b"\n")
    (first, second, third) = read_lines(stream, limit=100)
    assert first == (1, b"x" * 10, 11)
    number, line, consumed = second
    assert isinstance(line, LongLine) and (number, consumed, line.length) == (2, 5001, 5000)
    assert bytes(line) == b"y" * min(LONG_LINE_KEPT, 101)   # what was read of it, at most LONG_LINE_KEPT
    error = line.error()
    assert error.code == LINE_TOO_LONG == "line_too_long" and "5,000 bytes" in error.detail
    assert third == (3, b"z" * 100, 101)                       # exactly the limit: a line like any other


def test_a_long_last_line_without_newline_and_stopping_at_the_first_long_line() -> None:
    ((_, line, consumed),) = read_lines(io.BytesIO(b"q" * 250), limit=100)
    assert isinstance(line, LongLine) and line.length == consumed == 250
    lines = list(read_lines(io.BytesIO(b"q" * 250 + b"\n{}\n"), limit=100, skip_long=False))
    assert len(lines) == 1 and isinstance(lines[0][1], LongLine)   # nothing read past it


def _read_sparse(tmp_path: Path, size: int, read: Callable[[BinaryIO], list]) -> None:
    """A file of ``size`` NUL bytes and no newline (sparse: no disk used), then one line, read past
    in bounded memory: the long line is a ``LongLine`` and the next one still comes."""
    sparse = tmp_path / "sparse.jsonl"
    with open(sparse, "wb") as f:
        f.truncate(size)
        f.seek(0, io.SEEK_END)
        f.write(b'\n{"after":1}\n')
    tracemalloc.start()
    try:
        with open(sparse, "rb") as f:
            lines = read(f)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [n for n, _, _ in lines] == [1, 2] and lines[1][1] == b'{"after":1}'
    assert isinstance(lines[0][1], LongLine) and lines[0][1].length == size
    assert peak < 8 * 1024 * 1024, f"peak {peak:,} bytes"


def test_a_huge_sparse_file_is_read_past_in_bounded_memory(tmp_path: Path) -> None:
    _read_sparse(tmp_path, 256 * 1024 * 1024, lambda f: list(read_lines(f)))


pieces = st.sampled_from([b"\n", b"\r", b"\r\n", b" ", b"\t", b"{}", b'{"a":"b"}', b"x" * 9, b"y" * 10, b"z" * 11,
                          b"w" * 25, b"\x00"])


@settings(max_examples=300, deadline=None)
@given(st.lists(pieces, max_size=40), st.integers(1, 30))
def test_blocks_hold_the_lines_read_one_at_a_time(parts: list[bytes], chunk: int) -> None:
    data = b"".join(parts)
    one = list(read_lines(io.BytesIO(data), limit=10))
    blocks = [line for block in read_blocks(io.BytesIO(data), limit=10, chunk_bytes=chunk) for line in block]
    assert blocks == one
    assert [getattr(line, "length", None) for _, line, _ in blocks] == [getattr(line, "length", None) for _, line, _ in one]
    assert [type(line) for _, line, _ in blocks] == [type(line) for _, line, _ in one]


def test_blocks_read_past_a_huge_sparse_file_in_bounded_memory(tmp_path: Path) -> None:
    _read_sparse(tmp_path, 64 * 1024 * 1024, lambda f: [line for block in read_blocks(f) for line in block])
