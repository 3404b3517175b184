"""Deployment configuration: one frozen, validated settings object from the environment and a file.

Where a value comes from, first match wins: the command line (``overrides``), a ``LEADFLOW_*``
environment variable, the TOML file given with ``--config``, the built-in default. Every option is
declared once in ``OPTIONS`` (its variable, its key in the file, its default and its meaning): that
list drives loading, the README's configuration table and the compose file test.

Validation happens once, at start-up, and reports every bad value at once: a :class:`SettingsError`
(a :class:`ConfigError`, exit status 2) with one line per problem, each naming the variable (or the
file key) and the value. Secrets (``LEADFLOW_SASL_PASSWORD``, ``LEADFLOW_WEB_TOKEN``, a password or a
``token=`` inside any URL) are never shown by ``repr`` or in an error message (``schemas.secrets``).

The config file mirrors the variables, grouped::

    broker = "kafka-1:9092,kafka-2:9092"
    app_id = "leadflow"
    partitions = 12
    replication_factor = 3
    policy = "/etc/leadflow/policy.toml"
    format = "avro"
    schema_registry_url = "http://schema-registry:8081"

    [topics]                       # any of: form_fills email_engagement sales_activity
    form_fills = "crm.form_fills"  #   deal_stages lifecycle alerts dlq

    [security]
    protocol = "SASL_SSL"          # PLAINTEXT SSL SASL_PLAINTEXT SASL_SSL
    sasl_mechanism = "SCRAM-SHA-512"
    sasl_username = "leadflow"
    sasl_password = "..."          # better: LEADFLOW_SASL_PASSWORD from a secret store
    ssl_cafile = "/etc/kafka/ca.pem"

    [sinks]
    sql_url = "postgresql://leadflow@db/leadflow"
    webhook_url = "https://alerts.example.com/hook"
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import ssl
import tomllib
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lifecycle.errors import ConfigError, capped, excerpt
from schemas.secrets import MASK, Secret, redact_url
from streams.settings import parse_bootstrap
from streams.topics import DEFAULT_APP_ID, DEFAULT_PARTITIONS, Topics

ENV_CONFIG = "LEADFLOW_CONFIG"

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
FORMATS = ("json", "avro")
_TOPIC_FIELDS = ("form_fills", "email_engagement", "sales_activity", "deal_stages",
                 "lifecycle", "alerts", "dlq")
_TOPIC_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Topics) if f.name in _TOPIC_FIELDS}
_LEGAL_TOPIC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
#: Partitions of a deployment at most: far beyond any sensible count, and a typo's end.
MAX_PARTITIONS = 10_000
#: Kafka's replication factor is a 16-bit number.
MAX_REPLICATION_FACTOR = 32_767
MIN_WEB_TOKEN_LENGTH = 16
#: How far in the future an event may be before the live worker dead-letters it (``future_timestamp``).
DEFAULT_FUTURE_MARGIN_MS = 3_600_000
MAX_FUTURE_MARGIN_MS = 3650 * 86_400_000


class SettingsError(ConfigError):
    """One or more bad configuration values; ``problems`` has one line per value."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        head = "bad configuration value" if count == 1 else f"{count:,} bad configuration values"
        super().__init__(head + ":\n  " + "\n  ".join(capped(self.problems)))


# -- the options -------------------------------------------------------------------------------


class _Bad(ValueError):
    """A value that does not parse; the message says what was expected."""


def _text(value: str) -> str:
    value = value.strip()
    if not value:
        raise _Bad("must not be empty")
    return value


def _bootstrap(value: str) -> str:
    try:
        servers = parse_bootstrap(value)
    except ConfigError as exc:
        raise _Bad("expected host:port[,host:port], kafka://host:port or tcp://host:port") from exc
    for server in servers.split(","):
        try:
            _host(server.rpartition(":")[0])
        except _Bad:
            raise _Bad(f"{server.rpartition(':')[0]!r} is not a host name or IP address") from None
    return servers


def _int_at_least(low: int) -> Callable[[str], int]:
    return _int_between(low, 2**31 - 1)


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        text = str(value).strip()
        if len(text) > 12:  # int() of a 20-digit string works; no partition count has 20 digits
            raise _Bad(f"not an integer from {low} to {high}")
        try:
            number = int(text)
        except ValueError:
            raise _Bad("not an integer") from None
        if number < low:
            raise _Bad(f"must be >= {low}")
        if number > high:
            raise _Bad(f"must be <= {high}")
        return number
    return parse


def _replication(value: str) -> int:
    number = _int_between(-1, MAX_REPLICATION_FACTOR)(value)
    if number == 0:
        raise _Bad("must be >= 1, or -1 for the broker's default")
    return number


def _choice(choices: tuple[str, ...], *, upper: bool) -> Callable[[str], str]:
    def parse(value: str) -> str:
        norm = value.strip().upper() if upper else value.strip().lower()
        if norm not in choices:
            raise _Bad("expected one of " + ", ".join(choices))
        return norm
    return parse


def _topic(value: str) -> str:
    value = value.strip()
    if not value or len(value) > 249 or value in (".", "..") or set(value) - _LEGAL_TOPIC_CHARS:
        raise _Bad("not a legal Kafka topic name ([a-zA-Z0-9._-], 1-249 characters)")
    return value


def _host(value: str) -> str:
    """A host name (RFC 1123 labels; ``_`` allowed, as container names have it) or an IP address."""
    value = value.strip()
    bare = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        ipaddress.ip_address(bare)
        return value
    except ValueError:
        pass
    if not bare or len(bare) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in bare.rstrip(".").split(".")):
        raise _Bad("not a host name or IP address")
    return value


def _port_of(parts: urllib.parse.SplitResult) -> int | None:
    try:
        return parts.port
    except ValueError:
        raise _Bad("the port must be a number from 1 to 65535") from None


def _split_url(value: str) -> urllib.parse.SplitResult:
    if any(c.isspace() or ord(c) < 32 for c in value):
        raise _Bad("a URL has no spaces or control characters")
    try:
        return urllib.parse.urlsplit(value)
    except ValueError:
        raise _Bad("not a URL") from None


def _netloc(parts: urllib.parse.SplitResult, *, required: bool) -> None:
    """Check the host, the port and the percent-encoding of ``user:password@``."""
    if parts.hostname:
        _host(parts.hostname)
    elif required or parts.port is not None or parts.username:
        raise _Bad("the URL names no host")
    if _port_of(parts) == 0:
        raise _Bad("the port must be a number from 1 to 65535")
    userinfo = parts.netloc.rpartition("@")[0]
    if _BAD_PERCENT.search(userinfo):
        raise _Bad("user or password not percent-encoded (write % as %25)")


def _http_url(value: str) -> str:
    value = value.strip().rstrip("/")
    parts = _split_url(value)
    if parts.scheme.lower() not in ("http", "https"):
        raise _Bad("expected an http:// or https:// URL")
    _netloc(parts, required=True)
    return value


def _sql_url(value: str) -> str:
    value = value.strip()
    parts = _split_url(value)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        if not value.startswith("sqlite:///") or not value.removeprefix("sqlite:///").strip():
            raise _Bad("expected sqlite:///PATH with a file path (sqlite:///leadflow.db)")
        return value
    if scheme not in ("postgresql", "postgres"):
        raise _Bad("expected sqlite:///PATH or postgresql://user@host/db")
    _netloc(parts, required=False)
    return value


def _flag(value: str) -> bool:
    norm = value.strip().lower()
    if norm in ("1", "true", "yes", "on"):
        return True
    if norm in ("0", "false", "no", "off"):
        return False
    raise _Bad("expected 1/true/yes/on or 0/false/no/off")


def _token(value: str) -> Secret:
    value = value.strip()
    if len(value) < MIN_WEB_TOKEN_LENGTH or not all(33 <= ord(c) < 127 for c in value):
        raise _Bad(f"expected at least {MIN_WEB_TOKEN_LENGTH} printable ASCII characters, no spaces "
                   "(e.g. `openssl rand -hex 32`)")
    return Secret(value)


def _margin(value: str) -> int:
    match = _DURATION.fullmatch(value.strip())
    if match is None:
        raise _Bad('expected a duration <number><unit>, unit s, m, h or d (e.g. "1h")')
    ms = round(float(match.group(1)) * _UNIT_MS[match.group(2)])
    if not 0 < ms <= MAX_FUTURE_MARGIN_MS:
        raise _Bad("must be more than 0s and at most 3650d")
    return ms


def _file(value: str) -> str:
    value = value.strip()
    if not Path(value).is_file():
        raise _Bad("no such file")
    return value


@dataclass(frozen=True)
class Option:
    """One setting: its environment variable, its key in the config file, default and meaning."""

    name: str                      # attribute of Settings (topics: "topic_<field>")
    env: str
    key: str                       # dotted key in the config file
    default: Any
    meaning: str
    parse: Callable[[str], Any] = field(repr=False, default=_text)
    secret: bool = False
    #: the default as the table shows it, when the parsed default reads badly (``1h``, not 3600000)
    shown_default: str | None = None


OPTIONS: tuple[Option, ...] = (
    Option("broker", "LEADFLOW_BROKER", "broker", None,
           "Kafka bootstrap servers `host:port[,host:port]`; unset: `leadflow worker`/`demo` start the "
           "embedded broker", _bootstrap),
    Option("app_id", "LEADFLOW_APP_ID", "app_id", DEFAULT_APP_ID,
           "consumer group id and prefix of internal topics (`<app_id>.events-by-lead`, changelogs)",
           _topic),
    Option("partitions", "LEADFLOW_PARTITIONS", "partitions", DEFAULT_PARTITIONS,
           "partitions of every topic leadflow creates: the most workers that can share the work",
           _int_between(1, MAX_PARTITIONS)),
    Option("replication_factor", "LEADFLOW_REPLICATION_FACTOR", "replication_factor", -1,
           "replication factor of the topics leadflow creates; -1: the broker's default",
           _replication),
    Option("policy", "LEADFLOW_POLICY", "policy", None,
           "policy TOML file (SPEC section 7); unset: the built-in defaults", _file),
    Option("format", "LEADFLOW_FORMAT", "format", "json",
           "wire format of the output records: `json` or `avro` (Confluent framing; needs the "
           "schema registry). Inputs are accepted in both", _choice(FORMATS, upper=False)),
    Option("schema_registry_url", "LEADFLOW_SCHEMA_REGISTRY_URL", "schema_registry_url", None,
           "Confluent-compatible schema registry, e.g. `http://schema-registry:8081`", _http_url),
    *(
        Option(f"topic_{name}", f"LEADFLOW_TOPIC_{name.upper()}", f"topics.{name}", default,
               f"{'input' if name in _TOPIC_FIELDS[:4] else 'output'} topic", _topic)
        for name, default in _TOPIC_DEFAULTS.items()
    ),
    Option("security_protocol", "LEADFLOW_SECURITY_PROTOCOL", "security.protocol", "PLAINTEXT",
           "Kafka security protocol: " + ", ".join(SECURITY_PROTOCOLS),
           _choice(SECURITY_PROTOCOLS, upper=True)),
    Option("sasl_mechanism", "LEADFLOW_SASL_MECHANISM", "security.sasl_mechanism", None,
           "SASL mechanism (SASL_* protocols): " + ", ".join(SASL_MECHANISMS),
           _choice(SASL_MECHANISMS, upper=True)),
    Option("sasl_username", "LEADFLOW_SASL_USERNAME", "security.sasl_username", None,
           "SASL user name", _text),
    Option("sasl_password", "LEADFLOW_SASL_PASSWORD", "security.sasl_password", None,
           "SASL password; never logged", lambda v: Secret(_text(v)), secret=True),
    Option("ssl_cafile", "LEADFLOW_SSL_CAFILE", "security.ssl_cafile", None,
           "PEM file of the CA that signed the brokers' certificates (SSL, SASL_SSL)", _file),
    Option("ssl_certfile", "LEADFLOW_SSL_CERTFILE", "security.ssl_certfile", None,
           "PEM client certificate, for brokers that require mutual TLS", _file),
    Option("ssl_keyfile", "LEADFLOW_SSL_KEYFILE", "security.ssl_keyfile", None,
           "PEM private key of the client certificate", _file),
    Option("topic_prefix", "LEADFLOW_TOPIC_PREFIX", "topics.prefix", None,
           "prefix of every default topic name (`<prefix>.lead.form_fills` ...): one isolated "
           "deployment per prefix on a shared cluster; LEADFLOW_TOPIC_* still win", _topic),
    Option("web_host", "LEADFLOW_WEB_HOST", "web_host", "127.0.0.1",
           "host name or address other workers use to reach this worker's web port "
           "(`GET /leads/{id}` is routed to the lead's owner); set it on a real network", _host),
    Option("web_bind", "LEADFLOW_WEB_BIND", "web_bind", "127.0.0.1",
           "address the worker's web server listens on; `0.0.0.0` (every interface) only behind a "
           "firewall or with a web token set (README: Security)", _host),
    Option("web_token", "LEADFLOW_WEB_TOKEN", "web_token", None,
           "bearer token `GET /leads/{id}` requires (`Authorization: Bearer <token>`), at least "
           f"{MIN_WEB_TOKEN_LENGTH} characters; unset: no token asked", _token, secret=True),
    Option("web_debug_views", "LEADFLOW_WEB_DEBUG_VIEWS", "web_debug_views", False,
           "`1`: also serve faust's `/table/...` (raw lead rows) and `/router/...` views", _flag),
    Option("future_margin_ms", "LEADFLOW_FUTURE_MARGIN", "future_margin", DEFAULT_FUTURE_MARGIN_MS,
           "how far an event's `occurred_at` may be ahead of the worker's clock before it is "
           "dead-lettered as `future_timestamp` (replay: the summary warns when the clock jumps "
           "further than this ahead of the events after it)", _margin, shown_default="1h"),
    Option("store_retry_seconds", "LEADFLOW_STORE_RETRY_SECONDS", "store_retry_seconds", 60,
           "how long the worker retries a message whose store fails (disk full, broker down) before "
           "it stops, to carry on from the same offset once restarted", _int_at_least(1)),
    Option("loglevel", "LEADFLOW_LOGLEVEL", "loglevel", "warning",
           "worker log level: debug, info, warning, error",
           _choice(("debug", "info", "warning", "error", "critical"), upper=False)),
    Option("sql_url", "LEADFLOW_SQL_URL", "sinks.sql_url", None,
           "database the SQL sink writes lifecycle and alert records to: `sqlite:///PATH` or "
           "`postgresql://user@host/db`", _sql_url),
    Option("webhook_url", "LEADFLOW_WEBHOOK_URL", "sinks.webhook_url", None,
           "URL the webhook sink POSTs alerts to", _http_url),
)

ENV_VARS: tuple[str, ...] = tuple(o.env for o in OPTIONS)
_BY_NAME = {o.name: o for o in OPTIONS}
_BY_KEY = {o.key: o for o in OPTIONS}


def parse_option(name: str, value: str) -> Any:
    """One option's value parsed as ``load_settings`` would (``parse_option("sql_url", url)`` for a
    ``--sql`` flag); :class:`ConfigError` naming the value, secrets hidden, when it does not parse."""
    option = _BY_NAME[name]
    try:
        return option.parse(value)
    except _Bad as bad:
        shown = MASK if option.secret else excerpt(redact_url(value))
        raise ConfigError(f"{shown!r}: {bad}") from None


# -- the settings object -----------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Everything a deployment configures; build it with :func:`load_settings`."""

    broker: str | None = None
    app_id: str = DEFAULT_APP_ID
    partitions: int = DEFAULT_PARTITIONS
    replication_factor: int = -1
    policy: str | None = None
    format: str = "json"
    schema_registry_url: str | None = None
    topics: Topics = field(default_factory=Topics)
    topic_prefix: str | None = None
    web_host: str = "127.0.0.1"
    web_bind: str = "127.0.0.1"
    web_token: Secret | None = None
    web_debug_views: bool = False
    future_margin_ms: int = DEFAULT_FUTURE_MARGIN_MS
    loglevel: str = "warning"
    store_retry_seconds: int = 60
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    sql_url: str | None = None
    webhook_url: str | None = None
    #: where each value came from: ``{name: "env" | "file" | "override"}`` (defaults absent)
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __repr__(self) -> str:
        """Every value, with secrets hidden: ``Secret('********')`` and URLs through ``redact_url``."""
        shown = []
        for f in dataclasses.fields(self):
            if f.name == "sources":
                continue
            value = getattr(self, f.name)
            if isinstance(value, str) and "://" in value:
                value = redact_url(value)
            shown.append(f"{f.name}={value!r}")
        return "Settings(" + ", ".join(shown) + ")"

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")


def _problems(values: Mapping[str, Any], sources: Mapping[str, str], failed: set[str]) -> list[str]:
    """Checks that involve more than one value, of values that parsed; one line per problem."""
    if "security_protocol" in failed:
        failed = failed | {o.name for o in OPTIONS if o.key.startswith("security.")}

    def where(name: str) -> str:
        option = _BY_NAME[name]
        return option.env if sources.get(name) != "file" else f"{option.key} (config file)"

    problems = []
    protocol = values["security_protocol"]
    if protocol.startswith("SASL_"):
        for name in ("sasl_mechanism", "sasl_username", "sasl_password"):
            if values[name] is None and name not in failed:
                problems.append(f"{_BY_NAME[name].env}: required when "
                                f"LEADFLOW_SECURITY_PROTOCOL={protocol}")
    else:
        for name in ("sasl_mechanism", "sasl_username", "sasl_password"):
            if values[name] is not None and name not in failed:
                problems.append(f"{where(name)}: set, but LEADFLOW_SECURITY_PROTOCOL={protocol} "
                                "uses no SASL (use SASL_PLAINTEXT or SASL_SSL)")
    if protocol not in ("SSL", "SASL_SSL"):
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if values[name] is not None and name not in failed:
                problems.append(f"{where(name)}: set, but LEADFLOW_SECURITY_PROTOCOL={protocol} "
                                "uses no TLS (use SSL or SASL_SSL)")
    if not failed & {"ssl_certfile", "ssl_keyfile"} and \
            (values["ssl_certfile"] is None) != (values["ssl_keyfile"] is None):
        problems.append("LEADFLOW_SSL_CERTFILE and LEADFLOW_SSL_KEYFILE: give both or neither")
    if values["format"] == "avro" and values["schema_registry_url"] is None \
            and "schema_registry_url" not in failed:
        problems.append("LEADFLOW_SCHEMA_REGISTRY_URL: required when LEADFLOW_FORMAT=avro")
    names = {o.env: values[o.name] for o in OPTIONS if o.name.startswith("topic_") and o.name not in failed}
    seen: dict[str, str] = {}
    for env, topic in names.items():
        if topic is None:
            continue
        if topic in seen:
            problems.append(f"{env}: topic {topic!r} is also {seen[topic]}; every topic must be distinct")
        seen.setdefault(topic, env)
    return problems


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


#: A configuration file is a few dozen lines; a bigger one is refused before it is parsed.
MAX_CONFIG_BYTES = 1024 * 1024
#: Unknown keys named one by one; the rest are counted.
SHOWN_UNKNOWN_KEYS = 5


def _read_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            text = handle.read(MAX_CONFIG_BYTES + 1)
            if len(text) > MAX_CONFIG_BYTES:
                raise SettingsError([f"config file {path}: over {MAX_CONFIG_BYTES:,} bytes; "
                                     "a leadflow configuration is a few dozen lines"])
            data = tomllib.loads(text.decode("utf-8"))
    except FileNotFoundError:
        raise SettingsError([f"config file {path}: no such file"]) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError([f"config file {path}: {excerpt(str(exc))}"]) from exc
    return _flatten(data)


def load_settings(
    environ: Mapping[str, str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> Settings:
    """Validated settings from ``overrides`` (command line), ``environ``, ``config_file``, defaults.

    ``environ`` defaults to ``os.environ``; ``config_file`` to ``$LEADFLOW_CONFIG`` when set.
    An empty variable counts as unset. ``overrides`` use the names of :class:`Settings` fields
    (``broker=``, ``policy=``); ``None`` means "not given". Raises :class:`SettingsError` listing
    every bad value.
    """
    env = dict(os.environ if environ is None else environ)
    if config_file is None and env.get(ENV_CONFIG, "").strip():
        config_file = env[ENV_CONFIG].strip()
    problems: list[str] = []
    from_file = _read_file(config_file) if config_file is not None else {}
    unknown = [key for key in from_file if key not in _BY_KEY]
    for key in unknown[:SHOWN_UNKNOWN_KEYS]:
        problems.append(f"{excerpt(key, 40)} (config file {config_file}): unknown key; known keys: "
                        + ", ".join(sorted(_BY_KEY)))
    if len(unknown) > SHOWN_UNKNOWN_KEYS:
        problems.append(f"config file {config_file}: {len(unknown) - SHOWN_UNKNOWN_KEYS:,} more unknown keys")

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    failed: set[str] = set()
    for option in OPTIONS:
        raw: Any = None
        if overrides.get(option.name) is not None:
            raw, source, label = overrides[option.name], "override", option.env
        elif env.get(option.env, "").strip():
            raw, source, label = env[option.env], "env", option.env
        elif from_file.get(option.key) is not None:
            raw, source, label = from_file[option.key], "file", f"{option.key} (config file {config_file})"
        if raw is None:
            values[option.name] = option.default
            continue
        if isinstance(raw, bool) or not isinstance(raw, (str, int)):
            problems.append(f"{label}: expected a string or an integer, got {type(raw).__name__}")
            values[option.name] = option.default
            failed.add(option.name)
            continue
        try:
            values[option.name] = option.parse(str(raw))
            sources[option.name] = source
        except _Bad as bad:
            shown = MASK if option.secret else excerpt(redact_url(str(raw)))
            problems.append(f"{label}={shown!r}: {bad}")
            values[option.name] = option.default
            failed.add(option.name)
    unknown_overrides = set(overrides) - set(_BY_NAME)
    if unknown_overrides:
        raise TypeError(f"unknown settings: {sorted(unknown_overrides)}")
    problems.extend(_problems(values, sources, failed))
    if problems:
        raise SettingsError(problems)

    prefix = values["topic_prefix"]
    names = {}
    for name in _TOPIC_FIELDS:
        given = f"topic_{name}" in sources
        names[name] = values[f"topic_{name}"] if given or not prefix else f"{prefix}.{values[f'topic_{name}']}"
    topics = Topics(app_id=values["app_id"], partitions=values["partitions"], **names)
    plain = {k: v for k, v in values.items() if not k.startswith("topic_") or k == "topic_prefix"}
    return Settings(topics=topics, sources=sources, **plain)


# -- client keyword arguments ------------------------------------------------------------------


def kafka_python_kwargs(settings: Settings) -> dict[str, Any]:
    """Security keyword arguments for any kafka-python client (producer, consumer, admin).

    The bootstrap servers are not included: callers may have resolved an embedded broker instead.
    """
    kwargs: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if settings.uses_sasl:
        assert settings.sasl_password is not None
        kwargs.update(sasl_mechanism=settings.sasl_mechanism,
                      sasl_plain_username=settings.sasl_username,
                      sasl_plain_password=settings.sasl_password.reveal())
    if settings.uses_ssl:
        kwargs["ssl_check_hostname"] = True
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(settings, name) is not None:
                kwargs[name] = getattr(settings, name)
    return kwargs


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of the SSL/SASL_SSL protocols (system CAs unless ``ssl_cafile``)."""
    if not settings.uses_ssl:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.ssl_cafile)
    if settings.ssl_certfile is not None:
        context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile)
    return context


def faust_kwargs(settings: Settings) -> dict[str, Any]:
    """``broker_credentials`` for ``faust.App`` (empty for PLAINTEXT); merge into ``faust_settings``."""
    import faust

    if settings.security_protocol == "PLAINTEXT":
        return {}
    context = ssl_context(settings)
    if settings.uses_sasl:
        assert settings.sasl_password is not None
        credentials: Any = faust.SASLCredentials(
            username=settings.sasl_username, password=settings.sasl_password.reveal(),
            mechanism=settings.sasl_mechanism, ssl_context=context)
    else:
        credentials = faust.SSLCredentials(context)
    return {"broker_credentials": credentials}


def configuration_table() -> str:
    """The README's configuration table (markdown), generated from ``OPTIONS``."""
    rows = ["| variable | config file key | default | meaning |", "|---|---|---|---|"]
    for o in OPTIONS:
        default = "—" if o.default is None else f"`{o.shown_default or o.default}`"
        rows.append(f"| `{o.env}` | `{o.key}` | {default} | {o.meaning} |")
    rows.append(f"| `{ENV_CONFIG}` | — | — | the TOML config file (same as `--config`) |")
    return "\n".join(rows)
