"""Secrets never shown: one ``Secret`` type and one redactor for URLs and the messages that quote them.

Every URL leadflow prints, logs or puts in an error message goes through :func:`redact_url` (a
``user:password@`` and query parameters such as ``password=``, ``token=``, ``api_key=`` are masked);
a message that may quote a secret a library saw (psycopg repeats a malformed connection string, for
instance) goes through :func:`redact_text` with the URLs it may quote. Pure string work, no I/O, so
every layer above ``lifecycle`` can use it.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any, Final

MASK: Final = "********"

#: A query parameter (or ``key=value`` pair of a connection string) whose value is masked when its
#: lower-cased name contains one of these.
_SENSITIVE: Final = ("pass", "pwd", "secret", "token", "key", "auth", "sig", "credential", "session")
_URL: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]*")
_KEY_VALUE: Final = re.compile(
    r"(?P<name>\b[A-Za-z_][A-Za-z0-9_-]*)(?P<eq>\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'|[^\s&;,'\"]+)")


class Secret:
    """A value that never shows itself in ``repr``/``str``; ``reveal()`` hands it to a client."""

    __slots__ = ("_value",)

    def __init__(self, value: str | bytes) -> None:
        self._value = value

    def reveal(self) -> Any:
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("a Secret is not picklable")


def _sensitive(name: str) -> bool:
    lowered = urllib.parse.unquote(name).lower()
    return any(word in lowered for word in _SENSITIVE)


def _split(url: str) -> tuple[str, str, str, str, str] | None:
    """``(scheme://, userinfo, host-and-port, path, query-and-fragment)``, or None if ``url`` has
    no ``scheme://``. Written by hand: ``urllib.parse.urlsplit`` refuses some malformed URLs (a
    bad IPv6 bracket) that still have to be printed without their password."""
    match = re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", url)
    if match is None:
        return None
    rest = url[match.end():]
    cut = len(rest)
    for stop in "/?#":
        at = rest.find(stop)
        if at != -1:
            cut = min(cut, at)
    netloc, tail = rest[:cut], rest[cut:]
    userinfo, at, host = netloc.rpartition("@")
    if not at:
        userinfo, host = "", netloc
    path, mark, query = tail.partition("?")
    return match.group(), userinfo + at, host, path, mark + query


def _secret_parts(url: str) -> list[str]:
    """The secret pieces of ``url``: its password and its sensitive query values, as written."""
    parts = _split(url)
    if parts is None:
        return []
    _, userinfo, _, _, query = parts
    found = []
    user, colon, password = userinfo.rstrip("@").partition(":")
    if colon and password:
        found.append(password)
    for pair in re.split(r"[&;]", query.lstrip("?").partition("#")[0]):
        name, eq, value = pair.partition("=")
        if eq and value and _sensitive(name):
            found.append(value)
    return found


def redact_url(url: str) -> str:
    """``url`` with its password (``user:********@``) and sensitive query values masked; any other
    text comes back unchanged. ``redact_url("postgresql://lf:pw@db/x?password=pw")`` is
    ``postgresql://lf:********@db/x?password=********``."""
    parts = _split(url)
    if parts is None:
        return url
    scheme, userinfo, host, path, query = parts
    if userinfo:
        user, colon, password = userinfo[:-1].partition(":")
        userinfo = f"{user}:{MASK}@" if colon else userinfo
    if query:
        body, hash_mark, fragment = query[1:].partition("#")
        pairs = re.split(r"([&;])", body)
        for i in range(0, len(pairs), 2):
            name, eq, value = pairs[i].partition("=")
            if eq and value and _sensitive(name):
                pairs[i] = f"{name}={MASK}"
        query = "?" + "".join(pairs) + hash_mark + fragment
    return f"{scheme}{userinfo}{host}{path}{query}"


def redact_text(text: str, *secrets: str | Secret | None) -> str:
    """``text`` with every URL in it redacted, every ``password=…``-style pair masked, and every
    occurrence of ``secrets`` masked: a URL given there masks its password and sensitive query
    values wherever they appear (raw and percent-decoded), as a library's error message may quote
    them without the URL around them."""
    pieces: list[str] = []
    for secret in secrets:
        if secret is None:
            continue
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        found = _secret_parts(value) if _split(value) is not None else [value]
        for piece in found:
            pieces.extend({piece, urllib.parse.unquote(piece)})
    for piece in sorted((p for p in pieces if p), key=len, reverse=True):
        text = text.replace(piece, MASK)
    text = _URL.sub(lambda m: redact_url(m.group()), text)
    return _KEY_VALUE.sub(
        lambda m: f"{m['name']}{m['eq']}{MASK}" if _sensitive(m["name"]) and "://" not in m["value"]
        else m.group(), text)
