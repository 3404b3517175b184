"""leadflow.replay.read_lines keeps the collector off the leads' rows while a replay reads, and
leaves it as it found it."""

from __future__ import annotations

import gc
import io

from leadflow.replay import FREEZE_EVERY, Source, read_lines


def test_reading_freezes_what_lives_and_restores_the_collector_at_the_end() -> None:
    before = gc.get_threshold()
    lines = b"".join(b'{"n":%d}\n' % i for i in range(FREEZE_EVERY + 2)) + b"  \n\n"
    reader = read_lines(Source("events.jsonl"), io.BytesIO(lines))
    seen = [next(reader) for _ in range(FREEZE_EVERY + 1)]
    assert seen[-1][0] == FREEZE_EVERY + 1
    assert gc.get_freeze_count() > 0 and gc.get_threshold()[0] >= 100_000  # while reading
    rest = list(reader)
    assert [number for number, _, _ in rest] == [FREEZE_EVERY + 2]  # blank lines skipped
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == before
