"""One root exception for leadflow, and a subclass per area.

Bad *events* never raise out of the stream: decoding errors become DLQ records carrying a stable
``code`` (see ``schemas.codec``). Exceptions are for bad configuration and for programming errors.
"""

from __future__ import annotations


class LeadflowError(Exception):
    """Root of every error leadflow raises on purpose."""


class PolicyError(LeadflowError):
    """A policy file that cannot be used; the message names the file, the line and the key."""

    def __init__(self, file: str, line: int | None, key: str | None, problem: str) -> None:
        self.file = file
        self.line = line
        self.key = key
        self.problem = problem
        where = file if line is None else f"{file}:{line}"
        what = f"{key}: " if key else ""
        super().__init__(f"{where}: {what}{problem}")


class EventError(LeadflowError):
    """An input message that cannot be turned into an event; ``code`` is stable and machine-readable."""

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"{code}: {detail}")


class StoreFailure(LeadflowError):
    """A store failed (state store, changelog or output topic: disk full, broker down): not the
    record's fault, so progress stops and the message is retried, never dead-lettered."""


class RecordTooLarge(LeadflowError):
    """A record or a lead's row cannot be written whatever we retry (over a size limit): the
    record's fault, so its event is dead-lettered as ``processing_failed``."""


class ConfigError(LeadflowError):
    """Bad command-line or environment configuration (exit status 2)."""


#: How many problems an error message lists before "… and N more", and how much of a value it echoes.
SHOWN_PROBLEMS = 20
SHOWN_CHARS = 80


def capped(problems: list[str], limit: int = SHOWN_PROBLEMS) -> list[str]:
    """The first ``limit`` problems, then ``… and N more``: a file with a million bad keys gives a
    message of a screen, not of hundreds of megabytes."""
    if len(problems) <= limit:
        return list(problems)
    return [*problems[:limit], f"… and {len(problems) - limit:,} more"]


def excerpt(value: str, limit: int = SHOWN_CHARS) -> str:
    """``value`` as an error message may echo it: its first ``limit`` characters, then how long it was."""
    if len(value) <= limit:
        return value
    return f"{value[:limit]}… ({len(value):,} characters)"
