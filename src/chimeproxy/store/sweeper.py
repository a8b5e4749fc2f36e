"""Closes expired sessions, purges old closed ones and releases phone numbers whose time in the
deletion queue is over. Set-based and idempotent, so any number of processes may run it at once:
reads never depend on it having run (except that a deleted number is only offered again once
purged)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import Connection, delete

from chimeproxy.dataplane import events
from chimeproxy.domain.lifecycle import CLOSED
from chimeproxy.services import Services
from chimeproxy.store import interactions, phone_numbers, proxy
from chimeproxy.store.schema import proxy_sessions

log = logging.getLogger("chimeproxy.sweeper")
ps = proxy_sessions.c

# How long a deleted phone number waits in the deletion queue (restorable) before it goes back
# to the carrier, as in the hosted service.
DELETION_QUEUE_MS = 7 * 86_400_000


def close_expired(connection: Connection, now: int) -> int:
    """Record the closing of every session past its expiry and release its routes (the same
    statements a create uses for its participants, safe to run from many processes at once)."""
    return proxy.close_expired_sessions(connection, now)


def purge_closed(connection: Connection, now: int, retention_ms: int) -> int:
    result = connection.execute(
        delete(proxy_sessions).where(ps.status == CLOSED, ps.ended_at <= now - retention_ms)
    )
    return result.rowcount


def sweep(services: Services) -> tuple[int, int]:
    """One pass; answers (sessions closed, closed sessions purged). Also releases the phone
    numbers whose time in the deletion queue is over, and logs how many."""
    now = services.clock.now_ms()
    closing: list[Any] = []  # "session.closed" events, published once the pass commits

    def one_pass(connection: Connection) -> tuple[int, int, int]:
        closing[:] = events.expiring_sessions(services, connection, now)
        interactions.purge_out_of_session(connection, now - services.settings.retention_ms)
        return (
            close_expired(connection, now),
            purge_closed(connection, now, services.settings.retention_ms),
            phone_numbers.purge_deleted(connection, now - DELETION_QUEUE_MS),
        )

    # Retried when PostgreSQL resolves a deadlock with a concurrent create or another process's
    # sweep by rolling this pass back.
    closed, purged, released = services.db.write_retrying(one_pass)
    events.announce_closed(services, closing)
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
