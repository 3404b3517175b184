"""The wire format of the worker's output records (SPEC 5: JSON by default, Avro on request).

The worker encodes each record once, with ``Output.encode``, and keeps those bytes in the lead's
outbox until the source offset is committed (``streams.rows``). An ``Output`` is one of:

- ``JsonOutput`` (``LEADFLOW_FORMAT=json``, the default): the JSON itself.
- ``AvroOutput`` (``LEADFLOW_FORMAT=avro``): Confluent-framed Avro (magic byte 0, 4-byte schema id,
  body) under the bundled ``schemas/*.avsc``, registered at start-up under each output topic's value
  subject (``<topic>-value``, TopicNameStrategy). Registering is idempotent, so every replica gets
  the same ids; an incompatible schema is refused by the registry and stops the worker at start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import orjson

from lifecycle.records import AlertRecord, DlqRecord, LifecycleRecord, Record
from schemas import codec
from schemas.registry import RegistryClient, value_subject
from schemas.wire import alert_from_wire, lifecycle_from_wire
from streams.topics import Topics


def schema_text(name: str) -> str:
    """The bundled ``schemas/<name>.avsc`` as written (what gets registered)."""
    return (Path(codec.__file__).parent / f"{name}.avsc").read_text("utf-8")


class Output(Protocol):
    name: str

    def encode(self, record: Record) -> bytes:
        """The bytes sent to Kafka for a lifecycle, alert or DLQ record."""
        ...

    def lifecycle(self, wire_json: str) -> bytes:
        """A lifecycle record kept as JSON by an older worker (outbox rows written before
        ``encode``), in this output's format."""
        ...

    def alert(self, wire_json: str) -> bytes: ...

    def dlq(self, record: DlqRecord) -> bytes: ...


class JsonOutput:
    name = "json"

    def encode(self, record: Record) -> bytes:
        return codec.encode_json(record)

    def lifecycle(self, wire_json: str) -> bytes:
        return wire_json.encode()

    alert = lifecycle

    def dlq(self, record: DlqRecord) -> bytes:
        return codec.encode_json(record)


class AvroOutput:
    name = "avro"

    def __init__(self, ids: dict[str, int]) -> None:
        """``ids``: schema name (``lifecycle_record``, ``alert_record``, ``dlq_record``) -> registry id."""
        schemas = codec.bundled_schemas()
        self._lifecycle = (ids["lifecycle_record"], schemas.schema("lifecycle_record"))
        self._alert = (ids["alert_record"], schemas.schema("alert_record"))
        self._dlq = (ids["dlq_record"], schemas.schema("dlq_record"))
        self._by_type = {LifecycleRecord: self._lifecycle, AlertRecord: self._alert, DlqRecord: self._dlq}
        self.ids = dict(ids)

    def encode(self, record: Record) -> bytes:
        schema_id, schema = self._by_type[type(record)]
        return codec.encode_avro(record, schema_id, schema)

    @classmethod
    def register(cls, registry: RegistryClient, topics: Topics) -> "AvroOutput":
        """Register the three output schemas under their topics' value subjects; raises
        ``RegistryError`` (one line) when the registry is unreachable or refuses one."""
        subjects = {"lifecycle_record": topics.lifecycle, "alert_record": topics.alerts,
                    "dlq_record": topics.dlq}
        ids = {}
        for name, topic in subjects.items():
            ids[name] = registry.register(value_subject(topic), schema_text(name))
        return cls(ids)

    def lifecycle(self, wire_json: str) -> bytes:
        schema_id, schema = self._lifecycle
        return codec.encode_avro(lifecycle_from_wire(orjson.loads(wire_json)), schema_id, schema)

    def alert(self, wire_json: str) -> bytes:
        schema_id, schema = self._alert
        return codec.encode_avro(alert_from_wire(orjson.loads(wire_json)), schema_id, schema)

    def dlq(self, record: DlqRecord) -> bytes:
        schema_id, schema = self._dlq
        return codec.encode_avro(record, schema_id, schema)
