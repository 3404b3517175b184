"""Where a report's records come from: replay output, a SQL sink's database, or the output topics.

Every loader returns ``(lifecycle_records, alert_records)`` as typed records (times in epoch ms).
Topic values are decoded like the sink relay decodes them (``schemas.codec.decode_record``): JSON,
or the Confluent-framed Avro of a worker with ``LEADFLOW_FORMAT=avro``, whose writer schemas come
from ``LEADFLOW_SCHEMA_REGISTRY_URL`` when it is set, else from the bundled schemas.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from leadflow.replay_output import CheckedFile, read_manifest
from lifecycle.errors import ConfigError, EventError
from lifecycle.records import AlertRecord, LifecycleRecord, RecordType
from schemas.codec import SchemaLookup, bundled_schemas, decode_record
from schemas.wire import alert_from_wire, lifecycle_from_wire
from sinks.base import SinkError

Loaded = tuple[list[LifecycleRecord], list[AlertRecord]]


def _json_lines(checked: CheckedFile) -> Iterator[dict[str, Any]]:
    for number, line in checked.lines():
        try:
            yield json.loads(line)
        except ValueError as exc:
            raise SinkError(f"{checked.path}:{number}: not a JSON object: {exc}") from exc


def load_replay_dir(directory: str | Path) -> Loaded:
    """``lifecycle.jsonl`` and ``alerts.jsonl`` of a ``leadflow replay --out DIR``, checked against its
    ``manifest.json`` (``leadflow.replay_output``): a directory without one, or whose files are
    missing or differ from it, is refused with a ``ConfigError`` (exit status 2)."""
    root = Path(directory)
    manifest = read_manifest(root)
    lifecycle = [lifecycle_from_wire(v) for v in _json_lines(CheckedFile(root, "lifecycle.jsonl", manifest))]
    alerts = [alert_from_wire(v) for v in _json_lines(CheckedFile(root, "alerts.jsonl", manifest))]
    CheckedFile(root, "dlq.jsonl", manifest).verify()
    return lifecycle, alerts


def load_sql(url: str) -> Loaded:
    """Every row of ``lead_transitions`` and ``lead_alerts`` of a database written by ``SqlSink``."""
    from sinks.sql import SqlSink

    sink = SqlSink(url, read_only=True)  # creates and migrates nothing: a missing database is an error
    try:
        return sink.transitions(), sink.alerts()
    finally:
        sink.close()


def kafka_topics_from_url(url: str) -> tuple[str, str, str]:
    """``kafka://host:port[?lifecycle=T&alerts=T]`` -> (bootstrap, lifecycle topic, alerts topic)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "kafka" or not parts.netloc:
        raise ConfigError(f"not a kafka://host:port URL: {url!r}")
    query = dict(urllib.parse.parse_qsl(parts.query))
    unknown = set(query) - {"lifecycle", "alerts"}
    if unknown:
        raise ConfigError(f"{url}: unknown parameter(s) {sorted(unknown)}; use lifecycle=, alerts=")
    return parts.netloc, query.get("lifecycle", "lead.lifecycle"), query.get("alerts", "lead.alerts")


def read_topic(bootstrap: str, topic: str, *, idle: float = 1.0, timeout: float = 120.0) -> list[bytes]:
    """Every value of ``topic``, all partitions from the beginning, with ``assign()`` (no group).

    The end is found by counting, not by ``end_offsets()`` (the embedded Tansu broker answers
    ListOffsets(latest) wrongly for multi-record batches): reading stops once ``idle`` seconds pass
    with no new record.
    """
    from kafka import KafkaConsumer, TopicPartition

    from streams.topics import unreachable

    why = unreachable(bootstrap)
    if why is not None:
        raise SinkError(f"cannot reach Kafka at {bootstrap}: {why}")
    try:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                 auto_offset_reset="earliest", client_id="leadflow-report",
                                 fetch_max_wait_ms=100)
    except Exception as exc:
        raise SinkError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + timeout
        metadata_deadline = time.monotonic() + 5
        partitions = consumer.partitions_for_topic(topic)
        while partitions is None and time.monotonic() < metadata_deadline:
            time.sleep(0.05)
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return values
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        last = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last < idle:
            batch = consumer.poll(timeout_ms=100)
            for records in batch.values():
                values.extend(r.value for r in records if r.value is not None)
            if batch:
                last = time.monotonic()
        return values
    finally:
        consumer.close()


def schema_lookup() -> SchemaLookup:
    """Where Avro writer schemas come from: the registry of ``LEADFLOW_SCHEMA_REGISTRY_URL`` (the
    environment or ``LEADFLOW_CONFIG``, as the worker reads it) when set, else the bundled schemas."""
    from streams.config import load_settings

    url = load_settings().schema_registry_url
    if url is None:
        return bundled_schemas()
    from schemas.registry import RegistryClient

    return RegistryClient(url)


def _decoded(kind: RecordType, topic: str, values: Iterable[bytes], lookup: SchemaLookup) -> list[Any]:
    out = []
    for value in values:
        try:
            out.append(decode_record(kind, value, lookup))
        except EventError as exc:
            raise SinkError(f"{topic}: a value that holds no {kind.__name__}: {exc}") from exc
    return out


def load_kafka(url: str, *, idle: float = 1.0, lookup: SchemaLookup | None = None) -> Loaded:
    """The records on the lifecycle and alerts topics of ``kafka://host:port[?lifecycle=T&alerts=T]``,
    JSON or Avro (``lookup``: default ``schema_lookup()``)."""
    bootstrap, lifecycle_topic, alerts_topic = kafka_topics_from_url(url)
    if lookup is None:
        lookup = schema_lookup()
    lifecycle = _decoded(LifecycleRecord, lifecycle_topic, read_topic(bootstrap, lifecycle_topic, idle=idle), lookup)
    alerts = _decoded(AlertRecord, alerts_topic, read_topic(bootstrap, alerts_topic, idle=idle), lookup)
    return lifecycle, alerts


def load_source(source: str) -> Loaded:
    """A directory, ``sqlite:///``/``postgresql://`` URL or ``kafka://host:port``."""
    if source.startswith("kafka://"):
        return load_kafka(source)
    if source.startswith(("sqlite:///", "postgresql://", "postgres://")):
        return load_sql(source)
    if "://" in source:
        raise ConfigError(f"unknown report source {source.split('://')[0]}://; use a directory, "
                          "sqlite:///, postgresql:// or kafka://")
    if not Path(source).is_dir():
        raise ConfigError(f"{source}: no such directory")
    return load_replay_dir(source)


def dedupe(records: Iterable[Any], key: str) -> list[Any]:
    """Drop repeats by id, first one kept (outputs are at least once)."""
    seen: set[str] = set()
    out = []
    for record in records:
        ident = getattr(record, key)
        if ident not in seen:
            seen.add(ident)
            out.append(record)
    return out
