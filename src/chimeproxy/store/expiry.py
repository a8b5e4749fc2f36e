"""The session lifecycle of domain/lifecycle.py written as SQL conditions, in one place.

Expiry is derived when read, never waited for: a session past `expires_at` reads as Closed
whether or not the sweeper has recorded it. Every query that filters or counts sessions by what
they read as uses these conditions; tests/unit/test_expiry_sql.py checks each against the domain
functions on generated rows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, or_

from chimeproxy.domain.lifecycle import ACTIVE, SessionStatus
from chimeproxy.store.schema import active_routes, proxy_sessions

ps = proxy_sessions.c
ar = active_routes.c


def visible(now: Any, retention_ms: Any) -> ColumnElement[bool]:
    """Kept (not yet purged): lifecycle.visible. A closed session stays readable for the
    retention period after it ended; an active one past its expiry ended then."""
    horizon = now - retention_ms
    return or_(
        and_(ps.status == SessionStatus.CLOSED, ps.ended_at > horizon),
        and_(ps.status != SessionStatus.CLOSED, ps.expires_at > horizon),
    )


def reads_as(status: str, now: Any) -> ColumnElement[bool]:
    """Sessions whose status reads as `status` at `now`: the status lifecycle.effective gives."""
    if status == SessionStatus.CLOSED:
        return or_(ps.status == SessionStatus.CLOSED, ps.expires_at <= now)
    return and_(ps.status == status, ps.expires_at > now)


def active(now: Any) -> ColumnElement[bool]:
    """Sessions that read as active (Open or InProgress) at `now`: the index of stored status
    and expiry finds exactly these."""
    return and_(ps.status.in_(ACTIVE), ps.expires_at > now)


def due_to_close(now: Any) -> ColumnElement[bool]:
    """Stored as active but past expiry: what the sweeper (or a create) records as Closed."""
    return and_(ps.status.in_(ACTIVE), ps.expires_at <= now)


# The order of the index of stored status and expiry (ix_proxy_sessions_open), in which a
# batch of `due_to_close` sessions is taken: each status's longest expired first.
DUE_ORDER = (ps.status, ps.expires_at)


def closed_and_visible(now: Any, retention_ms: Any) -> ColumnElement[bool]:
    """Reads as Closed at `now` and is still kept."""
    return and_(reads_as(SessionStatus.CLOSED, now), visible(now, retention_ms))


def purgeable(now: Any, retention_ms: Any) -> ColumnElement[bool]:
    """Recorded Closed and ended before the retention horizon: the sweeper deletes these (it
    records expired sessions as Closed first, in the same pass)."""
    return and_(ps.status == SessionStatus.CLOSED, ps.ended_at <= now - retention_ms)


def route_live(now: Any) -> ColumnElement[bool]:
    """An active route: its session (whose expiry the route mirrors) is active at `now`."""
    return ar.expires_at > now
