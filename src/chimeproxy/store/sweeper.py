"""The sweeper's SQL: close expired sessions, purge old closed ones and old out-of-session
contacts, release phone numbers whose time in the deletion queue is over. Set-based and
idempotent, so any number of processes may run it at once: reads never depend on it having run
(except that a deleted number is only offered again once purged). The loop that runs it is
chimeproxy/sweeper.py."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, RowMapping, delete, select

from chimeproxy.domain.phone_numbers import DELETION_QUEUE_MS
from chimeproxy.store import expiry, interactions, phone_numbers, proxy
from chimeproxy.store.schema import proxy_sessions, voice_connectors

ps = proxy_sessions.c
vc = voice_connectors.c


@dataclass
class Swept:
    """What one pass did."""

    closed: int = 0
    purged: int = 0
    released: int = 0
    # The sessions it closed, with their connector's id, account and region (when asked for).
    closing: list[RowMapping] = field(default_factory=list)


def sessions_due_to_close(connection: Connection, now: int) -> list[RowMapping]:
    query = (
        select(
            proxy_sessions,
            vc.id.label("connector_id"),
            vc.account.label("connector_account"),
            vc.region.label("connector_region"),
        )
        .select_from(proxy_sessions.join(voice_connectors, vc.pk == ps.voice_connector_pk))
        .where(expiry.due_to_close(now))
    )
    return list(connection.execute(query).mappings())


def purge_closed(connection: Connection, now: int, retention_ms: int) -> int:
    result = connection.execute(delete(proxy_sessions).where(expiry.purgeable(now, retention_ms)))
    return result.rowcount


def sweep(connection: Connection, now: int, retention_ms: int, *, with_closing: bool) -> Swept:
    """One pass in the caller's transaction; `with_closing` also reads the sessions it closes."""
    swept = Swept()
    if with_closing:
        swept.closing = sessions_due_to_close(connection, now)
    interactions.purge_out_of_session(connection, now - retention_ms)
    # The same statements a create uses for its participants, safe from many processes at once.
    swept.closed = proxy.close_expired_sessions(connection, now)
    swept.purged = purge_closed(connection, now, retention_ms)
    swept.released = phone_numbers.purge_deleted(connection, now - DELETION_QUEUE_MS)
    return swept
