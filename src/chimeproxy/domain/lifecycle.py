"""Proxy session lifecycle: the status and end time that are true at a given instant."""

from __future__ import annotations

from dataclasses import dataclass

OPEN = "Open"
IN_PROGRESS = "InProgress"
CLOSED = "Closed"
ACTIVE = (OPEN, IN_PROGRESS)
MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class Effective:
    status: str
    ended_at: int | None


def expires_at(created_at: int, expiry_minutes: int) -> int:
    return created_at + expiry_minutes * MINUTE_MS


def effective(stored_status: str, expires: int, ended_at: int | None, now: int) -> Effective:
    """Expiry closes a session at CreatedTimestamp + ExpiryMinutes, whoever looks and when."""
    if stored_status == CLOSED:
        return Effective(CLOSED, ended_at if ended_at is not None else expires)
    if now >= expires:
        return Effective(CLOSED, expires)
    return Effective(stored_status, None)


def after_first_interaction(status: str) -> str:
    """The data plane's first routed call or message moves Open to InProgress."""
    return IN_PROGRESS if status == OPEN else status


def after_update(created_at: int, new_expiry_minutes: int, now: int) -> tuple[int, int | None]:
    """New expiry instant and, when it is already past, the instant the update closes it."""
    new_expires = expires_at(created_at, new_expiry_minutes)
    return new_expires, (now if new_expires <= now else None)


def purge_due(ended_at: int, retention_ms: int, now: int) -> bool:
    return ended_at + retention_ms <= now
