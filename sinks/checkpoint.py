"""Flush the sinks, then commit the source positions: the one rule between a stream and its stores.

A :class:`Checkpoint` takes each record with its source :class:`~sinks.base.Position` (``add``);
``commit`` flushes the sink and only then hands the positions over (the relay commits them as Kafka
offsets). What the sink's flush says decides the rest:

- :class:`~sinks.base.RecordRejected`: each refused record becomes a dead letter (code
  ``sink_refused``, or the adapter's own, e.g. ``webhook_failed``; its position, key, JSON and the
  reason). The rest of the batch is stored, the dead letters are stored too, and the positions are
  committed: a record that can never be stored does not stop the stream.
- :class:`~sinks.base.StoreUnavailable`, or any error no adapter classified: the sink kept the
  records, so the flush is retried with back-off. Nothing is committed past them and nothing is
  dead-lettered. The wait ends when ``stop`` is set (``commit`` answers False: the caller stops
  without committing, and the records come again) or, with ``give_up_after``, by raising the
  ``StoreUnavailable`` (a replay must end).
- :class:`~sinks.base.SinkFull` from ``add``: the checkpoint commits what it holds (the flush drains
  the sink), then adds the same record again.

Dead letters go to the sink itself (a SQL sink keeps them in ``dlq_records``; the webhook and a list
ignore them) and to ``dead_letters``: a sink flushed before the commit (the relay's DLQ topic), or a
callable (the replay's ``dlq.jsonl``). A dead letter that is itself refused is logged and counted
(``unstorable``), never retried for ever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from lifecycle.records import DlqRecord, Record
from sinks.base import Position, RecordRejected, Rejection, Sink, SinkClosed, SinkFull, StoreUnavailable

log = logging.getLogger("leadflow.sinks")

#: back-off between tries of an unavailable store: doubles from the first value up to the second (s)
BACKOFF: Final = (0.5, 30.0)

Offsets = Mapping[tuple[str, int | None], int]
"""(topic, partition) -> the next offset to read: everything before it is stored."""

DeadLetterTarget = Sink | Callable[[DlqRecord], None]


class Checkpoint:
    """Records with their positions into ``sink``; see the module docstring for the rule.

    ``commit(offsets)`` is called after each successful flush with the offsets covered since the
    last one (for a file, the line after the last one stored). ``origin`` is the source topic of
    dead letters whose record has no position (a replay's records released by the clock at the end).
    The checkpoint owns ``sink`` and a ``dead_letters`` sink: ``close`` closes both. Each dead
    letter is logged unless ``log_each`` is False (a replay counts them in its summary instead).
    """

    def __init__(
        self,
        sink: Sink,
        *,
        commit: Callable[[Offsets], None] | None = None,
        dead_letters: DeadLetterTarget | None = None,
        stop: threading.Event | None = None,
        give_up_after: float | None = None,
        backoff: tuple[float, float] = BACKOFF,
        origin: str = "unknown",
        name: str = "sinks",
        log_each: bool = True,
    ) -> None:
        self.sink = sink
        self.dead_letters = dead_letters
        self.stop = stop if stop is not None else threading.Event()
        self.give_up_after = give_up_after
        self.backoff = backoff
        self.origin = origin
        self.name = name
        self.log_each = log_each
        self._commit = commit
        self._offsets: dict[tuple[str, int | None], int] = {}
        self._pending = 0
        self.closed = False
        # counters
        self.added = 0                             # records the sink took
        self.committed = 0                         # records covered by a successful commit
        self.failures = 0                          # failed tries of an unavailable store (each logged)
        self.dead_lettered: Counter[str] = Counter()  # dead letters handed on, by code
        self.unstorable = 0                        # dead letters refused in turn (logged)

    # -- the two steps ---------------------------------------------------------------------------

    def add(self, record: Record, position: Position | None = None) -> bool:
        """Hand ``record`` to the sink; True once taken, False if stopped first."""
        retry = _Retry(self, "adding a record")
        while True:
            try:
                self.sink.add(record, position)
                break
            except SinkFull as full:
                if self._pending:
                    if not self.commit():      # drains the sink, then the same record again
                        return False
                elif not retry.wait(full, full.retry_after):
                    return False
            except SinkClosed:
                raise
            except Exception as exc:  # noqa: BLE001 - add fails only like a store: try again
                if not retry.wait(exc):
                    return False
        self._pending += 1
        self.added += 1
        if position is not None and position.offset is not None:
            where = (position.topic, position.partition)
            following = position.offset + 1
            if following > self._offsets.get(where, following - 1):
                self._offsets[where] = following
        return True

    def commit(self) -> bool:
        """Flush the sink, store the dead letters of what it refused, then commit the positions.
        True once committed; False if stopped first (nothing committed). Raises
        ``StoreUnavailable`` after ``give_up_after`` s of failures, and what ``commit`` raises."""
        rejected = self._flush(self.sink, "flushing")
        if rejected is None:
            return False
        if rejected:
            if not self._dead_letter([r.dead_letter(self.origin) for r in rejected], into_sink=True):
                return False
        if isinstance(self.dead_letters, Sink):
            refused = self._flush(self.dead_letters, "flushing the dead letters")
            if refused is None:
                return False
            self._unstorable(refused)
        if self._commit is not None and self._offsets:
            self._commit(dict(self._offsets))
        self._offsets.clear()
        self.committed += self._pending
        self._pending = 0
        return True

    def close(self, abort: bool = False) -> None:
        """Commit what was added (unless ``abort``: Ctrl-C, no waiting; or stopped: nothing more is
        committed), then close the sink and dead-letter what it reports it could not deliver (the
        webhook's queued alerts), then close ``dead_letters``. Raises the sink's ``SinkError`` if it
        could not store what it held."""
        if self.closed:
            return
        self.closed = True
        failure: BaseException | None = None
        try:
            if abort:
                self.sink.abort()
            elif self._pending and not self.stop.is_set():   # stopped: the records come again
                self.commit()
        except BaseException as exc:  # noqa: BLE001 - closed below whatever happened (Ctrl-C too)
            failure = exc
            self.sink.abort()         # no more waiting for what could not be committed
        try:
            self.sink.close()
        except RecordRejected as exc:
            self._dead_letter([r.dead_letter(self.origin) for r in exc.rejections], into_sink=False)
        except BaseException as exc:  # noqa: BLE001
            failure = failure or exc
        if isinstance(self.dead_letters, Sink):
            try:
                self.dead_letters.close()
            except RecordRejected as exc:
                self._unstorable(exc.rejections)
            except BaseException as exc:  # noqa: BLE001
                failure = failure or exc
        if failure is not None:
            raise failure

    # -- helpers ---------------------------------------------------------------------------------

    def _flush(self, sink: Sink, what: str) -> list[Rejection] | None:
        """Flush ``sink`` until it stores or refuses; its rejections, or None if stopped first."""
        retry = _Retry(self, what)
        while True:
            try:
                sink.flush()
                return []
            except RecordRejected as exc:
                return list(exc.rejections)     # the rest is stored
            except SinkClosed:
                raise
            except Exception as exc:  # noqa: BLE001 - unavailable, or unclassified: nothing given up
                if not retry.wait(exc):
                    return None

    def _dead_letter(self, dead: Sequence[DlqRecord], *, into_sink: bool) -> bool:
        """Hand ``dead`` to ``dead_letters`` and (``into_sink``) store it in the sink; False if stopped."""
        for record in dead:
            self.dead_lettered[record.error] += 1
            if self.log_each:
                where = Position(record.source_topic, record.source_partition, record.source_offset)
                log.warning("%s: the record from %s was not stored, dead letter %s: %s", self.name, where,
                            record.error, record.detail)
            target = self.dead_letters
            if isinstance(target, Sink):
                if not self._add_to(target, record):
                    return False
            elif target is not None:
                target(record)
            if into_sink and not self._add_to(self.sink, record):
                return False
        if into_sink and dead:
            refused = self._flush(self.sink, "storing dead letters")
            if refused is None:
                return False
            self._unstorable(refused)
        return True

    def _add_to(self, sink: Sink, record: Record) -> bool:
        retry = _Retry(self, "adding a dead letter")
        while True:
            try:
                sink.add(record)
                return True
            except SinkFull as full:
                if not retry.wait(full, full.retry_after):
                    return False
            except SinkClosed:
                raise
            except Exception as exc:  # noqa: BLE001
                if not retry.wait(exc):
                    return False

    def _unstorable(self, refused: Sequence[Rejection]) -> None:
        for rejection in refused:
            self.unstorable += 1
            log.error("%s: a dead letter was refused in turn (%s); it is lost: %r", self.name,
                      rejection.reason, rejection.record)


class _Retry:
    """Back-off for one operation: doubling waits, ended by ``stop`` or by ``give_up_after``."""

    def __init__(self, checkpoint: Checkpoint, what: str) -> None:
        self.checkpoint = checkpoint
        self.what = what
        self.delay = checkpoint.backoff[0]
        self.started: float | None = None

    def wait(self, error: BaseException, delay: float | None = None) -> bool:
        """Wait before the next try; False if stopped meanwhile. Raises ``StoreUnavailable`` once
        the store has been failing for ``give_up_after`` s."""
        cp = self.checkpoint
        now = time.monotonic()
        if self.started is None:
            self.started = now
        full = isinstance(error, SinkFull)
        if not full:
            cp.failures += 1
        elapsed = now - self.started
        if cp.give_up_after is not None and elapsed >= cp.give_up_after:
            reason = f"{cp.name}: {self.what} failed for {elapsed:.1f} s, giving up: {error}"
            raise StoreUnavailable(reason) from error
        pause = self.delay if delay is None else delay
        if cp.give_up_after is not None:
            pause = min(pause, cp.give_up_after - elapsed)
        if not full:
            log.error("%s: %s failed (%s: %s); nothing committed, again in %.1f s", cp.name, self.what,
                      type(error).__name__, error, pause)
            self.delay = min(self.delay * 2, cp.backoff[1])
        return not cp.stop.wait(max(pause, 0.0))


__all__ = ["BACKOFF", "Checkpoint", "Offsets"]
