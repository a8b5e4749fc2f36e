"""The sweeper's SQL: close expired sessions, purge old closed ones and old out-of-session
contacts, release phone numbers whose time in the deletion queue is over. Set-based and
idempotent, so any number of processes may run it at once: reads never depend on it having run
(except that a deleted number is only offered again once purged). A step touches at most BATCH
rows of each kind, in its caller's transaction; the loop that runs steps, each in a
transaction of its own, is chimeproxy/sweeper.py."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, RowMapping, delete, select

from chimeproxy.domain.phone_numbers import DELETION_QUEUE_MS
from chimeproxy.store import expiry, interactions, phone_numbers, proxy
from chimeproxy.store.schema import proxy_sessions, voice_connectors

ps = proxy_sessions.c
vc = voice_connectors.c

# Rows of each kind per step. A step holds the write lock, which SQLite's writers on the event
# loop wait for: a bounded step keeps that wait to milliseconds, where a whole pass over the day
# a busy month ago is purged would stall every request for seconds (docs/performance.md).
BATCH = 100


@dataclass
class Swept:
    """What one pass did."""

    closed: int = 0
    purged: int = 0
    released: int = 0
    # The sessions it closed, with their connector's id, account and region (when asked for).
    closing: list[RowMapping] = field(default_factory=list)
    more: bool = False  # a step reached its limit of some kind: there may be more to do

    def add(self, step: Swept) -> None:
        """Count a step in a pass (its closed sessions were announced with it, not kept)."""
        self.closed += step.closed
        self.purged += step.purged
        self.released += step.released
        self.more = step.more


def sessions_due_to_close(connection: Connection, now: int, limit: int) -> list[RowMapping]:
    """At most `limit` sessions due to close, in `expiry.DUE_ORDER` (read through its index,
    as `close_expired_sessions` takes a batch)."""
    query = (
        select(
            proxy_sessions,
            vc.id.label("connector_id"),
            vc.account.label("connector_account"),
            vc.region.label("connector_region"),
        )
        .select_from(proxy_sessions.join(voice_connectors, vc.pk == ps.voice_connector_pk))
        .where(expiry.due_to_close(now))
        .order_by(*expiry.DUE_ORDER)
        .limit(limit)
    )
    return list(connection.execute(query).mappings())


def purge_closed(connection: Connection, now: int, retention_ms: int, limit: int) -> int:
    """Delete up to `limit` sessions past their retention (their interactions go with them)."""
    due = select(ps.pk).where(expiry.purgeable(now, retention_ms)).limit(limit)
    return connection.execute(delete(proxy_sessions).where(ps.pk.in_(due))).rowcount


def sweep_step(
    connection: Connection, now: int, retention_ms: int, *, with_closing: bool, limit: int
) -> Swept:
    """One step of a pass in the caller's transaction, at most `limit` rows of each kind;
    `with_closing` also reads the sessions it closes. `more` says whether to take another."""
    swept = Swept()
    out_of_session = interactions.purge_out_of_session(connection, now - retention_ms, limit)
    # The same statements a create uses for its participants, safe from many processes at once.
    due = 0
    if with_closing:
        # The sessions read are the ones the UPDATE may close, and only those it did close are
        # announced: at READ COMMITTED another sweeper, an update or a create may have closed
        # or extended some of them in between (PostgreSQL; SQLite's writers are serialized).
        rows = sessions_due_to_close(connection, now, limit)
        due = len(rows)
        closed = set(
            proxy.closed_expired_sessions(connection, now, ps.pk.in_([r["pk"] for r in rows]))
            if rows
            else ()
        )
        swept.closing = [row for row in rows if row["pk"] in closed]
        swept.closed = len(closed)
    else:
        swept.closed = proxy.close_expired_sessions(connection, now, limit=limit)
    swept.purged = purge_closed(connection, now, retention_ms, limit)
    swept.released = phone_numbers.purge_deleted(connection, now - DELETION_QUEUE_MS, limit)
    swept.more = limit <= max(out_of_session, due, swept.closed, swept.purged, swept.released)
    return swept
