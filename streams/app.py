"""The live worker: faust I/O around the shared application step (``lifecycle.application``).

One agent reads the four input topics, the repartition topic (``Topics.events_by_lead``) and the
timer-command topic (``Topics.timer_commands``); all of them and the table's changelog have the same
partition count, so faust's assignor gives partition ``p`` of every one of them to the same worker.

- An input message is decoded; a bad one becomes a DLQ record (never an exception). A good one is
  processed where it is when its key is the lead id and its partition is the lead's
  (``murmur2(lead_id) % N``, Kafka's default partitioner); otherwise it is forwarded, unchanged, to
  the repartition topic on the lead's partition. So a lead's state lives on one partition only.
- Lead state is one table row (``streams.rows``: version, wake-up, lead, outbox, held events),
  always assigned back (``table[k] = v``), so every change reaches the compacted changelog.
- Ownership (``streams.ownership``, hooks marked ``[ownership]``): a message is processed, and its
  row and output written, only for a partition this worker serves, in the generation the message
  was fetched in, within a lease that heartbeats renew; a stalled worker that lost its partitions
  writes nothing. Recovery and standby replicas keep the highest row version per lead.
- Commits: an offset is committed only once the changelog writes of the messages before it are
  acknowledged (``DurableBuffer``); a partition nobody committed is read from its beginning
  (``seek_to_committed``); on Tansu, recovery reads to the exact end (``exact_end_offsets``).
- Recovery reads each active changelog partition in bulk before faust's per-record path would
  (``streams.recovery.BulkRecovery``), through the same ``apply_changelog_batch``.
- The outbox: a changelog write can reach the broker while the output records of the same message
  are still unsent, and a crash then would lose them: reprocessing finds the event a duplicate and
  emits nothing. So each message that produced records keeps
  ``[message_id, topic, partition, offset, [[kind, json], ...]]`` in the row until its source offset
  is committed (cap ``OUTBOX_CAP``); a repeat of that message re-emits them. Output ids are
  deterministic, so consumers drop the repeats.
- Timers: the pending deadline is part of the lead (``Lead.wake_at``), hence durable. Each active
  partition has an in-memory ``TimerSet``, rebuilt from the table after recovery; a 100 ms tick
  sends a command for every due lead to the timer-command topic on the lead's partition, and the
  agent applies it with ``Engine.fire`` at the wall clock.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import faust
import orjson
from faust.types import TP
from kafka.partitioner.default import murmur2

from lifecycle.application import Application, Position, Row, Step
from lifecycle.engine import Engine
from lifecycle.errors import EventError, RecordTooLarge, StoreFailure
from lifecycle.events import LeadEvent
from lifecycle.policy import Policy
from lifecycle.records import AlertRecord, DlqRecord, LifecycleRecord
from lifecycle.timers import TimerSet
from schemas import codec
from schemas.secrets import Secret
from schemas.wire import format_time
from streams import rows
from streams.faust_patches import Transport, committed_offset, forget, paused_partitions
from streams.metrics import CONTENT_TYPE, Metrics
from streams.ownership import Ownership, newest_rows, stamped
from streams.output import JsonOutput, Output
from streams.partitioning import PlacementWatch
from streams.recovery import LeadflowTableManager
from streams.settings import faust_settings
from streams.topics import TABLE, Topics

log = logging.getLogger("leadflow.worker")

#: Timer tick, seconds: due deadlines are turned into commands this often.
TIMER_TICK = 0.1
#: A lead's row larger than this is not written (the broker's default message limit is 1 MiB): its
#: event is dead-lettered instead. Input limits (``schemas.codec``) keep real rows far below it.
MAX_ROW_BYTES = 900 * 1024
#: Waits between retries of a message whose store failed (seconds), growing to the last.
STORE_RETRY = (0.5, 1.0, 2.0, 5.0)
#: How long a store may fail before the worker stops (a RocksDB store that hit a full disk stays
#: read-only until it is reopened, so a restart is what brings it back): ``LEADFLOW_STORE_RETRY_SECONDS``.
STORE_RETRY_SECONDS = 60.0
#: A timer command not seen back within this long is sent again (it is idempotent).
INFLIGHT_RESEND_MS = 10_000
#: A partition with a backlog that applies nothing for this long is re-read from its frontier (the
#: first record not applied): a guard for records faust drops after a seek, and for stalls of other
#: origins (faust-streaming #216/#221/#629). Re-reading is safe because applying an event twice
#: changes nothing (event-id dedupe) and a repeat re-emits its outbox.
STALL_SECONDS = 5.0
#: faust knobs for throughput (no change of semantics); see bench/worker_bench.py.
WORKER_SETTINGS: dict[str, Any] = {
    "stream_buffer_maxsize": 16384,
    "broker_max_poll_records": 2000,
    "producer_linger_ms": 5,
}


#: W3C trace-context headers: carried from an input event to everything it causes, so a platform
#: team's tracing follows a lead from its source to its alert (also across the repartition hop).
TRACE_HEADERS = ("traceparent", "tracestate")


def trace_headers(headers: Any) -> list[tuple[str, bytes]]:
    """The trace-context headers among a message's headers (a list of pairs or a mapping)."""
    if not headers:
        return []
    pairs = headers.items() if hasattr(headers, "items") else headers
    return [(name, value) for name, value in pairs if name in TRACE_HEADERS and value is not None]


#: Lead ids whose partition is remembered (``partition_for``): a lead's events come close together.
PARTITION_CACHE = 16384


@functools.lru_cache(maxsize=PARTITION_CACHE)
def partition_for(lead_id: str, partitions: int) -> int:
    """The partition of ``lead_id``: Kafka's default (Java) partitioner, as aiokafka and faust use.

    kafka-python's murmur2 is pure Python (~2 us for a lead id) and the agent asks once per input
    event, so recent answers are kept (a pure function of its arguments)."""
    return (murmur2(lead_id.encode()) & 0x7FFFFFFF) % partitions


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class LeadTable(faust.Table):
    """The lead table; tells its owner about rebalances and completed recoveries."""

    owner: "LeadflowApp | None" = None

    def __init__(self, app: faust.App, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        # Raw bytes both ways, set before the changelog topic and the store are made from them: the
        # changelog key is the lead id itself, as on every other topic (so faust's router hashes the
        # same bytes as the producers did), and the value is our own JSON document.
        self.key_serializer = self.value_serializer = "raw"

    async def on_rebalance(self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP],
                           generation_id: int = 0) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        if self.owner is not None:
            self.owner.on_rebalance(assigned)

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)
        if self.owner is not None:
            self.owner.on_recovered({tp.partition for tp in active_tps})
            # [ownership] the rows are complete: these partitions may be written from now on
            self.owner.ownership.serve(self.app.consumer_generation_id, {tp.partition for tp in active_tps})

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        """[ownership] Recovery and standby replicas keep the highest row version per lead."""
        super().apply_changelog_batch(newest_rows(batch, self._to_key, rows.version_of, self._stored_version))

    def _stored_version(self, key: Any) -> int:
        try:
            return rows.version_of(self.data[key])
        except KeyError:
            return -1


# -- the app ----------------------------------------------------------------------------------------

@dataclass(eq=False)
class LeadflowApp:
    app: faust.App
    table: LeadTable
    topics: Topics
    application: Application
    metrics: Metrics = field(default_factory=Metrics)
    #: wire format of the output records (``LEADFLOW_FORMAT``)
    output: Output = field(default_factory=JsonOutput)
    #: partition -> its pending deadlines (active partitions only)
    timers: dict[int, TimerSet] = field(default_factory=dict)
    #: partition -> lead_id -> (due, sent_at) of timer commands on their way
    inflight: dict[int, dict[str, tuple[int, int]]] = field(default_factory=dict)
    #: partitions whose TimerSet was rebuilt from the table since they were assigned
    scanned: set[int] = field(default_factory=set)
    recovered: bool = False
    lookup: Any = None
    #: why the last message could not be stored (``StoreFailure``), while it is being retried
    store_failure: str | None = None
    store_retry_seconds: float = STORE_RETRY_SECONDS
    #: an event more than this far ahead of the wall clock is dead-lettered (``future_timestamp``)
    future_margin_ms: int = 3_600_000
    #: why the worker stopped itself, if it did
    fatal: str | None = None
    #: source partition -> (committed offset last seen, monotonic time it was first seen)
    progress: dict[TP, tuple[int, float]] = field(default_factory=dict)
    #: per source: events that arrived off their lead's partition (a CRC32 producer is named once)
    placement: PlacementWatch = field(default_factory=PlacementWatch)
    #: what this worker may write now (``streams.ownership``; ``build_app`` gives the real one)
    ownership: Ownership = field(default_factory=lambda: Ownership(session_timeout=60.0))

    @property
    def partitions(self) -> int:
        return self.topics.partitions

    @property
    def source_topics(self) -> tuple[str, ...]:
        return (*self.topics.inputs, self.topics.events_by_lead, self.topics.timer_commands)

    def partition_for(self, lead_id: str) -> int:
        return partition_for(lead_id, self.partitions)

    def pending_timers(self) -> int:
        return sum(len(t) for t in list(self.timers.values()))

    # -- rebalance and recovery ---------------------------------------------------------------
    def on_rebalance(self, assigned: Iterable[TP]) -> None:
        self.progress.clear()  # recovery time is not a stall: the watchdog starts counting afresh
        if self.ownership.take_lost():  # [ownership] others may have moved deadlines meanwhile
            self.scanned.clear()
        mine = {tp.partition for tp in assigned if tp.topic == self.topics.timer_commands}
        for p in list(self.timers):
            if p not in mine:
                del self.timers[p]
        for p in list(self.inflight):
            if p not in mine:
                del self.inflight[p]
        self.scanned &= mine

    def on_recovered(self, active: set[int]) -> None:
        """Rebuild the TimerSet of each newly active partition with one scan of the table."""
        todo = active - self.scanned
        if todo:
            started = time.monotonic()
            fresh = {p: TimerSet() for p in todo}
            for key, raw in self.table.items():
                # the wake-up first (read off the row's first bytes): most leads have none, and
                # hashing every key (murmur2, pure Python) cost more than the rows' parsing
                wake = rows.wake_of(raw) if raw else None
                if wake is not None:
                    timers = fresh.get(self.partition_for(key))
                    if timers is not None:
                        timers.set(key, wake)
            for p, timers in fresh.items():
                self.timers[p] = timers
                self.inflight[p] = {}
            self.scanned |= todo
            log.info("timers rebuilt for partitions %s: %d pending (%.3f s)", sorted(todo),
                     sum(len(t) for t in fresh.values()), time.monotonic() - started)
        for p in list(self.timers):
            if p not in active:
                del self.timers[p]
                self.scanned.discard(p)
        self.progress.clear()
        self.recovered = True

    # -- state ----------------------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        return self.application.engine

    def use_policy(self, policy: Policy) -> None:
        """Judge by ``policy`` from the next message on (call on the event loop, between messages):
        running SLAs keep the deadlines stored in their leads."""
        self.application.engine = Engine(policy)

    def load(self, lead_id: str) -> Row:
        raw = self.table.get(lead_id)
        return rows.decode(raw) if raw else rows.EMPTY

    def committed(self, position: Position) -> bool:
        """Whether the consumer group has committed past ``position`` (its output need not be kept)."""
        done = committed_offset(self.app.consumer, position.topic, position.partition)
        return done is not None and done > position.offset

    async def _save_and_send(self, lead_id: str, step: Step, message: Any,
                             headers: list[tuple[str, bytes]] | None = None) -> bool:
        """Save the step's row (if it changed) and send what the step says, in that order; False
        if the partition is no longer served here (nothing written)."""
        ownership = self.ownership  # [ownership] checked again before writing (fast path first)
        if not (ownership.admits(message) or await ownership.admit(message)):
            return False
        if step.late_ms:
            for late in step.late_ms:
                self.metrics.late_events.inc()
                self.metrics.lateness_of_events.observe(late / 1000)
        if step.changed:
            row = step.row
            # [ownership] outranks every row of an earlier generation (a stalled owner's late write)
            encoded = rows.encode(row, stamped(row.version, message.generation_id))
            if len(encoded) > MAX_ROW_BYTES:
                raise RecordTooLarge(f"row of {lead_id[:64]!r} would be {len(encoded)} bytes")
            try:
                self.table[lead_id] = encoded
            except Exception as exc:  # noqa: BLE001 - whatever the store raised: the store's fault
                raise StoreFailure(f"state store: {exc}") from exc
            self._schedule(message.partition, lead_id, row.wake_at)
            for record in step.records:
                if isinstance(record, LifecycleRecord):
                    self.metrics.transitions_to(record.to_stage).inc()
                else:
                    self.metrics.alerts_of(record.type).inc()
        elif step.sends:
            self.metrics.reemitted.inc(len(step.sends))
        if step.sends:
            await self._send(lead_id, step.sends, headers)
        return True

    async def _send(self, lead_id: str, sends: Iterable[tuple[str, str]],
                    headers: list[tuple[str, bytes]] | None = None) -> None:
        key = lead_id.encode()
        output = self.output
        for kind, payload in sends:
            if kind == rows.LIFECYCLE:
                topic, value = self.topics.topic_for(LifecycleRecord), payload.encode("latin-1")
            elif kind == rows.ALERT:
                topic, value = self.topics.topic_for(AlertRecord), payload.encode("latin-1")
            elif kind == rows.LIFECYCLE_JSON:  # kept by an older worker
                topic, value = self.topics.topic_for(LifecycleRecord), output.lifecycle(payload)
            else:
                topic, value = self.topics.topic_for(AlertRecord), output.alert(payload)
            await self._produce(topic, key, value, headers=headers)

    def keep(self, record: Any) -> rows.Kept:
        """A new record as the outbox keeps it: encoded once, in the output's format."""
        return rows.keep(record, self.output.encode(record))

    async def _produce(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None,
                       headers: list[tuple[str, bytes]] | None = None) -> None:
        """Hand one message to the producer; a failure there is the broker's (``StoreFailure``)."""
        if len(value) > MAX_ROW_BYTES:
            raise RecordTooLarge(f"a {len(value)}-byte record for {topic}")
        try:
            await self.app.producer.send(topic, key, value, partition, None, headers or None)
        except Exception as exc:  # noqa: BLE001
            raise StoreFailure(f"producer ({topic}): {exc}") from exc

    def _schedule(self, partition: int, lead_id: str, wake: int | None) -> None:
        timers = self.timers.get(partition)
        if timers is None:      # first write before the post-recovery scan: the scan will redo it
            timers = self.timers[partition] = TimerSet()
            self.inflight.setdefault(partition, {})
        sent = self.inflight[partition].get(lead_id)
        if wake is not None and sent is not None and sent[0] == wake:
            return              # its command is on the way
        timers.set(lead_id, wake)

    # -- the agent's work, per message ----------------------------------------------------------
    async def handle(self, message: Any) -> bool:
        """Apply one message; False if it was given up (its partition is no longer served here)."""
        topic = message.topic
        if topic == self.topics.timer_commands:
            return await self._on_timer_command(message)
        value = message.value if message.value is not None else b""
        try:
            event = codec.decode(value, self.lookup)
        except EventError as error:
            await self._dead_letter(message, value, error)
            return True
        future = codec.check_not_future(event, now_ms(), self.future_margin_ms)
        if future is not None:  # live, the wall clock judges SLAs: an event from the future cannot be
            await self._dead_letter(message, value, future)
            return True
        lead_id = event.lead_id
        p = self.partition_for(lead_id)
        key = lead_id.encode()
        headers = trace_headers(message.headers)
        if topic != self.topics.events_by_lead and (note := self.placement.observe(
                event.source or topic, message.partition != p or message.key != key)):
            log.warning("%s", note)
        if topic != self.topics.events_by_lead and (message.partition != p or message.key != key):
            await self._produce(self.topics.events_by_lead, key, value, p, headers=headers)
            self.metrics.forwarded.inc()
            return True
        return await self._on_event(event, message, headers)

    async def _dead_letter(self, message: Any, value: bytes, error: EventError) -> None:
        record = codec.dlq_record(value, message.key, error, message.topic, message.partition,
                                  message.offset)
        await self._produce(self.topics.topic_for(DlqRecord), message.key, self.output.encode(record),
                            headers=trace_headers(message.headers))
        self.metrics.dlq_of(error.code).inc()

    async def process(self, message: Any) -> bool:
        """One message, whatever happens: a record's fault becomes a ``processing_failed`` dead
        letter and the stream goes on; a store's fault stops progress (nothing is acknowledged,
        so nothing is committed past it), turns ``/health`` unhealthy and retries the message
        (applying it twice changes nothing) — for ``store_retry_seconds``, then the worker stops
        with the cause, to carry on from the same offset once restarted. False: the message was
        given up (its partition is no longer served here), so it is not applied."""
        attempt = 0
        started = time.monotonic()
        while True:
            try:
                try:
                    applied = await self.handle(message)
                except (StoreFailure, asyncio.CancelledError):
                    raise
                except Exception as exc:  # noqa: BLE001 - the record's fault: never stop the stream
                    self.metrics.errors.inc()
                    log.exception("processing failed at %s/%s@%s", message.topic, message.partition,
                                  message.offset)
                    if message.topic != self.topics.timer_commands:
                        value = message.value if message.value is not None else b""
                        await self._dead_letter(message, value, EventError("processing_failed", repr(exc)[:500]))
                    applied = True
            except StoreFailure as failure:
                if self.store_failure is None:
                    log.error("store failed at %s/%s@%s, retrying until it works: %s", message.topic,
                              message.partition, message.offset, failure)
                self.store_failure = str(failure)
                self.metrics.store_failures.inc()
                if time.monotonic() - started > self.store_retry_seconds:
                    where = f"{message.topic}/{message.partition}@{message.offset}"
                    log.critical("store failing for %.0f s; stopping with nothing committed past %s: %s",
                                 time.monotonic() - started, where, failure)
                    self.fatal = (f"{failure} (nothing committed past {where}; restart once the store "
                                  "works)")
                    await self.app.crash(StoreFailure(self.fatal))
                    return False
                await asyncio.sleep(STORE_RETRY[min(attempt, len(STORE_RETRY) - 1)])
                attempt += 1
                continue
            if self.store_failure is not None:
                log.warning("store works again after %d retries", attempt)
                self.store_failure = None
            return applied

    async def _on_event(self, event: LeadEvent, message: Any, headers: list[tuple[str, bytes]]) -> bool:
        self.metrics.events_of(event.event_type).inc()
        position = Position(message.topic, message.partition, message.offset)
        step = self.application.on_event(self.load(event.lead_id), event, now_ms(), position, self.committed)
        if step.duplicate:
            self.metrics.duplicates.inc()
        return await self._save_and_send(event.lead_id, step, message, headers)

    async def _on_timer_command(self, message: Any) -> bool:
        try:
            command = orjson.loads(message.value)
            lead_id, due, command_id = command["lead_id"], int(command["due"]), command["id"]
        except (ValueError, TypeError, KeyError):
            log.warning("unreadable timer command at %s/%s@%s: %r", message.topic, message.partition,
                        message.offset, message.value)
            return True
        p = message.partition
        inflight = self.inflight.get(p)
        if inflight is not None and inflight.get(lead_id, (None,))[0] == due:
            del inflight[lead_id]
        row = self.load(lead_id)
        now = now_ms()
        position = Position(message.topic, p, message.offset)
        step = self.application.on_timer(row, command_id, now, position, self.committed)
        if step.changed:
            self.metrics.lateness.observe(max(0, now - due) / 1000)
        else:  # done already (a redelivery) or rescheduled meanwhile
            self._schedule(p, lead_id, row.wake_at)
        return await self._save_and_send(lead_id, step, message)

    async def tick(self) -> None:
        """Send a command for every lead whose deadline passed; resend commands that got lost."""
        now = now_ms()
        producer = self.app.producer
        for p, timers in list(self.timers.items()):
            if not self.ownership.serves(p):  # [ownership] no commands while not surely the owner
                continue
            inflight = self.inflight.setdefault(p, {})
            stale = [(lead_id, due) for lead_id, (due, sent) in inflight.items()
                     if now - sent > INFLIGHT_RESEND_MS]
            for lead_id, due in stale:
                del inflight[lead_id]
                timers.set(lead_id, due)
            next_due = timers.next_due()
            if next_due is None or next_due > now:
                continue
            for lead_id, due in list(timers.pop_due(now)):
                inflight[lead_id] = (due, now)
                command = {"lead_id": lead_id, "due": due, "id": f"timer:{lead_id}:{due}"}
                try:
                    await producer.send(self.topics.timer_commands, lead_id.encode(),
                                        orjson.dumps(command), p, None, None)
                except Exception:  # noqa: BLE001 - retry on the next tick
                    log.exception("cannot send timer command for %s", lead_id)
                    del inflight[lead_id]
                    timers.set(lead_id, due)
                    return
                self.metrics.timer_commands.inc()

    async def unstall(self) -> None:
        """Re-read every source partition that has records waiting beyond its frontier (the first
        record fetched and not applied; faust may have dropped it) and has applied none for
        ``STALL_SECONDS``, from that frontier. A partition not yet started is measured by its
        committed offset instead. Commits may lag behind the frontier (one that waits out a broker
        stall holds the next ones): that is not a stall of the partition."""
        if not self.recovered:
            return
        consumer = self.app.consumer
        sources = set(self.source_topics)
        paused = paused_partitions(consumer)
        now = time.monotonic()
        for tp in list(consumer.assignment()):
            if tp.topic not in sources or tp in paused:
                continue
            if not self.ownership.serves(tp.partition):
                # [ownership] commits cannot succeed then (a broker stall, a lost membership), and a
                # seek back under faust's in-flight fetches lost an event in the broker stall test
                self.progress.pop(tp, None)
                continue
            high = consumer.highwater(tp)
            position = consumer.frontier.position(tp)
            if position is None:
                done = committed_offset(consumer, tp.topic, tp.partition)
                position = done if done is not None else 0
            seen, since = self.progress.get(tp, (None, now))
            if seen != position or high is None or high <= position:
                self.progress[tp] = (position, now)  # it moved, or nothing is waiting
                continue
            if now - since < STALL_SECONDS:
                continue
            log.warning("partition %s/%s: no record applied for %.0f s with %d waiting; re-reading from %s",
                        tp.topic, tp.partition, now - since, high - position, position)
            self.progress[tp] = (position, now)
            self.metrics.stalls.inc()
            if consumer.frontier.started(tp):
                await consumer.rewind(tp, again=True)
            else:
                await consumer.seek(tp, position)

    # -- operations ------------------------------------------------------------------------------
    def lag(self) -> Iterator[tuple[str, int, int]]:
        consumer = self.app.consumer
        sources = set(self.source_topics)
        for tp in consumer.assignment():
            if tp.topic not in sources:
                continue
            high = consumer.highwater(tp)
            done = committed_offset(consumer, tp.topic, tp.partition)
            if high is not None and done is not None:
                yield tp.topic, tp.partition, max(0, high - done)

    def lead_view(self, lead_id: str) -> dict[str, Any] | None:
        row = self.load(lead_id)
        lead = row.lead
        if lead is None:
            return None
        return {
            "lead_id": lead.lead_id,
            "stage": lead.stage.value,
            "owner_id": lead.owner_id,
            "team": lead.team,
            "score": lead.score,
            "created_at": format_time(lead.created_at),
            "stage_entered_at": format_time(lead.stage_entered_at),
            "last_activity_at": format_time(lead.last_activity_at),
            "next_wake_at": format_time(row.wake_at) if row.wake_at is not None else None,
            "held_events": len(row.held),
            "on_hold_until": (format_time(lead.hold_until) if lead.hold_until is not None
                              else "resume" if lead.hold_since is not None else None),
            "open_slas": [
                {
                    "sla": s.name,
                    "started_at": format_time(s.started_at),
                    "due_at": format_time(s.due_at),
                    "breached": s.breached,
                    "on_hold": s.held_since is not None,
                    "steps": [{"kind": kind, "at": format_time(at), "fired": i < s.fired}
                              for i, (kind, at) in enumerate(s.steps)],
                }
                for s in lead.slas
            ],
            "history": [{"stage": stage, "at": format_time(at), "trigger": trigger}
                        for stage, at, trigger in lead.history],
            "partition": self.partition_for(lead.lead_id),
            "outbox": len(row.outbox),
            "version": row.version,
        }

    @property
    def healthy(self) -> bool:
        return self.recovered and self.store_failure is None

    def health(self) -> dict[str, Any]:
        status = "ok" if self.recovered else "starting"
        if self.store_failure is not None:
            status = "store failing"
        return {
            "status": status,
            "store_failure": self.store_failure,
            "app_id": self.topics.app_id,
            "partitions": sorted(self.timers),
            "timers_pending": self.pending_timers(),
            "policy_version": self.engine.policy.policy_version,
            "paused": sorted(f"{tp.topic}/{tp.partition}" for tp in paused_partitions(self.app.consumer)),

        }


def build_app(
    app_id: str,
    bootstrap: str,
    embedded: bool,
    policy: Policy | None,
    topics: Topics,
    web_port: int | None = None,
    data_dir: str | None = None,
    store: str | None = None,
    web_host: str = "127.0.0.1",
    web_bind: str = "127.0.0.1",
    web_token: Secret | None = None,
    web_debug_views: bool = False,
    **settings: Any,
) -> LeadflowApp:
    """A new faust app (nothing is built at import time) with the lead agent, table, timer and views.

    ``topics`` must already exist (``ensure_topics(bootstrap, topics.with_tables("leads"))``).
    ``store``: default ``rocksdb://`` when ``data_dir`` is given, else ``memory://``.
    The web server listens on ``web_bind`` (``LEADFLOW_WEB_BIND``); ``web_host`` is the address
    other workers use to reach it. faust's ``/table`` (raw rows) and ``/router`` views are served
    only with ``web_debug_views``; ``GET /leads/{id}`` asks for ``web_token`` when one is given.
    ``settings`` override any faust setting.
    """
    overrides: dict[str, Any] = dict(WORKER_SETTINGS)
    overrides["TableManager"] = LeadflowTableManager  # active changelogs read in bulk (streams.recovery)
    overrides["store"] = store or ("rocksdb://" if data_dir else "memory://")
    # faust creates its data directory even for the memory store (in the working directory by
    # default): give it a private temporary one instead of littering wherever the worker starts.
    overrides["datadir"] = data_dir or tempfile.mkdtemp(prefix=f"leadflow-{app_id}-")
    if web_port is not None:
        overrides.update(web_enabled=True, web_port=web_port, web_host=web_host, web_bind=web_bind,
                         web_tables_enabled=web_debug_views, web_router_enabled=web_debug_views)
    else:
        overrides["web_enabled"] = False
    overrides.update(settings)
    app = faust.App(app_id, autodiscover=False,
                    **faust_settings(embedded, bootstrap=bootstrap, **overrides))
    app.transport = Transport(app.conf.broker_consumer, app)
    app.transport.exact_ends = embedded  # Tansu's ListOffsets is a batch short (BROKER.md)
    # [ownership] what this worker may write, kept up to date by the transport
    ownership = app.transport.ownership = Ownership(
        app.conf.broker_session_timeout, app.conf.broker_rebalance_timeout,
        forget=lambda message: forget(app.consumer, message))

    table = app.tables.add(LeadTable(
        app, name=TABLE, default=None, partitions=topics.partitions, beacon=app.tables.beacon,
        key_type=str, value_type=bytes, help="Lead state and outbox by lead_id",
    ))
    lf = LeadflowApp(app=app, table=table, topics=topics,
                     application=Application(Engine(policy), consumes_rows=True),
                     lookup=codec.bundled_schemas(), ownership=ownership)
    lf.application.encode = lf.keep  # in whatever output format the worker is given
    app.transport.frontier_topics = frozenset(lf.source_topics)  # [ownership] applied in log order
    table.owner = lf
    lf.metrics.bind(pending=lf.pending_timers, partitions=lambda: len(lf.timers), lag=lf.lag,
                    policy=lambda: lf.engine.policy)

    source = app.topic(*lf.source_topics, key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")

    @app.agent(source, name="leadflow.process")
    async def process(stream: faust.StreamT) -> None:
        consumer = app.consumer
        async for event in stream.events():
            message = event.message
            # [ownership] partitions served, now (the synchronous fast path first)
            if not (ownership.admits(message) or await ownership.admit(message)):
                continue
            if not await consumer.in_order(message):  # [ownership] each partition in log order
                continue
            if await lf.process(message):
                consumer.applied(message)

    @app.timer(interval=TIMER_TICK, name="leadflow.timers")
    async def timers() -> None:
        await lf.tick()

    @app.timer(interval=1.0, name="leadflow.unstall")
    async def unstall() -> None:
        await lf.unstall()

    if web_port is not None:
        _add_views(lf, web_token)
    return lf


def bearer_allows(authorization: str | None, token: Secret | None) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>``; always, when no token is set.
    Compared in constant time (``hmac.compare_digest``), so the answer's timing tells nothing."""
    if token is None:
        return True
    scheme, _, given = (authorization or "").strip().partition(" ")
    expected = token.reveal().encode()
    return hmac.compare_digest(given.strip().encode() if scheme.lower() == "bearer" else b"", expected)


def _add_views(lf: LeadflowApp, token: Secret | None = None) -> None:
    app = lf.app

    @app.page("/leads/{lead_id}")
    class LeadView(faust.web.View):
        async def get(self, request: faust.web.Request, lead_id: str) -> faust.web.Response:
            # checked before routing: the owner checks the forwarded header again
            if not bearer_allows(request.headers.get("Authorization"), token):
                return self.json({"error": "a bearer token is required"}, status=401,
                                 headers={"WWW-Authenticate": 'Bearer realm="leadflow"'})
            return await self.owned(request, lead_id=lead_id)

        @app.table_route(table=lf.table, match_info="lead_id")
        async def owned(self, request: faust.web.Request, lead_id: str) -> faust.web.Response:
            doc = lf.lead_view(lead_id)
            if doc is None:
                return self.json({"error": "unknown lead", "lead_id": lead_id}, status=404)
            return self.json(doc)

    @app.page("/health")
    async def health(web: faust.web.Web, request: faust.web.Request) -> faust.web.Response:
        doc = lf.health()
        return web.json(doc, status=200 if lf.healthy else 503)

    @app.page("/metrics")
    async def metrics(web: faust.web.Web, request: faust.web.Request) -> faust.web.Response:
        return web.text(lf.metrics.render().decode(), content_type=CONTENT_TYPE)
