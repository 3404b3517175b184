"""A Confluent-compatible schema registry client: the ``SchemaLookup`` of live Avro decoding.

``RegistryClient(url)`` is called with a schema id (``client(42)``) by ``schemas.codec.decode_avro``
and answers the fastavro-parsed writer schema, or ``None`` when the registry does not know the id
(the message then goes to the DLQ with ``unknown_schema_id``). Ids are immutable in a registry, so a
found schema is cached for the life of the process; an unknown id is remembered for
``negative_ttl`` seconds so a burst of bad messages costs one request, not one each.

A registry that is down, slow or answers nonsense raises :class:`RegistryError` (a
``LeadflowError``) after at most ``timeout`` seconds per request: it never hangs, and it never turns
valid messages into DLQ records. The worker stops on it, and Kafka keeps the messages until it
is back.

Subjects follow the TopicNameStrategy: the values of topic ``T`` are registered under ``T-value``.

Why the standard library's ``urllib`` rather than aiohttp: the codec's ``SchemaLookup`` is a plain
synchronous call, made once per schema id per process (then cached); a synchronous client fits it
without an event loop, works the same from the CLI, tests and the faust agent, and adds no
dependency. The one blocking call per new id is bounded by ``timeout``.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import fastavro

from lifecycle.errors import LeadflowError
from schemas.secrets import Secret, redact_url

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
#: error codes of the registry's REST API that this client acts on
SUBJECT_NOT_FOUND = 40401
VERSION_NOT_FOUND = 40402
SCHEMA_NOT_FOUND = 40403

ParsedSchema = Any


class RegistryError(LeadflowError):
    """The registry cannot be reached, or refused a request; ``error_code`` is the registry's."""

    def __init__(self, message: str, *, status: int | None = None, error_code: int | None = None) -> None:
        self.status = status
        self.error_code = error_code
        super().__init__(message)


@dataclass(frozen=True)
class Compatibility:
    """The registry's answer to "may this schema be registered under the subject?"."""

    is_compatible: bool
    messages: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.is_compatible


def value_subject(topic: str) -> str:
    """TopicNameStrategy: the subject of the values of ``topic``."""
    return f"{topic}-value"


def _schema_text(schema: Mapping[str, Any] | str) -> str:
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError as exc:
            raise RegistryError(f"not a JSON Avro schema: {exc}") from exc
    return json.dumps(schema, separators=(",", ":"), sort_keys=False)


class RegistryClient:
    """Schema registry at ``url`` (``http://host:8081``; ``http://user:password@host`` for basic auth)."""

    def __init__(self, url: str, *, timeout: float = 5.0, negative_ttl: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        parts = urllib.parse.urlsplit(url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RegistryError(f"bad schema registry URL {redact_url(url)!r}: expected http(s)://host:port")
        self._auth: Secret | None = None
        if parts.username is not None:
            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
            self._auth = Secret("Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii"))
            netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
            parts = parts._replace(netloc=netloc)
        self.url = urllib.parse.urlunsplit(parts)
        self.timeout = timeout
        self.negative_ttl = negative_ttl
        self._clock = clock
        self._by_id: dict[int, ParsedSchema] = {}
        self._unknown: dict[int, float] = {}
        self._lock = threading.Lock()
        self.requests = 0   # HTTP requests made, for tests and metrics

    def __repr__(self) -> str:
        return f"RegistryClient({self.url!r})"

    # -- SchemaLookup -------------------------------------------------------------------------

    def __call__(self, schema_id: int) -> ParsedSchema | None:
        """The parsed writer schema of ``schema_id``; None if the registry does not know it."""
        with self._lock:
            if schema_id in self._by_id:
                return self._by_id[schema_id]
            since = self._unknown.get(schema_id)
            if since is not None and self._clock() - since < self.negative_ttl:
                return None
        try:
            body = self._request("GET", f"/schemas/ids/{int(schema_id)}")
        except RegistryError as exc:
            if exc.error_code == SCHEMA_NOT_FOUND or (exc.status == 404 and exc.error_code is None):
                with self._lock:
                    self._unknown[schema_id] = self._clock()
                return None
            raise
        if body.get("schemaType", "AVRO") != "AVRO":
            raise RegistryError(f"schema id {schema_id} is {body['schemaType']}, not Avro")
        parsed = self._parse(body.get("schema"), f"schema id {schema_id}")
        with self._lock:
            self._by_id[schema_id] = parsed
            self._unknown.pop(schema_id, None)
        return parsed

    # -- writes and checks --------------------------------------------------------------------

    def register(self, subject: str, schema: Mapping[str, Any] | str) -> int:
        """Register ``schema`` under ``subject`` (idempotent: the same schema keeps its id)."""
        text = _schema_text(schema)
        body = self._request("POST", f"/subjects/{self._quote(subject)}/versions", {"schema": text})
        schema_id = body.get("id")
        if not isinstance(schema_id, int):
            raise RegistryError(f"registry answered no schema id for subject {subject!r}: {body}")
        parsed = self._parse(text, f"subject {subject!r}")
        with self._lock:
            self._by_id.setdefault(schema_id, parsed)
            self._unknown.pop(schema_id, None)
        return schema_id

    def check_compatibility(self, subject: str, schema: Mapping[str, Any] | str) -> Compatibility:
        """Can ``schema`` be registered under ``subject``, by the subject's compatibility level?

        A subject with no version yet accepts any schema.
        """
        text = _schema_text(schema)
        try:
            body = self._request("POST", f"/compatibility/subjects/{self._quote(subject)}/versions/latest"
                                         "?verbose=true", {"schema": text})
        except RegistryError as exc:
            if exc.error_code in (SUBJECT_NOT_FOUND, VERSION_NOT_FOUND):
                return Compatibility(True, ("no version registered yet",))
            raise
        compatible = body.get("is_compatible")
        if not isinstance(compatible, bool):
            raise RegistryError(f"registry answered no is_compatible for subject {subject!r}: {body}")
        return Compatibility(compatible, tuple(str(m) for m in body.get("messages") or ()))

    def latest(self, subject: str) -> tuple[int, int, ParsedSchema]:
        """``(version, schema id, parsed schema)`` of the subject's latest version."""
        body = self._request("GET", f"/subjects/{self._quote(subject)}/versions/latest")
        schema_id = body.get("id")
        parsed = self._parse(body.get("schema"), f"subject {subject!r}")
        if isinstance(schema_id, int):
            with self._lock:
                self._by_id.setdefault(schema_id, parsed)
        return int(body.get("version", 0)), int(schema_id or 0), parsed

    def subjects(self) -> list[str]:
        body = self._request("GET", "/subjects")
        if not isinstance(body, list):
            raise RegistryError(f"registry answered {body!r} for the subject list")
        return [str(s) for s in body]

    # -- plumbing -----------------------------------------------------------------------------

    @staticmethod
    def _quote(subject: str) -> str:
        return urllib.parse.quote(subject, safe="")

    @staticmethod
    def _parse(text: Any, what: str) -> ParsedSchema:
        if not isinstance(text, str):
            raise RegistryError(f"registry answered no schema for {what}")
        try:
            return fastavro.parse_schema(json.loads(text))
        except Exception as exc:  # noqa: BLE001 - fastavro raises several types for bad schemas
            raise RegistryError(f"registry answered an unusable schema for {what}: {exc}") from exc

    def _request(self, method: str, path: str, payload: Mapping[str, Any] | None = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Accept", f"{CONTENT_TYPE}, application/json")
        if data is not None:
            request.add_header("Content-Type", CONTENT_TYPE)
        if self._auth:
            request.add_header("Authorization", self._auth.reveal())
        self.requests += 1
        where = f"schema registry {self.url}: {method} {path.split('?')[0]}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read() if exc.fp is not None else b""
            code, message = None, raw.decode("utf-8", "replace")[:200] or exc.reason
            try:
                err = json.loads(raw)
                code, message = err.get("error_code"), err.get("message", message)
            except (ValueError, AttributeError):
                pass
            raise RegistryError(f"{where}: HTTP {exc.code}"
                                + (f" error {code}" if code is not None else "") + f": {message}",
                                status=exc.code, error_code=code) from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RegistryError(f"{where}: unreachable ({reason or type(exc).__name__}; "
                                f"timeout {self.timeout:g} s)") from exc
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise RegistryError(f"{where}: answered something other than JSON: {raw[:100]!r}") from exc
