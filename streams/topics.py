"""The Kafka topics leadflow reads and writes, and their creation before any client touches them.

Why create up front: Tansu (the embedded broker) auto-creates an unknown topic with 4 partitions the
first time a client asks for its metadata, and faust crash-loops with ``PartitionsMismatch`` when a
table's changelog and its source disagree. So every topic, faust's changelogs included, is created with
its declared partition count and config first (``ensure_topics``), idempotently.

State topics (changelogs) are compacted and never time-retained: a time-retained changelog silently
loses table rows on recovery (faust issues #176, #597, #651).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lifecycle.errors import LeadflowError
from lifecycle.records import AlertRecord, DlqRecord, LifecycleRecord

DEFAULT_APP_ID = "leadflow"
DEFAULT_PARTITIONS = 4

#: Topic config for state: compaction only, no ``retention.ms`` (never time-retained).
COMPACT: Mapping[str, str] = {"cleanup.policy": "compact"}

_TOPIC_ALREADY_EXISTS = 36


class TopicError(LeadflowError):
    """A topic could not be created."""


@dataclass(frozen=True)
class TopicSpec:
    """One topic to create: name, partition count, topic-level config."""

    name: str
    partitions: int = DEFAULT_PARTITIONS
    config: Mapping[str, str] = field(default_factory=dict)


def changelog_topic(app_id: str, table: str) -> str:
    """The changelog topic faust uses for ``app.Table(table)`` in the app ``app_id`` (version 1)."""
    return f"{app_id}-{table}-changelog"


def changelog_topics(app_id: str, tables: Iterable[str]) -> tuple[str, ...]:
    """The changelog topic names of the app's tables, to pre-create with ``cleanup.policy=compact``."""
    return tuple(changelog_topic(app_id, t) for t in tables)


@dataclass(frozen=True)
class Topics:
    """Every topic name of one leadflow deployment; one frozen, validated settings object.

    Internal topics carry the app id as prefix so two deployments (or two tests) on one broker
    never share them.
    """

    app_id: str = DEFAULT_APP_ID
    form_fills: str = "lead.form_fills"
    email_engagement: str = "lead.email_engagement"
    sales_activity: str = "lead.sales_activity"
    deal_stages: str = "lead.deal_stages"
    lifecycle: str = "lead.lifecycle"
    alerts: str = "lead.alerts"
    dlq: str = "lead.dlq"
    #: faust table names of the worker; their changelogs are created compacted.
    tables: tuple[str, ...] = ()
    partitions: int = DEFAULT_PARTITIONS

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {self.partitions}")
        names = [*self.inputs, *self.outputs]
        if any(not n or not isinstance(n, str) for n in names) or not self.app_id:
            raise ValueError("topic names and app_id must be non-empty strings")
        if len(set(names)) != len(names):
            raise ValueError(f"topic names must be distinct: {names}")
        object.__setattr__(self, "tables", tuple(self.tables))

    @classmethod
    def prefixed(cls, prefix: str, **overrides: object) -> "Topics":
        """Every topic name prefixed (``f"{prefix}.lead.form_fills"`` ...) and ``app_id=prefix``:
        one isolated deployment per test on a shared broker."""
        values: dict[str, object] = {"app_id": prefix}
        for f in dataclasses.fields(cls):
            if f.name not in ("app_id", "tables", "partitions"):
                values[f.name] = f"{prefix}.{f.default}"
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    # -- internal topics -----------------------------------------------------------------------

    @property
    def events_by_lead(self) -> str:
        """Every input event re-keyed by ``lead_id``: the co-partitioned source of the tables."""
        return f"{self.app_id}.events-by-lead"

    @property
    def timer_commands(self) -> str:
        """Step-this-lead-now commands (``{lead_id, due, id}``), sent by the partition's owner when a
        row's wake-up time passes and applied in order with the lead's events."""
        return f"{self.app_id}.timer-commands"

    def topic_for(self, record_type: type) -> str:
        """The output topic of a record type: the one place that maps records to topics."""
        return {LifecycleRecord: self.lifecycle, AlertRecord: self.alerts, DlqRecord: self.dlq}[record_type]
    @property
    def policy(self) -> str:
        """The published policy (``leadflow policy publish``, SPEC 11): compacted, one partition,
        key ``policy``, value the TOML text. Every worker reads it whole without a consumer group
        (``streams.policy_topic``), so a new policy reaches all of them without a rebalance."""
        return f"{self.app_id}.policy"

    # -- groups --------------------------------------------------------------------------------

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.form_fills, self.email_engagement, self.sales_activity, self.deal_stages)

    @property
    def outputs(self) -> tuple[str, ...]:
        return (self.lifecycle, self.alerts, self.dlq)

    @property
    def internal(self) -> tuple[str, ...]:
        return (self.events_by_lead, self.timer_commands)

    @property
    def changelogs(self) -> tuple[str, ...]:
        return changelog_topics(self.app_id, self.tables)

    def specs(self, partitions: int | None = None) -> tuple[TopicSpec, ...]:
        """Every topic with its partition count and config, in creation order."""
        n = self.partitions if partitions is None else partitions
        plain = [TopicSpec(t, n) for t in (*self.inputs, *self.outputs, *self.internal)]
        state = [TopicSpec(t, n, dict(COMPACT)) for t in self.changelogs]
        return (*plain, *state, self.policy_spec)

    @property
    def policy_spec(self) -> TopicSpec:
        """One partition: the published policies are one sequence, the latest wins."""
        return TopicSpec(self.policy, 1, dict(COMPACT))

    def with_tables(self, *tables: str) -> "Topics":
        return dataclasses.replace(self, tables=(*self.tables, *tables))


#: The worker's lead table (``streams.app``); its changelog is a topic of every deployment.
TABLE = "leads"


def deployment_topics(settings: Any) -> Topics:
    """Every topic of a deployment (``streams.config.Settings``), the lead table's changelog included."""
    return settings.topics.with_tables(TABLE)


#: How long ``unreachable`` waits for a TCP connection to one bootstrap server.
PROBE_SECONDS = 2.0
#: How long a TLS handshake may take before the broker is said not to speak TLS, seconds.
TLS_PROBE_SECONDS = 5.0


def _servers(bootstrap: str) -> list[tuple[str, str, int]] | None:
    """``(server, host, port)`` of each server of ``bootstrap``, or None when one is not
    ``host:port`` (the Kafka client then says what is wrong with it)."""
    found = []
    for server in (server.strip() for server in bootstrap.split(",")):
        host, _, port = server.rpartition(":")
        if not port.isdigit():
            return None
        found.append((server, host.strip("[]"), int(port)))
    return found


def unreachable(bootstrap: str, timeout: float = PROBE_SECONDS) -> str | None:
    """Why no server of ``bootstrap`` takes a TCP connection (refused, unknown host, no answer within
    ``timeout``), or None when one does. Every command asks this first: the Kafka clients retry a
    refused bootstrap for 10-30 s before they say so."""
    import socket

    servers = _servers(bootstrap)
    if servers is None:
        return None
    reasons = []
    for server, host, port in servers:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return None
        except socket.gaierror as exc:
            reasons.append(f"{server}: unknown host ({exc.strerror})")
        except TimeoutError:
            reasons.append(f"{server}: no answer within {timeout:g} s")
        except OSError as exc:
            reasons.append(f"{server}: {(exc.strerror or str(exc)).lower()}")
    if len(servers) == 1:
        return reasons[0].partition(": ")[2]
    return "; ".join(reasons)


def no_tls(bootstrap: str, client_kwargs: Mapping[str, Any], timeout: float = TLS_PROBE_SECONDS) -> str | None:
    """Why no server of ``bootstrap`` completes a TLS handshake within ``timeout`` (for the SSL and
    SASL_SSL protocols; None otherwise, or when one does). kafka-python's client waits for ever on
    a handshake that a plaintext listener never answers, whatever its bootstrap timeout."""
    import socket
    import ssl

    servers = _servers(bootstrap)
    if servers is None or client_kwargs.get("security_protocol") not in ("SSL", "SASL_SSL"):
        return None
    context = ssl.create_default_context(cafile=client_kwargs.get("ssl_cafile"))
    if client_kwargs.get("ssl_certfile"):
        context.load_cert_chain(client_kwargs["ssl_certfile"], client_kwargs.get("ssl_keyfile"))
    reasons = []
    for server, host, port in servers:
        try:
            with socket.create_connection((host, port), timeout=timeout) as raw:
                with context.wrap_socket(raw, server_hostname=host):
                    return None
        except ssl.SSLCertVerificationError as exc:
            reasons.append(f"{server}: certificate not trusted ({exc.verify_message})")
        except (TimeoutError, socket.timeout):
            reasons.append(f"{server}: no TLS handshake within {timeout:g} s (a plaintext listener?)")
        except (ssl.SSLError, OSError) as exc:
            reasons.append(f"{server}: TLS handshake failed ({type(exc).__name__})")
    return "; ".join(reasons) or None


def _as_specs(topics: Topics | Iterable[str | TopicSpec], partitions: int | None) -> list[TopicSpec]:
    if isinstance(topics, Topics):
        return list(topics.specs(partitions))
    n = DEFAULT_PARTITIONS if partitions is None else partitions
    specs = []
    for t in topics:
        if isinstance(t, TopicSpec):
            specs.append(t if partitions is None else dataclasses.replace(t, partitions=partitions))
        elif isinstance(t, str):
            specs.append(TopicSpec(t, n))
        else:
            raise TypeError(f"not a topic name or TopicSpec: {t!r}")
    return specs


def ensure_topics(
    bootstrap: str,
    topics: Topics | Iterable[str | TopicSpec],
    partitions: int | None = None,
    *,
    replication_factor: int = -1,
    timeout_ms: int = 10_000,
    client_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """Create every topic that does not exist yet; return ``{name: partition count}`` of all of them.

    ``partitions`` overrides every spec's count (default: ``Topics.partitions``, or 4 for bare
    names). Existing topics are left alone, whatever their count: the caller decides whether a
    mismatch matters (faust requires tables and their source to be co-partitioned).
    ``replication_factor=-1`` takes the broker's default (Kafka >= 2.4; Tansu ignores it).
    ``client_kwargs``: extra ``KafkaAdminClient`` arguments, e.g. the security settings of
    ``streams.config.kafka_python_kwargs``.
    """
    from kafka.admin import KafkaAdminClient

    specs = _as_specs(topics, partitions)
    if not specs:
        return {}
    why = unreachable(bootstrap)
    if why is not None:
        raise TopicError(f"cannot reach broker {bootstrap}: {why}")
    extra = dict(client_kwargs or {})
    why = no_tls(bootstrap, extra)
    if why is not None:
        raise TopicError(f"cannot reach broker {bootstrap} with security protocol "
                         f"{extra['security_protocol']}: {why}")
    if "bootstrap_timeout_ms" in KafkaAdminClient.DEFAULT_CONFIG:  # kafka-python >= 2.1: else 30 s
        extra.setdefault("bootstrap_timeout_ms", timeout_ms)
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="leadflow-admin",
                                 request_timeout_ms=timeout_ms, **extra)
    except Exception as exc:  # noqa: BLE001 - kafka-python raises several unrelated types here
        # a listener that wants TLS or SASL never answers a PLAINTEXT client (nor the reverse): a
        # bare timeout, so say which protocol was tried
        protocol = extra.get("security_protocol", "PLAINTEXT")
        raise TopicError(f"cannot reach broker {bootstrap} with security protocol {protocol}: {exc}") from exc
    try:
        request = {
            s.name: {"num_partitions": s.partitions, "replication_factor": replication_factor,
                     "configs": dict(s.config)}
            for s in specs
        }
        result = admin.create_topics(request, timeout_ms=timeout_ms, raise_errors=False)
        failed = [
            f"{t['name']}: error {t['error_code']} {t.get('error_message') or ''}".strip()
            for t in result["topics"]
            if t["error_code"] not in (0, _TOPIC_ALREADY_EXISTS)
        ]
        if failed:
            raise TopicError("cannot create topics: " + "; ".join(failed))
        described = admin.describe_topics([s.name for s in specs])
        counts = {t["name"]: len(t["partitions"]) for t in described if t["error_code"] == 0}
        missing = [s.name for s in specs if not counts.get(s.name)]
        if missing:
            raise TopicError(f"topics not visible after creation: {missing}")
        return counts
    except TopicError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise TopicError(f"cannot create topics on {bootstrap}: {exc}") from exc
    finally:
        admin.close()
