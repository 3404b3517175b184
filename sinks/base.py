"""The one contract every output sink keeps: ``add(record)``, ``flush()``, ``close()``.

- ``add`` hands a record to the sink and never blocks event processing for long. A sink that cannot
  take more right now raises :class:`SinkFull` with ``retry_after`` seconds: the caller waits that long
  and adds the *same* record again.
- ``flush`` returns once every record added so far is stored or delivered (or, for a sink that can
  give up on a record, handed to its dead-letter target).
- ``close`` flushes, then releases connections and threads; ``add`` after ``close`` raises
  :class:`SinkClosed`. Sinks are context managers.

Re-adding a record is always safe: every adapter is idempotent by the record's id (``record_id``):
SQL upserts / ``ON CONFLICT DO NOTHING``, the webhook sends ``Idempotency-Key: <alert_id>``, and Kafka
consumers drop repeats by id (spec section 6).
"""

from __future__ import annotations

import abc
import hashlib
import threading
import time
from collections.abc import Iterable
from types import TracebackType

from lifecycle.errors import LeadflowError
from lifecycle.records import AlertRecord, DlqRecord, LifecycleRecord, Record


class SinkError(LeadflowError):
    """A sink could not store or deliver records (the underlying error is chained)."""


class SinkFull(SinkError):
    """Back-pressure: the sink cannot take the record now; add it again after ``retry_after`` s."""

    def __init__(self, retry_after: float, detail: str = "sink is full") -> None:
        self.retry_after = retry_after
        super().__init__(f"{detail}; retry after {retry_after:.3f}s")


class SinkClosed(SinkError):
    """``add`` or ``flush`` on a sink that was closed."""


def record_id(record: Record) -> str:
    """The identity a sink deduplicates on: ``transition_id``, ``alert_id``, or for a DLQ record a
    digest of where it came from and its bytes (the same bad message always gives the same id)."""
    if isinstance(record, LifecycleRecord):
        return record.transition_id
    if isinstance(record, AlertRecord):
        return record.alert_id
    digest = hashlib.blake2b(digest_size=16)
    for part in (record.source_topic, str(record.source_partition), str(record.source_offset), record.error):
        digest.update(part.encode())
        digest.update(b"\x1f")
    digest.update(record.original)
    return digest.hexdigest()


def deliver(sink: "Sink", record: Record, stop: threading.Event | None = None) -> bool:
    """Add ``record``, waiting out back-pressure (:class:`SinkFull`) for as long as it takes.

    True once the sink took the record. With ``stop``, the wait ends when ``stop`` is set: then the
    record was not added and the answer is False (the sink relay stops without committing).
    """
    while True:
        try:
            sink.add(record)
            return True
        except SinkFull as full:
            if stop is None:
                time.sleep(full.retry_after)
            elif stop.wait(full.retry_after):
                return False


class Sink(abc.ABC):
    """Base of every sink. Subclasses implement ``add``, ``flush`` and ``close``."""

    @abc.abstractmethod
    def add(self, record: Record) -> None:
        """Take one record; may raise :class:`SinkFull` (retry later) or :class:`SinkClosed`."""

    @abc.abstractmethod
    def flush(self) -> None:
        """Store / deliver everything added so far."""

    closed: bool = False

    def close(self) -> None:
        """Flush, then release resources. Idempotent; released even when the flush fails."""
        if self.closed:
            return
        try:
            self.flush()
        finally:
            self.closed = True
            self._release()

    def _release(self) -> None:
        """Free what the sink holds (a connection, a producer); nothing by default."""

    def add_all(self, records: Iterable[Record]) -> int:
        """``add`` each record (no retry on :class:`SinkFull`); return how many were added."""
        n = 0
        for record in records:
            self.add(record)
            n += 1
        return n

    def __enter__(self) -> "Sink":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class ListSink(Sink):
    """In memory, for tests: ``records`` holds what was added, ``flushed`` what was flushed.

    It stores what it is given, repeats included (like a Kafka topic): the test sees exactly what a
    pipeline emitted. ``unique()`` drops repeats by ``record_id`` the way a consumer would.
    """

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.flushed: list[Record] = []
        self.closed = False

    def add(self, record: Record) -> None:
        if self.closed:
            raise SinkClosed("add on a closed ListSink")
        self.records.append(record)

    def flush(self) -> None:
        if self.closed:
            raise SinkClosed("flush on a closed ListSink")
        self.flushed = list(self.records)

    def unique(self) -> list[Record]:
        seen: set[str] = set()
        out: list[Record] = []
        for record in self.records:
            key = record_id(record)
            if key not in seen:
                seen.add(key)
                out.append(record)
        return out

    def of_type(self, kind: type[LifecycleRecord] | type[AlertRecord] | type[DlqRecord]) -> list[Record]:
        return [r for r in self.records if isinstance(r, kind)]

    def __repr__(self) -> str:
        return f"ListSink(records={len(self.records)}, closed={self.closed})"


class FanOut(Sink):
    """Every record to several sinks (e.g. SQL for analytics, a webhook for alerting).

    ``add`` offers the record to every sink even when one is full, then raises :class:`SinkFull` with
    the longest ``retry_after``; adding the record again later is safe because every sink is idempotent
    by record id. ``flush``/``close`` reach every sink and raise the first error afterwards.
    """

    def __init__(self, *sinks: Sink) -> None:
        if not sinks:
            raise ValueError("FanOut needs at least one sink")
        self.sinks: tuple[Sink, ...] = sinks
        self.closed = False

    def add(self, record: Record) -> None:
        if self.closed:
            raise SinkClosed("add on a closed FanOut")
        full: list[SinkFull] = []
        for sink in self.sinks:
            try:
                sink.add(record)
            except SinkFull as exc:
                full.append(exc)
        if full:
            raise SinkFull(max(e.retry_after for e in full), f"{len(full)} of {len(self.sinks)} sinks full")

    def flush(self) -> None:
        if self.closed:
            raise SinkClosed("flush on a closed FanOut")
        self._each("flush")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._each("close")

    def _each(self, method: str) -> None:
        first: BaseException | None = None
        for sink in self.sinks:
            try:
                getattr(sink, method)()
            except Exception as exc:  # noqa: BLE001 - every sink gets its turn; the first error wins
                first = first or exc
        if first is not None:
            raise first

    def __repr__(self) -> str:
        return f"FanOut({', '.join(repr(s) for s in self.sinks)})"
