"""faust client settings: the general ones, and the few that only the embedded Tansu broker needs.

This is the one place that knows about broker quirks (see BROKER.md). Against a real Apache Kafka only
``GENERAL`` applies; ``EMBEDDED`` is layered on top when the broker is the embedded Tansu one:

- Tansu answers ListOffsets(latest) with the first offset of the last *batch* + 1, so faust's
  changelog recovery would stop early and lose table updates after a crash. That is not a setting:
  the worker's consumer reads the last batch to get the exact end (``streams.app.exact_end_offsets``,
  enabled by ``build_app(embedded=True)``). The earlier workaround, ``producer_max_batch_size=1``,
  capped a worker at ~1.8k events/s.
- ``broker_session_timeout=3`` / ``broker_heartbeat_interval=1`` / ``broker_rebalance_timeout=3``:
  Tansu holds a group join for half the session timeout (faust's default 60 s → 30 s per join).
- ``store="memory://"``: the embedded broker keeps everything in memory, so a persistent local store
  would outlive its changelog; recovery rebuilds the table from the changelog instead.

General choices (both brokers):

- ``processing_guarantee="at_least_once"`` with a short commit interval: Tansu rejects aiokafka's
  InitProducerId v0, and exactly-once would need that; leadflow's state is idempotent (dedupe by
  ``event_id``) and its output ids deterministic, so at-least-once plus dedupe is exact downstream.
- ``topic_disable_leader=True``: leadflow uses no ``on_leader`` timers; one topic less to create.
- ``table_standby_replicas=1``: a survivor takes over a dead worker's partitions with its state ready.
- ``producer_acks=-1``: never ``acks=0`` (Tansu dropped ~28% of records with it).
"""

from __future__ import annotations

from typing import Any

from lifecycle.errors import ConfigError
from streams.topics import DEFAULT_PARTITIONS

_SCHEMES = ("kafka://", "tcp://", "plaintext://")


def parse_bootstrap(value: str) -> str:
    """Normalise ``kafka://h:p``, ``tcp://h:p`` or ``h:p[,h:p]`` to a ``h:p[,h:p]`` bootstrap list.

    Raises :class:`ConfigError` (exit status 2) on anything else.
    """
    servers = []
    for part in value.split(","):
        part = part.strip()
        lowered = part.lower()
        for scheme in _SCHEMES:
            if lowered.startswith(scheme):
                part = part[len(scheme):]
                break
        part = part.rstrip("/")
        host, sep, port = part.rpartition(":")
        if not sep or not host or "/" in part or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"bad broker address {value!r}: expected host:port[,host:port], "
                "kafka://host:port or tcp://host:port"
            )
        servers.append(f"{host}:{int(port)}")
    return ",".join(servers)


GENERAL: dict[str, Any] = {
    "processing_guarantee": "at_least_once",
    "broker_commit_interval": 1.0,
    "consumer_auto_offset_reset": "earliest",
    "producer_acks": -1,
    "topic_partitions": DEFAULT_PARTITIONS,
    "topic_disable_leader": True,
    "table_standby_replicas": 1,
    "store": "rocksdb://",
    "web_enabled": False,
}

EMBEDDED: dict[str, Any] = {
    "broker_session_timeout": 3.0,
    "broker_heartbeat_interval": 1.0,
    "broker_rebalance_timeout": 3.0,
    "store": "memory://",
}


def faust_broker_url(bootstrap: str) -> list[str]:
    """``"h1:p1,h2:p2"`` (or ``kafka://``/``tcp://`` forms) → ``["kafka://h1:p1", "kafka://h2:p2"]``."""
    return [f"kafka://{server}" for server in parse_bootstrap(bootstrap).split(",")]


def faust_settings(embedded: bool, *, bootstrap: str | None = None, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments for ``faust.App(app_id, **faust_settings(...))``.

    ``embedded``: the broker is the embedded Tansu one (adds ``EMBEDDED``); ``bootstrap`` sets
    ``broker``; ``overrides`` win over everything (e.g. ``web_enabled=True, web_port=6067``,
    ``datadir=...`` — give every worker its own datadir and web port).
    """
    settings = dict(GENERAL)
    if embedded:
        settings.update(EMBEDDED)
    if bootstrap is not None:
        settings["broker"] = faust_broker_url(bootstrap)
    if "web_port" in overrides and "web_enabled" not in overrides:
        settings["web_enabled"] = True
    settings.update(overrides)
    return settings


ENV_QUIRKS = "LEADFLOW_BROKER_QUIRKS"


def is_tansu(bootstrap: str, *, timeout_ms: int = 5000) -> bool:
    """Whether the broker at ``bootstrap`` is a Tansu (so ``EMBEDDED`` applies even via ``--broker``).

    ``$LEADFLOW_BROKER_QUIRKS`` decides when set (``tansu`` or ``none``); otherwise the cluster id
    tells (Tansu answers DescribeCluster with ``tansu_cluster``). A Tansu reached by address needs the
    same workarounds as the embedded one: without exact end offsets a crashed worker recovers its
    table short of its last updates.
    """
    import os

    forced = os.environ.get(ENV_QUIRKS, "").strip().lower()
    if forced:
        return forced == "tansu"
    from kafka.admin import KafkaAdminClient

    try:
        admin = KafkaAdminClient(bootstrap_servers=parse_bootstrap(bootstrap), client_id="leadflow-probe",
                                 request_timeout_ms=timeout_ms)
    except Exception:  # noqa: BLE001 - unreachable: let the caller's own connection report it
        return False
    try:
        cluster_id = admin.describe_cluster().get("cluster_id") or ""
    except Exception:  # noqa: BLE001 - DescribeCluster unsupported (Kafka < 2.8): not Tansu 0.6
        cluster_id = ""
    finally:
        admin.close()
    return str(cluster_id).lower().startswith("tansu")
