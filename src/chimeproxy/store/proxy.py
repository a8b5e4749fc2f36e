"""Queries on proxy configurations, proxy sessions, active routes and pair history."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    RowMapping,
    and_,
    delete,
    exists,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from chimeproxy.domain.lifecycle import ACTIVE, CLOSED
from chimeproxy.store.schema import (
    active_routes,
    pair_history,
    phone_numbers,
    proxy_configs,
    proxy_sessions,
)

ps = proxy_sessions.c
ar = active_routes.c
pc = proxy_configs.c
pn = phone_numbers.c
ph = pair_history.c


def _upsert(connection: Connection) -> Any:
    return postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert


# Proxy configuration.


def find_config(connection: Connection, connector_pk: int) -> RowMapping | None:
    query = select(proxy_configs).where(pc.voice_connector_pk == connector_pk)
    return connection.execute(query).mappings().first()


def put_config(connection: Connection, values: dict[str, Any]) -> None:
    insert = _upsert(connection)(proxy_configs).values(**values)
    fields = {k: v for k, v in values.items() if k != "voice_connector_pk"}
    connection.execute(
        insert.on_conflict_do_update(index_elements=["voice_connector_pk"], set_=fields)
    )


def delete_config(connection: Connection, connector_pk: int) -> None:
    connection.execute(delete(proxy_configs).where(pc.voice_connector_pk == connector_pk))


def has_active_sessions(connection: Connection, connector_pk: int, now: int) -> bool:
    query = select(exists().where(ar.voice_connector_pk == connector_pk, ar.expires_at > now))
    return bool(connection.scalar(query))


# Allocation inputs.


def connector_numbers(connection: Connection, connector_pk: int) -> list[RowMapping]:
    """Numbers associated with (and assigned to) the connector, as allocation candidates."""
    query = select(pn.e164, pn.country, pn.area_code, pn.capabilities, pn.last_allocated_at).where(
        pn.voice_connector_pk == connector_pk, pn.status == "Assigned"
    )
    return list(connection.execute(query).mappings())


def is_connector_number(connection: Connection, connector_pk: int, numbers: Iterable[str]) -> bool:
    query = select(
        exists().where(pn.voice_connector_pk == connector_pk, pn.e164.in_(list(numbers)))
    )
    return bool(connection.scalar(query))


def release_expired_routes(
    connection: Connection, connector_pk: int, participants: Iterable[str], now: int
) -> None:
    """Close the sessions of these participants that expired unseen, freeing their routes, so the
    unique constraint judges only sessions that are really active."""
    expired = select(ar.session_pk).where(
        ar.voice_connector_pk == connector_pk,
        ar.participant.in_(list(participants)),
        ar.expires_at <= now,
    )
    session_pks = list(connection.scalars(expired))
    if not session_pks:
        return
    connection.execute(delete(active_routes).where(ar.session_pk.in_(session_pks)))
    connection.execute(
        update(proxy_sessions)
        .where(ps.pk.in_(session_pks), ps.status.in_(ACTIVE))
        .values(status=CLOSED, ended_at=ps.expires_at)
    )


def busy_numbers(
    connection: Connection, connector_pk: int, participants: Iterable[str], now: int
) -> set[str]:
    query = select(ar.proxy_number).where(
        ar.voice_connector_pk == connector_pk,
        ar.participant.in_(list(participants)),
        ar.expires_at > now,
    )
    return set(connection.scalars(query))


def pair_key(first: str, second: str) -> str:
    """The same key for a pair in either order."""
    return "|".join(sorted((first, second)))


def pair_numbers(connection: Connection, connector_pk: int, pair: str) -> dict[str, int]:
    query = select(ph.proxy_number, ph.last_used_at).where(
        ph.voice_connector_pk == connector_pk, ph.pair == pair
    )
    return {row.proxy_number: row.last_used_at for row in connection.execute(query)}


def record_allocation(
    connection: Connection, connector_pk: int, session: dict[str, Any], session_pk: int
) -> None:
    """Claim the routes (the unique constraint refuses a number a participant already has),
    remember the pair's number, and mark the number used now."""
    number = session["proxy_number"]
    connection.execute(
        active_routes.insert(),
        [
            {
                "voice_connector_pk": connector_pk,
                "participant": participant,
                "proxy_number": number,
                "session_pk": session_pk,
                "expires_at": session["expires_at"],
            }
            for participant in (session["participant_1"], session["participant_2"])
        ],
    )
    history = _upsert(connection)(pair_history).values(
        voice_connector_pk=connector_pk,
        pair=pair_key(session["participant_1"], session["participant_2"]),
        proxy_number=number,
        last_used_at=session["created_at"],
    )
    connection.execute(
        history.on_conflict_do_update(
            index_elements=["voice_connector_pk", "pair", "proxy_number"],
            set_={"last_used_at": session["created_at"]},
        )
    )
    connection.execute(
        update(phone_numbers)
        .where(pn.e164 == number)
        .values(last_allocated_at=session["created_at"])
    )


# Sessions.


def insert_session(connection: Connection, values: dict[str, Any]) -> int:
    return connection.execute(proxy_sessions.insert().values(**values)).inserted_primary_key[0]


def _visible(now: int, retention_ms: int) -> ColumnElement[bool]:
    """Sessions not yet purged: closed ones stay readable for the retention period."""
    horizon = now - retention_ms
    return or_(
        and_(ps.status == CLOSED, ps.ended_at > horizon),
        and_(ps.status != CLOSED, ps.expires_at > horizon),
    )


def find_session(
    connection: Connection, connector_pk: int, session_id: str, now: int, retention_ms: int
) -> RowMapping | None:
    query = select(proxy_sessions).where(
        ps.voice_connector_pk == connector_pk, ps.id == session_id, _visible(now, retention_ms)
    )
    return connection.execute(query).mappings().first()


def status_condition(status: str, now: int) -> ColumnElement[bool]:
    """The stored state that reads as `status` at `now` (expiry derived, not swept)."""
    if status == CLOSED:
        return or_(ps.status == CLOSED, ps.expires_at <= now)
    return and_(ps.status == status, ps.expires_at > now)


def session_page(
    connection: Connection,
    connector_pk: int,
    *,
    status: str | None,
    after: tuple[int, str] | None,
    limit: int,
    now: int,
    retention_ms: int,
) -> list[RowMapping]:
    query = select(proxy_sessions).where(
        ps.voice_connector_pk == connector_pk, _visible(now, retention_ms)
    )
    if status is not None:
        query = query.where(status_condition(status, now))
    if after is not None:
        query = query.where(tuple_(ps.created_at, ps.id) > tuple_(*after))
    return list(connection.execute(query.order_by(ps.created_at, ps.id).limit(limit)).mappings())


def update_session(connection: Connection, session_pk: int, values: dict[str, Any]) -> None:
    connection.execute(update(proxy_sessions).where(ps.pk == session_pk).values(**values))


def set_route_expiry(connection: Connection, session_pk: int, expires_at: int) -> None:
    connection.execute(
        update(active_routes).where(ar.session_pk == session_pk).values(expires_at=expires_at)
    )


def release_routes(connection: Connection, session_pk: int) -> None:
    connection.execute(delete(active_routes).where(ar.session_pk == session_pk))


def delete_session(connection: Connection, session_pk: int) -> None:
    release_routes(connection, session_pk)
    connection.execute(delete(proxy_sessions).where(ps.pk == session_pk))


def number_capabilities(connection: Connection, e164: str) -> frozenset[str]:
    value = connection.scalar(select(pn.capabilities).where(pn.e164 == e164))
    return frozenset(filter(None, (value or "").split(",")))
