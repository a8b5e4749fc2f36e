"""The background task that runs the store's sweep (store/sweeper.py) every
`--sweep-interval` seconds and announces the sessions it closed."""

from __future__ import annotations

import asyncio
import logging
import time

from chimeproxy import events, shapes
from chimeproxy.services import Services
from chimeproxy.store import sweeper as store

log = logging.getLogger("chimeproxy.sweeper")

# Between two steps of a pass, the write lock is left free at least this long, and at least as
# long as the step took: SQLite's waiting writers (the requests', on the event loop) poll for it
# every few to 100 ms, and would otherwise keep losing it to the next step.
STEP_PAUSE_S = 0.01


def sweep(services: Services) -> store.Swept:
    """One pass: steps of at most store.BATCH rows of each kind, each a write transaction of its
    own (retried when PostgreSQL resolves a deadlock with a concurrent create or another
    process's sweep by rolling it back) followed by its events, with a pause between steps in
    which the requests' writes take the write lock (the pass takes at most half the time it
    would alone). A pass that has run for half of
    `--db-deadline` leaves the rest to the next one, so it is never abandoned for its length."""
    now = services.clock.now_ms()
    sink = services.events
    started = time.monotonic()
    budget = services.settings.db_deadline / 2
    swept = store.Swept()
    while True:
        step_started = time.monotonic()
        step = services.db.write_retrying(
            lambda connection: store.sweep_step(
                connection,
                now,
                services.settings.retention_ms,
                with_closing=sink.enabled,
                limit=store.BATCH,
            )
        )
        _announce(services, step, now)
        swept.add(step)
        took = time.monotonic() - step_started
        # Another step and its pause (the lock is left free at least as long as the step held
        # it) must fit in the budget: a pass past `--db-deadline` would be abandoned.
        pause = max(STEP_PAUSE_S, took)
        if not step.more or time.monotonic() - started + pause + took > budget:
            break
        time.sleep(pause)
    if swept.released:
        log.info("released deleted phone numbers", extra={"released": swept.released})
    return swept


def _announce(services: Services, step: store.Swept, now: int) -> None:
    for row in step.closing:
        data = shapes.with_iso_timestamps(shapes.proxy_session(row, row["connector_id"], now))
        services.events.publish(
            events.SESSION_CLOSED,
            data,
            account=row["connector_account"],
            region=row["connector_region"],
        )


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
