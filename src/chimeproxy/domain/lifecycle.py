"""Proxy session lifecycle: the status and end time that are true at a given instant, and
whether a session is still kept (store/expiry.py writes the same rules in SQL)."""

from __future__ import annotations

from enum import StrEnum
from typing import TypeAlias


class SessionStatus(StrEnum):
    """A proxy session's Status, as the API spells it."""

    OPEN = "Open"
    IN_PROGRESS = "InProgress"
    CLOSED = "Closed"


ACTIVE = (SessionStatus.OPEN, SessionStatus.IN_PROGRESS)
MINUTE_MS = 60_000


# Plain names for the members the hot paths compare and return: in Python 3.11 an attribute of
# an Enum class costs 90-120 ns (a module global: 25), and List asks for one per session shown.
_CLOSED = SessionStatus.CLOSED
_STATUS = {status.value: status for status in SessionStatus}

Effective: TypeAlias = tuple[SessionStatus, int | None]
"""A session's status and end instant at some instant: a plain tuple, not a named one or a
dataclass, because List makes one per session shown and a NamedTuple costs 300-400 ns to
build where this costs under 50 (docs/performance.md)."""


def expires_at(created_at: int, expiry_minutes: int) -> int:
    return created_at + expiry_minutes * MINUTE_MS


def effective(stored_status: str, expires: int, ended_at: int | None, now: int) -> Effective:
    """Expiry closes a session at CreatedTimestamp + ExpiryMinutes, whoever looks and when:
    the status and end instant true at `now`."""
    if stored_status == _CLOSED:
        return _CLOSED, (ended_at if ended_at is not None else expires)
    if now >= expires:
        return _CLOSED, expires
    return _STATUS[stored_status], None


def visible(
    stored_status: str, expires: int, ended_at: int | None, now: int, retention_ms: int
) -> bool:
    """Whether a session is still kept at `now`: a closed one stays readable for the retention
    period after it ended (a stored end, else its expiry), then it is as good as purged."""
    ended = effective(stored_status, expires, ended_at, now)[1]
    return ended is None or ended > now - retention_ms


def after_update(created_at: int, new_expiry_minutes: int, now: int) -> tuple[int, int | None]:
    """New expiry instant and, when it is already past, the instant the update closes it."""
    new_expires = expires_at(created_at, new_expiry_minutes)
    return new_expires, (now if new_expires <= now else None)
