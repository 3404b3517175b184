"""Output sinks (SQL, webhook, Kafka) behind one ``add``/``flush``/``close`` contract, the
checkpoint that flushes them before committing, and the error split every adapter maps onto
(``RecordRejected``: the record's fault; ``StoreUnavailable``: the store's).

The adapters import their drivers lazily: ``from sinks.sql import SqlSink``,
``from sinks.webhook import WebhookSink``, ``from sinks.kafka import KafkaSink``.
"""

from sinks.base import (
    SINK_REFUSED,
    FanOut,
    ListSink,
    Position,
    RecordRejected,
    Rejection,
    Sink,
    SinkClosed,
    SinkError,
    SinkFull,
    StoreUnavailable,
    record_id,
)
from sinks.checkpoint import Checkpoint

__all__ = ["SINK_REFUSED", "Checkpoint", "FanOut", "ListSink", "Position", "RecordRejected", "Rejection", "Sink",
           "SinkClosed", "SinkError", "SinkFull", "StoreUnavailable", "record_id"]
