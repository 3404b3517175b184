"""A local stand-in for a Confluent schema registry: its REST API as documented, in one place.

Only what leadflow uses, with the registry's status codes and error bodies
(``{"error_code": 40403, "message": "Schema 7 not found"}``):

| request | answer |
|---|---|
| ``GET /subjects`` | ``["lead.form_fills-value", ...]`` |
| ``GET /subjects/{s}/versions`` | ``[1, 2]``; 404 / 40401 unknown subject |
| ``GET /subjects/{s}/versions/{n or latest}`` | ``{"subject", "version", "id", "schema"}``; 40401, 404 / 40402 |
| ``GET /schemas/ids/{id}`` | ``{"schema": "<json text>"}``; 404 / 40403 |
| ``POST /subjects/{s}/versions`` ``{"schema": "..."}`` | ``{"id": n}``; the same schema again keeps its id, and one schema has one id across subjects; 409 / 409 not compatible with the latest version (BACKWARD); 422 / 42201 invalid schema |
| ``POST /compatibility/subjects/{s}/versions/latest`` | ``{"is_compatible": bool}`` (+ ``"messages"`` with ``?verbose=true``); 404 / 40401 unknown subject |
| anything else | 404 / 404, or 405 / 405 |

Compatibility is BACKWARD (the registry's default), judged by ``schemas.compat``. ``delay`` makes every
answer that slow (timeouts), ``requests`` counts requests (caching).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import fastavro

from schemas.compat import backward_problems

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class _Error(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class FakeRegistry:
    def __init__(self) -> None:
        self.schemas: dict[int, str] = {}          # id -> canonical schema text
        self.subjects: dict[str, list[int]] = {}   # subject -> ids of versions 1..n
        self.compatibility = "BACKWARD"            # or "NONE"
        self.delay = 0.0
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeRegistry":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- the REST behaviour --------------------------------------------------------------------

    def _subject(self, subject: str) -> list[int]:
        if subject not in self.subjects:
            raise _Error(404, 40401, f"Subject '{subject}' not found.")
        return self.subjects[subject]

    def _version(self, subject: str, version: str) -> tuple[int, int]:
        ids = self._subject(subject)
        if version == "latest":
            return len(ids), ids[-1]
        if not version.isdigit() or not 1 <= int(version) <= len(ids):
            raise _Error(404, 40402, f"Version {version} not found.")
        return int(version), ids[int(version) - 1]

    @staticmethod
    def _canonical(body: Any) -> str:
        if not isinstance(body, dict) or not isinstance(body.get("schema"), str):
            raise _Error(422, 42201, "Invalid schema: the request needs a 'schema' string")
        try:
            parsed = json.loads(body["schema"])
            fastavro.parse_schema(parsed)
        except Exception as exc:  # noqa: BLE001
            raise _Error(422, 42201, f"Invalid schema {body['schema'][:80]}: {exc}") from None
        return json.dumps(parsed, separators=(",", ":"), sort_keys=True)

    def _incompatibilities(self, subject: str, text: str) -> list[str]:
        if self.compatibility == "NONE" or not self.subjects.get(subject):
            return []
        latest = self.schemas[self.subjects[subject][-1]]
        return [str(p) for p in backward_problems(json.loads(text), json.loads(latest))]

    def answer(self, method: str, path: str, query: str, body: Any) -> Any:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        with self._lock:
            if method == "GET" and parts == ["subjects"]:
                return sorted(self.subjects)
            if method == "GET" and len(parts) == 3 and parts[0] == "schemas" and parts[1] == "ids":
                if not parts[2].isdigit() or int(parts[2]) not in self.schemas:
                    raise _Error(404, 40403, f"Schema {parts[2]} not found")
                return {"schema": self.schemas[int(parts[2])]}
            if method == "GET" and len(parts) == 3 and parts[::2] == ["subjects", "versions"]:
                return list(range(1, len(self._subject(parts[1])) + 1))
            if method == "GET" and len(parts) == 4 and parts[0] == "subjects" and parts[2] == "versions":
                version, schema_id = self._version(parts[1], parts[3])
                return {"subject": parts[1], "version": version, "id": schema_id,
                        "schema": self.schemas[schema_id]}
            if method == "POST" and len(parts) == 3 and parts[::2] == ["subjects", "versions"]:
                subject, text = parts[1], self._canonical(body)
                ids = self.subjects.get(subject, [])
                for schema_id in ids:
                    if self.schemas[schema_id] == text:
                        return {"id": schema_id}
                if self._incompatibilities(subject, text):
                    raise _Error(409, 409, "Schema being registered is incompatible with an earlier "
                                           f"schema for subject \"{subject}\"")
                schema_id = next((i for i, t in self.schemas.items() if t == text), None)
                if schema_id is None:
                    schema_id = max(self.schemas, default=0) + 1
                    self.schemas[schema_id] = text
                self.subjects.setdefault(subject, []).append(schema_id)
                return {"id": schema_id}
            if method == "POST" and len(parts) == 5 and parts[0] == "compatibility" \
                    and parts[1] == "subjects" and parts[3] == "versions":
                self._version(parts[2], parts[4])
                problems = self._incompatibilities(parts[2], self._canonical(body))
                answer: dict[str, Any] = {"is_compatible": not problems}
                if "verbose=true" in query:
                    answer["messages"] = problems
                return answer
        if method not in ("GET", "POST"):
            raise _Error(405, 405, "HTTP 405 Method Not Allowed")
        raise _Error(404, 404, "HTTP 404 Not Found")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                url = urlsplit(self.path)
                registry.requests.append((method, url.path))
                if registry.delay:
                    time.sleep(registry.delay)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    try:
                        body = json.loads(raw) if raw else None
                    except ValueError:
                        raise _Error(400, 50005, "Unrecognized JSON body") from None
                    status, answer = 200, registry.answer(method, url.path, url.query, body)
                except _Error as err:
                    status, answer = err.status, {"error_code": err.code, "message": err.message}
                data = json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", CONTENT_TYPE)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass    # the client gave up (timeout tests)

            def do_GET(self) -> None:  # noqa: N802
                self._serve("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._serve("POST")

            def do_DELETE(self) -> None:  # noqa: N802
                self._serve("DELETE")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        return Handler
