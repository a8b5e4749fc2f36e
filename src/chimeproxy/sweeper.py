"""The background task that runs the store's sweep (store/sweeper.py) every
`--sweep-interval` seconds and announces the sessions it closed."""

from __future__ import annotations

import asyncio
import logging

from chimeproxy import events, shapes
from chimeproxy.services import Services
from chimeproxy.store import sweeper as store

log = logging.getLogger("chimeproxy.sweeper")


def sweep(services: Services) -> store.Swept:
    """One pass (a write transaction, retried when PostgreSQL resolves a deadlock with a
    concurrent create or another process's sweep by rolling it back); then its events."""
    now = services.clock.now_ms()
    sink = services.events
    swept = services.db.write_retrying(
        lambda connection: store.sweep(
            connection, now, services.settings.retention_ms, with_closing=sink.enabled
        )
    )
    for row in swept.closing:
        data = shapes.with_iso_timestamps(shapes.proxy_session(row, row["connector_id"], now))
        sink.publish(
            events.SESSION_CLOSED,
            data,
            account=row["connector_account"],
            region=row["connector_region"],
        )
    if swept.released:
        log.info("released deleted phone numbers", extra={"released": swept.released})
    return swept


async def run_forever(services: Services) -> None:
    interval = services.settings.sweep_interval_seconds
    while True:
        await asyncio.sleep(interval)
        try:
            # In a thread even on SQLite: a pass may hold the write lock long enough to stall
            # the event loop. Bounded like a request, so a stuck pass rolls back.
            swept = await services.db.run(
                lambda: sweep(services), services.settings.db_deadline, background=True
            )
            if swept.closed or swept.purged:
                log.info("swept", extra={"closed": swept.closed, "purged": swept.purged})
        except Exception:
            log.exception("sweep failed; will try again")
