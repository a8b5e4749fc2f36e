"""Closes expired sessions and purges old closed ones. Set-based and idempotent, so any number
of processes may run it at once: reads never depend on it having run."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import Connection, delete, select, update

from chimeproxy.domain.lifecycle import ACTIVE, CLOSED
from chimeproxy.services import Services
from chimeproxy.store.schema import active_routes, proxy_sessions

log = logging.getLogger("chimeproxy.sweeper")
ps = proxy_sessions.c


def close_expired(connection: Connection, now: int) -> int:
    """Record the closing of every session past its expiry and release its routes."""
    expired = select(ps.pk).where(ps.status.in_(ACTIVE), ps.expires_at <= now)
    connection.execute(delete(active_routes).where(active_routes.c.session_pk.in_(expired)))
    result = connection.execute(
        update(proxy_sessions)
        .where(ps.status.in_(ACTIVE), ps.expires_at <= now)
        .values(status=CLOSED, ended_at=ps.expires_at)
    )
    return result.rowcount


def purge_closed(connection: Connection, now: int, retention_ms: int) -> int:
    result = connection.execute(
        delete(proxy_sessions).where(ps.status == CLOSED, ps.ended_at <= now - retention_ms)
    )
    return result.rowcount


def sweep(services: Services) -> tuple[int, int]:
    now = services.clock.now_ms()
    with services.db.write() as connection:
        closed = close_expired(connection, now)
        purged = purge_closed(connection, now, services.settings.retention_ms)
    return closed, purged


async def run_forever(services: Services) -> None:
    interval = services.settings.sweep_interval_seconds
    while True:
        await asyncio.sleep(interval)
        try:
            closed, purged = await asyncio.to_thread(sweep, services)
            if closed or purged:
                log.info("swept", extra={"closed": closed, "purged": purged})
        except Exception:
            log.exception("sweep failed; will try again")
