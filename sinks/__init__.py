"""Output sinks (SQL, webhook, Kafka) behind one ``add``/``flush``/``close`` contract, and the report.

The adapters import their drivers lazily: ``from sinks.sql import SqlSink``,
``from sinks.webhook import WebhookSink``, ``from sinks.kafka import KafkaSink``.
"""

from sinks.base import FanOut, ListSink, Sink, SinkClosed, SinkError, SinkFull, record_id

__all__ = ["FanOut", "ListSink", "Sink", "SinkClosed", "SinkError", "SinkFull", "record_id"]
