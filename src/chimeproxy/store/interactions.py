"""Queries of the data plane: the facts a routing decision needs, interactions, SMS opt-outs."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    RowMapping,
    and_,
    bindparam,
    delete,
    exists,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from chimeproxy.domain.calls import CallFacts
from chimeproxy.domain.lifecycle import SessionStatus
from chimeproxy.domain.phone_numbers import PhoneNumberStatus
from chimeproxy.domain.routing import ProxyNumber, RouteFacts, SessionFacts
from chimeproxy.store import expiry
from chimeproxy.store.prepared import Prepared, Statements, statements
from chimeproxy.store.schema import (
    active_routes,
    interactions,
    phone_numbers,
    proxy_configs,
    proxy_sessions,
    sms_opt_outs,
    voice_connectors,
)

ps = proxy_sessions.c
ar = active_routes.c
pc = proxy_configs.c
pn = phone_numbers.c
vc = voice_connectors.c
it = interactions.c
oo = sms_opt_outs.c


# Routing facts.


# Prepared (store/prepared.py): the routing decision is on every call's setup path and every
# text, so its statements skip SQLAlchemy's per-call work. They run in a transaction of
# prepared.write or in an SQLAlchemy one (the SMS relay).

_PROXY_NUMBER_COUNTRIES = Prepared(
    select(pn.country).where(pn.status == PhoneNumberStatus.ASSIGNED).distinct()
)


def proxy_number_countries(connection: Statements | Connection) -> list[str]:
    """The countries of the numbers that may be proxy numbers (assigned to a connector): where
    a dialled number written nationally may belong."""
    rows = statements(connection).rows(_PROXY_NUMBER_COUNTRIES, {})
    return sorted(filter(None, (row["country"] for row in rows)))


@functools.cache
def _proxy_number_among(count: int) -> Prepared:
    """The assigned number among `count` candidates (one statement per count, a handful)."""
    candidates = [bindparam(f"c{index}") for index in range(count)]
    query = select(pn.e164, pn.country).where(
        pn.e164.in_(candidates), pn.status == PhoneNumberStatus.ASSIGNED
    )
    return Prepared(query.order_by(pn.e164).limit(1))


def find_proxy_number(
    connection: Statements | Connection, candidates: list[str]
) -> dict[str, Any] | None:
    """The assigned number (`e164`, `country`) among `candidates`, if any."""
    if not candidates:
        return None
    params = {f"c{index}": number for index, number in enumerate(candidates)}
    return statements(connection).first(_proxy_number_among(len(candidates)), params)


# One indexed query on the common path: the number (unique e164) joined to its connector and
# proxy configuration, and the caller's route on it (the routing invariant's unique index).
_ROUTE_FACTS = Prepared(
    select(
        pn.voice_connector_pk.label("connector_pk"),
        vc.id.label("connector_id"),
        vc.account.label("connector_account"),
        vc.region.label("connector_region"),
        vc.require_encryption.label("connector_require_encryption"),
        pc.fallback_number,
        proxy_sessions,
    )
    .select_from(
        phone_numbers.join(voice_connectors, vc.pk == pn.voice_connector_pk)
        .join(proxy_configs, pc.voice_connector_pk == pn.voice_connector_pk)
        .outerjoin(
            active_routes,
            and_(
                ar.voice_connector_pk == pn.voice_connector_pk,
                ar.proxy_number == pn.e164,
                ar.participant == bindparam("caller"),
            ),
        )
        .outerjoin(proxy_sessions, ps.pk == ar.session_pk)
    )
    .where(pn.e164 == bindparam("called"), pn.status == PhoneNumberStatus.ASSIGNED)
)


def route_facts(
    connection: Statements | Connection,
    caller: str | None,
    called: str,
    now: int,
    retention_ms: int,
) -> tuple[RouteFacts, dict[str, Any] | None]:
    """The facts for (caller, called), and the caller's session row when there is one.

    One indexed query on the common path (`_ROUTE_FACTS`). Only a caller without a route costs
    a second query, for a closed session within retention.
    """
    run = statements(connection)
    # No caller number: no route.
    row = run.first(_ROUTE_FACTS, {"caller": caller or "", "called": called})
    if row is None:
        return RouteFacts(proxy=None), None
    proxy = ProxyNumber(
        row["connector_pk"],
        row["connector_id"],
        row["fallback_number"],
        require_encryption=bool(row["connector_require_encryption"]),
    )
    if row["pk"] is None:
        closed = caller is not None and had_closed_session(
            run, row["connector_pk"], caller, called, now, retention_ms
        )
        return RouteFacts(proxy=proxy, had_closed_session=closed), row
    session = SessionFacts(
        pk=row["pk"],
        id=row["id"],
        participant_1=row["participant_1"],
        participant_2=row["participant_2"],
        capabilities=frozenset(row["capabilities"].split(",")),
        status=row["status"],
        expires_at=row["expires_at"],
    )
    return RouteFacts(proxy=proxy, session=session), row


_NOW = bindparam("now", type_=BigInteger)
_HAD_CLOSED_SESSION = Prepared(
    select(
        exists()
        .where(
            ps.voice_connector_pk == bindparam("connector_pk"),
            ps.proxy_number == bindparam("called"),
            or_(ps.participant_1 == bindparam("caller"), ps.participant_2 == bindparam("caller")),
            expiry.closed_and_visible(_NOW, bindparam("retention_ms", type_=BigInteger)),
        )
        .label("found")
    )
)


def had_closed_session(
    connection: Statements | Connection,
    connector_pk: int,
    caller: str,
    called: str,
    now: int,
    retention_ms: int,
) -> bool:
    """Whether the caller had a session on this number that is closed now but not yet purged."""
    params = {
        "connector_pk": connector_pk,
        "called": called,
        "caller": caller,
        "now": now,
        "retention_ms": retention_ms,
    }
    row = statements(connection).first(_HAD_CLOSED_SESSION, params)
    return bool(row and row["found"])


_MARK_IN_PROGRESS = Prepared(
    update(proxy_sessions)
    .where(ps.pk == bindparam("session_pk"), expiry.reads_as(SessionStatus.OPEN, _NOW))
    .values(status=SessionStatus.IN_PROGRESS)
)


def mark_in_progress(connection: Statements | Connection, session_pk: int, now: int) -> bool:
    """Open -> InProgress, unless another contact got there first or the session expired."""
    return (
        statements(connection).run(_MARK_IN_PROGRESS, {"session_pk": session_pk, "now": now}) == 1
    )


# Interactions.


# Every column but the primary key, each a bind of its own name.
_INSERT_INTERACTION = Prepared(
    interactions.insert().values(
        {column.name: bindparam(column.name) for column in interactions.c if column.name != "pk"}
    )
)


def insert_interaction(connection: Statements | Connection, values: dict[str, Any]) -> None:
    """`values`: every column but the primary key."""
    statements(connection).run(_INSERT_INTERACTION, values)


def find_interaction(connection: Connection, interaction_id: str) -> RowMapping | None:
    query = (
        select(
            interactions,
            vc.id.label("connector_id"),
            vc.account.label("connector_account"),
            vc.region.label("connector_region"),
            ps.id.label("session_id"),
        )
        .select_from(
            interactions.join(voice_connectors, vc.pk == it.voice_connector_pk).outerjoin(
                proxy_sessions, ps.pk == it.session_pk
            )
        )
        .where(it.id == interaction_id)
    )
    return connection.execute(query).mappings().first()


def end_interaction(
    connection: Connection,
    interaction_id: str,
    outcome: str,
    duration_seconds: float | None,
    now: int,
) -> bool:
    """Record the end of an interaction; the first end wins (answers False for later ones)."""
    result = connection.execute(
        update(interactions)
        .where(it.id == interaction_id, it.ended_at.is_(None))
        .values(outcome=outcome, duration_seconds=duration_seconds, ended_at=now)
    )
    return result.rowcount == 1


def calls_in_progress(connection: Connection, interaction_ids: list[str]) -> dict[str, CallFacts]:
    """What the store knows of the calls the edge has in progress, by interaction id (an id
    the store does not know is missing from the answer)."""
    if not interaction_ids:
        return {}
    query = (
        select(
            it.id,
            it.started_at,
            it.ended_at,
            it.session_pk,
            ps.status,
            ps.expires_at,
            ps.ended_at.label("session_ended_at"),
        )
        .select_from(interactions.outerjoin(proxy_sessions, ps.pk == it.session_pk))
        .where(it.id.in_(interaction_ids))
    )
    return {
        row.id: CallFacts(
            started_at=row.started_at,
            ended_at=row.ended_at,
            in_session=row.session_pk is not None,
            session_status=row.status,
            session_expires_at=row.expires_at,
            session_ended_at=row.session_ended_at,
        )
        for row in connection.execute(query)
    }


def set_outcome(
    connection: Connection, interaction_id: str, outcome: str, reason: str | None
) -> None:
    connection.execute(
        update(interactions).where(it.id == interaction_id).values(outcome=outcome, reason=reason)
    )


def interaction_page(
    connection: Connection,
    connector_pk: int,
    *,
    session_pk: int | None = None,
    out_of_session_only: bool = False,
    after: tuple[int, str] | None,
    limit: int,
) -> list[RowMapping]:
    """A page of one session's interactions (or a connector's), by start time then id."""
    query = select(interactions, ps.id.label("session_id")).select_from(
        interactions.outerjoin(proxy_sessions, ps.pk == it.session_pk)
    )
    if session_pk is not None:
        query = query.where(it.session_pk == session_pk)
    else:
        query = query.where(it.voice_connector_pk == connector_pk)
        if out_of_session_only:
            query = query.where(it.session_pk.is_(None))
    if after is not None:
        query = query.where(tuple_(it.started_at, it.id) > tuple_(*after))
    query = query.order_by(it.started_at, it.id).limit(limit)
    return list(connection.execute(query).mappings())


def purge_out_of_session(connection: Connection, horizon: int, limit: int) -> int:
    """Up to `limit` out-of-session contacts older than the retention period (in-session ones
    go with their session)."""
    due = select(it.pk).where(it.session_pk.is_(None), it.started_at <= horizon).limit(limit)
    return connection.execute(delete(interactions).where(it.pk.in_(due))).rowcount


# SMS opt-outs.


def opt_out(connection: Connection, proxy_number: str, phone_number: str, now: int) -> None:
    insert = (postgresql if connection.dialect.name == "postgresql" else sqlite).insert
    connection.execute(
        insert(sms_opt_outs)
        .values(proxy_number=proxy_number, phone_number=phone_number, created_at=now)
        .on_conflict_do_nothing(index_elements=["proxy_number", "phone_number"])
    )


def opt_in(connection: Connection, proxy_number: str, phone_number: str) -> None:
    connection.execute(
        delete(sms_opt_outs).where(oo.proxy_number == proxy_number, oo.phone_number == phone_number)
    )


def is_opted_out(connection: Connection, proxy_number: str, phone_number: str) -> bool:
    query = select(exists().where(oo.proxy_number == proxy_number, oo.phone_number == phone_number))
    return bool(connection.scalar(query))
