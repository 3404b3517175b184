"""Deterministic identifiers: the same facts always give the same id, in replay and live alike."""

from __future__ import annotations

import hashlib


def stable_id(*parts: str) -> str:
    """A UUID-shaped id derived from ``parts`` (BLAKE2b; parts are joined with a unit separator)."""
    h = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def transition_id(lead_id: str, trigger_event_id: str, to_stage: str) -> str:
    return stable_id("transition", lead_id, trigger_event_id, to_stage)


def alert_id(lead_id: str, sla: str, instance: str, kind: str) -> str:
    """``instance`` names one SLA instance (the event that started it); ``kind`` the alert within it."""
    return stable_id("alert", lead_id, sla, instance, kind)


def event_digest(event_id: str) -> bytes:
    """8 bytes standing for an event id in a lead's idempotency set (collisions: ~n²/2⁶⁵ per lead)."""
    return hashlib.blake2b(event_id.encode(), digest_size=8).digest()
