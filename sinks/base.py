"""The one contract every output sink keeps: ``add(record, position)``, ``flush()``, ``close()``.

- ``add`` hands a record to the sink, with the :class:`Position` it came from (a topic partition
  offset; a file and a line for a replay; None when nothing caused it). It never blocks for long and
  raises nothing but :class:`SinkFull` (the sink cannot take more now: flush, or wait
  ``retry_after`` s, then add the *same* record again) and :class:`SinkClosed`.
- ``flush`` returns once every record added so far is stored or delivered. Otherwise it raises one
  of two errors, and the adapter decides which, from what its driver said:

  * :class:`RecordRejected` — these records can never be stored (a NUL in a string, a value out of
    range, too large, a receiver that answers 400). Each comes with its position and the reason;
    every *other* record is stored, and the rejected ones are dropped from the sink.
  * :class:`StoreUnavailable` — the store failed, not a record (disk full, database locked or
    down, broker or endpoint unreachable). The sink keeps every record: flush again later.

- ``close`` flushes, then releases connections and threads; ``add`` after ``close`` raises
  :class:`SinkClosed`. What it still could not store it raises as above. Sinks are context managers.

``sinks.checkpoint.Checkpoint`` is the one caller that acts on the two errors (a rejected record
becomes a ``sink_refused`` dead letter, an unavailable store is retried and nothing is committed
past it). Re-adding a record is always safe: every adapter is idempotent by the record's id
(``record_id``): SQL upserts / ``ON CONFLICT DO NOTHING``, the webhook sends ``Idempotency-Key:
<alert_id>``, and Kafka consumers drop repeats by id (spec section 6).
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Final

from lifecycle.errors import LeadflowError
from lifecycle.records import AlertRecord, DlqRecord, LifecycleRecord, Record, record_key
from schemas.wire import record_json

#: DLQ error code of a record a store refused (``RecordRejected``) that has no code of its own
SINK_REFUSED: Final = "sink_refused"
#: a dead letter keeps at most this much of the refused record's JSON (its detail says so when cut)
MAX_DEAD_LETTER_ORIGINAL: Final = 64 * 1024
MAX_DEAD_LETTER_DETAIL: Final = 1000


@dataclass(frozen=True, slots=True)
class Position:
    """Where a record came from: ``topic``/``partition``/``offset`` of a Kafka message, or for a
    replay the file (``topic``) and the line (``offset``), ``partition`` None."""

    topic: str
    partition: int | None
    offset: int | None

    def __str__(self) -> str:
        if self.partition is None:
            return f"{self.topic}:{self.offset}"
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True, slots=True)
class Rejection:
    """One record a sink will never store, where it came from and why; ``code`` is the DLQ code its
    dead letter gets (``sink_refused`` unless the adapter has its own, e.g. ``webhook_failed``)."""

    record: Record
    position: Position | None
    reason: str
    code: str = SINK_REFUSED

    def dead_letter(self, origin: str) -> DlqRecord:
        """The DLQ record for it: its position (``origin`` as the topic when it has none), its key,
        the record's JSON as ``original`` (cut to ``MAX_DEAD_LETTER_ORIGINAL`` bytes) and the reason,
        NUL-free, so the dead letter itself can be stored where the record could not."""
        original = _record_bytes(self.record)
        detail = self.reason.replace("\x00", "\\x00")[:MAX_DEAD_LETTER_DETAIL]
        if len(original) > MAX_DEAD_LETTER_ORIGINAL:
            detail += f" (original cut to its first {MAX_DEAD_LETTER_ORIGINAL} of {len(original)} bytes)"
            original = original[:MAX_DEAD_LETTER_ORIGINAL]
        if isinstance(self.record, DlqRecord):
            key: bytes | None = self.record.key
        else:
            text = record_key(self.record)
            key = text.encode("utf-8", "surrogatepass") if text is not None else None
        where = self.position
        return DlqRecord(error=self.code, detail=detail,
                         source_topic=where.topic if where is not None else origin,
                         source_partition=where.partition if where is not None else None,
                         source_offset=where.offset if where is not None else None,
                         key=key,
                         original=original)


def _record_bytes(record: Record) -> bytes:
    """The record's wire JSON; for a value the wire form cannot hold (an integer beyond 64 bits,
    which may be why the store refused it), the same fields through the stdlib encoder."""
    try:
        return record_json(record)
    except (TypeError, ValueError, OverflowError):
        import json

        fields = {name: getattr(record, name) for name in record.__slots__}  # type: ignore[union-attr]
        return json.dumps(fields, default=repr, separators=(",", ":")).encode("utf-8", "surrogatepass")


class SinkError(LeadflowError):
    """A sink could not store or deliver records (the underlying error is chained)."""


class RecordRejected(SinkError):
    """Records the store refuses for good; every other record of the flush was stored."""

    def __init__(self, rejections: Sequence[Rejection]) -> None:
        if not rejections:
            raise ValueError("RecordRejected names at least one record")
        self.rejections: tuple[Rejection, ...] = tuple(rejections)
        first = self.rejections[0]
        more = f" (and {len(self.rejections) - 1} more)" if len(self.rejections) > 1 else ""
        where = f" from {first.position}" if first.position is not None else ""
        super().__init__(f"{record_kind(first.record)} {record_id(first.record)}{where} refused: "
                         f"{first.reason}{more}")


class StoreUnavailable(SinkError):
    """The store failed, not a record: retry later. The sink kept every record it was given."""


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


def record_kind(record: Record) -> str:
    return {LifecycleRecord: "transition", AlertRecord: "alert"}.get(type(record), "dead letter")


class Sink(abc.ABC):
    """Base of every sink. Subclasses implement ``add``, ``flush`` and ``close``."""

    @abc.abstractmethod
    def add(self, record: Record, position: Position | None = None) -> None:
        """Take one record; may raise :class:`SinkFull` (retry later) or :class:`SinkClosed`."""

    @abc.abstractmethod
    def flush(self) -> None:
        """Store / deliver everything added so far; :class:`RecordRejected` or :class:`StoreUnavailable`."""

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

    def abort(self) -> None:
        """Stop work in progress now (Ctrl-C, a shutdown that cannot wait): ``close`` then reports
        what was not stored instead of waiting for it. Nothing to stop by default."""

    def add_all(self, records: Iterable[Record]) -> int:
        """``add`` each record (no position, no retry on :class:`SinkFull`); return how many were added."""
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
    """In memory, for tests: ``records`` holds what was added (``positions`` where each came from),
    ``flushed`` what was flushed. It never fails: memory is its store.

    It stores what it is given, repeats included (like a Kafka topic): the test sees exactly what a
    pipeline emitted. ``unique()`` drops repeats by ``record_id`` the way a consumer would.
    """

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.positions: list[Position | None] = []
        self.flushed: list[Record] = []
        self.closed = False

    def add(self, record: Record, position: Position | None = None) -> None:
        if self.closed:
            raise SinkClosed("add on a closed ListSink")
        self.records.append(record)
        self.positions.append(position)

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

    def __repr__(self) -> str:
        return f"ListSink(records={len(self.records)}, closed={self.closed})"


class FanOut(Sink):
    """Every record to several sinks (e.g. SQL for analytics, a webhook for alerting).

    ``add`` offers the record to every sink even when one is full, then raises :class:`SinkFull` with
    the longest ``retry_after``; adding the record again later is safe because every sink is idempotent
    by record id. ``flush``/``close`` reach every sink, then raise :class:`StoreUnavailable` if one
    sink's store is unavailable (the rejections seen meanwhile are kept and raised by the next flush
    that gets through), else :class:`RecordRejected` with every sink's rejections. An error that is
    neither counts as unavailable: nothing is given up on an error nobody classified.
    """

    def __init__(self, *sinks: Sink) -> None:
        if not sinks:
            raise ValueError("FanOut needs at least one sink")
        self.sinks: tuple[Sink, ...] = sinks
        self.closed = False
        self._rejected: list[Rejection] = []

    def add(self, record: Record, position: Position | None = None) -> None:
        if self.closed:
            raise SinkClosed("add on a closed FanOut")
        full: list[SinkFull] = []
        for sink in self.sinks:
            try:
                sink.add(record, position)
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

    def abort(self) -> None:
        for sink in self.sinks:
            sink.abort()

    def _each(self, method: str) -> None:
        unavailable: list[BaseException] = []
        for sink in self.sinks:
            try:
                getattr(sink, method)()
            except RecordRejected as exc:
                self._rejected.extend(exc.rejections)
            except Exception as exc:  # noqa: BLE001 - every sink gets its turn
                unavailable.append(exc)
        if unavailable:
            first = unavailable[0]
            if isinstance(first, StoreUnavailable) and len(unavailable) == 1:
                raise first
            raise StoreUnavailable(f"{len(unavailable)} of {len(self.sinks)} sinks failed; first: {first}") from first
        if self._rejected:
            rejected, self._rejected = self._rejected, []
            raise RecordRejected(rejected)

    def __repr__(self) -> str:
        return f"FanOut({', '.join(repr(s) for s in self.sinks)})"
