"""Closes expired sessions, purges old closed ones and releases phone numbers whose time in the
deletion queue is over. Set-based and idempotent, so any number of processes may run it at once:
reads never depend on it having run (except that a deleted number is only offered again once
purged)."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import Connection, delete, select, update

from chimeproxy.domain.lifecycle import ACTIVE, CLOSED
from chimeproxy.services import Services
from chimeproxy.store import phone_numbers
from chimeproxy.store.schema import active_routes, proxy_sessions

log = logging.getLogger("chimeproxy.sweeper")
ps = proxy_sessions.c

# How long a deleted phone number waits in the deletion queue (restorable) before it goes back
# to the carrier, as in the hosted service.
DELETION_QUEUE_MS = 7 * 86_400_000


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
    """One pass; answers (sessions closed, closed sessions purged). Also releases the phone
    numbers whose time in the deletion queue is over, and logs how many."""
    now = services.clock.now_ms()
    with services.db.write() as connection:
        closed = close_expired(connection, now)
        purged = purge_closed(connection, now, services.settings.retention_ms)
        released = phone_numbers.purge_deleted(connection, now - DELETION_QUEUE_MS)
    if released:
        log.info("released deleted phone numbers", extra={"released": released})
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
