"""The operator console's reads (src/chimeproxy/console/), each scoped to one account's voice
connectors (`pks`, from `connectors`), its sign-in sessions, and the pool-exhaustion refusals
its chart shows. Lists are paged by keyset over indexed columns, never counted or offset."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from sqlalchemy import Connection, RowMapping, and_, delete, func, or_, select, tuple_, update

from chimeproxy.domain.lifecycle import ACTIVE
from chimeproxy.store import expiry
from chimeproxy.store.schema import (
    active_routes,
    console_sessions,
    interactions,
    phone_numbers,
    pool_refusals,
    proxy_configs,
    proxy_sessions,
    voice_connectors,
)

ps = proxy_sessions.c
vc = voice_connectors.c
pc = proxy_configs.c
it = interactions.c
pn = phone_numbers.c
ar = active_routes.c
pr = pool_refusals.c
cs = console_sessions.c

REFUSALS_KEPT_MS = 2 * 86_400_000
Position = tuple[int, str]  # (a time, an id): where a keyset page starts


# The account's voice connectors.


def connectors(connection: Connection, account: str, region: str | None) -> list[RowMapping]:
    """The account's voice connectors (of `region`, else every region), with their proxy
    configuration's columns (None without one), oldest first."""
    query = (
        select(
            vc.pk,
            vc.id,
            vc.name,
            vc.region,
            vc.created_at,
            pc.default_expiry_minutes,
            pc.countries,
            pc.fallback_number,
            pc.disabled,
        )
        .outerjoin(proxy_configs, pc.voice_connector_pk == vc.pk)
        .where(vc.account == account)
        .order_by(vc.created_at, vc.id)
    )
    if region is not None:
        query = query.where(vc.region == region)
    return list(connection.execute(query).mappings())


def regions(connection: Connection, account: str) -> list[str]:
    query = select(vc.region).where(vc.account == account).distinct().order_by(vc.region)
    return list(connection.scalars(query))


def accounts(connection: Connection) -> list[str]:
    """Every account that has a voice connector (open mode's account switch)."""
    return list(connection.scalars(select(vc.account).distinct().order_by(vc.account)))


# The overview's figures, per connector pk.


def active_sessions(connection: Connection, pks: Collection[int], now: int) -> dict[int, dict]:
    """Open and InProgress sessions as reads show them now: {pk: {status: count}}."""
    query = (
        select(ps.voice_connector_pk, ps.status, func.count())
        .where(ps.status.in_(ACTIVE), ps.expires_at > now, ps.voice_connector_pk.in_(list(pks)))
        .group_by(ps.voice_connector_pk, ps.status)
    )
    counts: dict[int, dict[str, int]] = {}
    for pk, status, count in connection.execute(query):
        counts.setdefault(pk, {})[status] = count
    return counts


def _per_bucket(
    connection: Connection, pk_column: Any, at_column: Any, pks: Collection[int], start: int
) -> dict[int, dict[int, int]]:
    """{pk: {hour index since `start`: rows}} over the hours since `start`."""
    # Bucketed through a subquery: PostgreSQL does not match a GROUP BY expression whose
    # parameters are bound apart from the same expression in the SELECT list (store/stats.py).
    rows = (
        select(pk_column.label("pk"), ((at_column - start) // 3_600_000).label("bucket"))
        .where(pk_column.in_(list(pks)), at_column >= start)
        .subquery()
    )
    found: dict[int, dict[int, int]] = {}
    for pk, bucket, count in connection.execute(
        select(rows.c.pk, rows.c.bucket, func.count()).group_by(rows.c.pk, rows.c.bucket)
    ):
        found.setdefault(pk, {})[int(bucket)] = count
    return found


def created_per_hour(
    connection: Connection, pks: Collection[int], start: int
) -> dict[int, dict[int, int]]:
    """Sessions created per hour (deleted and purged ones no longer count)."""
    return _per_bucket(connection, ps.voice_connector_pk, ps.created_at, pks, start)


def refused_per_hour(
    connection: Connection, pks: Collection[int], start: int
) -> dict[int, dict[int, int]]:
    return _per_bucket(connection, pr.voice_connector_pk, pr.refused_at, pks, start)


def outcomes_since(
    connection: Connection, pks: Collection[int], since: int
) -> dict[int, dict[str | None, int]]:
    """Interactions started since `since`, by outcome (None: still going)."""
    query = (
        select(it.voice_connector_pk, it.outcome, func.count())
        .where(it.voice_connector_pk.in_(list(pks)), it.started_at >= since)
        .group_by(it.voice_connector_pk, it.outcome)
    )
    found: dict[int, dict[str | None, int]] = {}
    for pk, outcome, count in connection.execute(query):
        found.setdefault(pk, {})[outcome] = count
    return found


def record_pool_refusal(
    connection: Connection, account: str, region: str, connector_id: str, now: int
) -> None:
    """A CreateProxySession refused for an exhausted pool; the connector's old rows go."""
    pk = connection.scalar(
        select(vc.pk).where(vc.account == account, vc.region == region, vc.id == connector_id)
    )
    if pk is None:
        return
    connection.execute(
        delete(pool_refusals).where(
            pr.voice_connector_pk == pk, pr.refused_at < now - REFUSALS_KEPT_MS
        )
    )
    connection.execute(pool_refusals.insert().values(voice_connector_pk=pk, refused_at=now))


# Sessions.


def session_page(
    connection: Connection,
    pks: Collection[int],
    *,
    now: int,
    retention_ms: int,
    status: str | None = None,
    participant: str | None = None,
    name: str | None = None,
    before: Position | None = None,
    after: Position | None = None,
    limit: int,
) -> list[RowMapping]:
    """Up to `limit` visible sessions of the connectors `pks`, newest first: those older than
    `before`, or the page just newer than `after`.

    One query per connector, each walking ix_proxy_sessions_list (voice connector, created,
    id) in order and stopping after `limit` rows, then merged: the cost is a few pages of index
    per connector whatever the number of sessions (a single query over every connector would
    have to sort them all). With a participant, the participant indexes find their sessions
    (a few), which are sorted and cut here instead."""
    conditions = [expiry.visible(now, retention_ms)]
    if status is not None:
        conditions.append(expiry.reads_as(status, now))
    if name:
        conditions.append(func.lower(ps.name).contains(name.lower(), autoescape=True))
    newer = after is not None
    found: list[RowMapping] = []
    if participant is not None:
        # No keyset range in SQL: it would lead the planner to walk every session in order.
        found = _matching(
            connection, participant, pks, (ps.participant_1, ps.participant_2), conditions
        )
        found = [
            row
            for row in found
            if (after is None or (row["created_at"], row["id"]) > after)
            and (before is None or (row["created_at"], row["id"]) < before)
        ]
    else:
        position = tuple_(ps.created_at, ps.id)
        for pk in pks:
            query = select(proxy_sessions).where(ps.voice_connector_pk == pk, *conditions)
            if newer:
                query = query.where(position > tuple_(*after)).order_by(ps.created_at, ps.id)  # type: ignore[misc]
            else:
                if before is not None:
                    query = query.where(position < tuple_(*before))
                query = query.order_by(ps.created_at.desc(), ps.id.desc())
            found += connection.execute(query.limit(limit)).mappings()
    found.sort(key=lambda row: (row["created_at"], row["id"]), reverse=not newer)
    found = found[:limit]
    return found[::-1] if newer else found


def _matching(
    connection: Connection,
    number: str,
    pks: Collection[int],
    columns: Iterable[Any],
    conditions: Iterable[Any] = (),
    limit: int | None = None,
) -> list[RowMapping]:
    """Sessions of `pks` where any of `columns` is `number` (one indexed look-up per column),
    newest first."""
    found: dict[int, RowMapping] = {}
    for column in columns:
        query = select(proxy_sessions).where(
            column == number, ps.voice_connector_pk.in_(list(pks)), *conditions
        )
        if limit is not None:
            query = query.order_by(ps.created_at.desc()).limit(limit)
        for row in connection.execute(query).mappings():
            found[row["pk"]] = row
    rows = sorted(found.values(), key=lambda r: (r["created_at"], r["id"]), reverse=True)
    return rows[:limit] if limit is not None else rows


def find_session(
    connection: Connection,
    account: str,
    connector_id: str,
    session_id: str,
    now: int,
    retention_ms: int,
    *,
    lock: bool = False,
) -> RowMapping | None:
    """A visible session of the account (any region), with its connector's id and region."""
    query = (
        select(proxy_sessions, vc.id.label("connector_id"), vc.region.label("connector_region"))
        .join(voice_connectors, vc.pk == ps.voice_connector_pk)
        .where(
            vc.account == account,
            vc.id == connector_id,
            ps.id == session_id,
            expiry.visible(now, retention_ms),
        )
    )
    if lock:
        query = query.with_for_update(of=proxy_sessions)
    return connection.execute(query).mappings().first()


def sessions_of_number(
    connection: Connection,
    pks: Collection[int],
    number: str,
    now: int,
    retention_ms: int,
    limit: int,
) -> list[RowMapping]:
    """Visible sessions where `number` is a participant or the proxy number, newest first
    (three indexed look-ups: participant_1, participant_2, proxy_number)."""
    columns = (ps.participant_1, ps.participant_2, ps.proxy_number)
    return _matching(connection, number, pks, columns, [expiry.visible(now, retention_ms)], limit)


def interactions_of_number(
    connection: Connection, pks: Collection[int], number: str, limit: int
) -> list[RowMapping]:
    """Interactions where `number` called, was called or is the proxy number, newest first.

    A contact in a session is one of its participants calling or texting its proxy number
    (domain.routing), so it is found through the sessions `number` is in (their participant
    and proxy-number indexes, then `ix_interactions_session`). Only contacts out of session
    are found by their own caller and proxy number, on the partial indexes kept for them
    (store/schema.py). Scoped to the connectors `pks` through the sessions (a session's
    contacts are its connector's) and on the contacts out of session."""
    number_sessions = proxy_sessions.alias("number_sessions")
    ns = number_sessions.c
    in_session = it.session_pk.in_(
        select(ns.pk).where(
            or_(ns.participant_1 == number, ns.participant_2 == number, ns.proxy_number == number),
            # `+ 0`: the connector is checked on the sessions found, never used to find them.
            # Without statistics SQLite takes an equality on the connector's index for as
            # selective as one on a number's, and would read all of its sessions.
            (ns.voice_connector_pk + 0).in_(list(pks)),
        )
    )
    out_of_session = [
        and_(it.session_pk.is_(None), column == number, it.voice_connector_pk.in_(list(pks)))
        for column in (it.caller, it.proxy_number)
    ]
    found: dict[int, RowMapping] = {}
    for condition in [in_session, *out_of_session]:
        query = _interactions().where(condition).order_by(it.started_at.desc()).limit(limit)
        for row in connection.execute(query).mappings():
            found[row["pk"]] = row
    rows = sorted(found.values(), key=lambda r: (r["started_at"], r["id"]), reverse=True)
    return rows[:limit]


def recent_interactions(
    connection: Connection, pks: Collection[int], since: int, limit: int
) -> list[RowMapping]:
    """The newest interactions started at or after `since` (ix_interactions_started)."""
    query = (
        _interactions()
        .where(it.voice_connector_pk.in_(list(pks)), it.started_at >= since)
        .order_by(it.started_at.desc(), it.id.desc())
        .limit(limit)
    )
    return list(connection.execute(query).mappings())


def ended_interactions(
    connection: Connection, pks: Collection[int], ids: Collection[str]
) -> list[RowMapping]:
    """Of the interactions `ids`, those of the connectors `pks` that have ended (found by the
    ids' unique index): the live view asks about the rows it still shows in progress."""
    if not ids:
        return []
    query = _interactions().where(
        it.id.in_(list(ids)),
        it.voice_connector_pk.in_(list(pks)),
        it.ended_at.is_not(None),
    )
    return list(connection.execute(query).mappings())


def _interactions() -> Any:
    return select(
        interactions,
        ps.id.label("session_id"),
        vc.id.label("connector_id"),
    ).select_from(
        interactions.join(voice_connectors, vc.pk == it.voice_connector_pk).outerjoin(
            proxy_sessions, ps.pk == it.session_pk
        )
    )


# Phone numbers.


def active_sessions_per_number(
    connection: Connection, numbers: Collection[str], now: int
) -> dict[str, int]:
    """How many active sessions use each of `numbers` as their proxy number (two routes each)."""
    query = (
        select(ar.proxy_number, func.count())
        .where(ar.proxy_number.in_(list(numbers)), expiry.route_live(now))
        .group_by(ar.proxy_number)
    )
    return {number: count // 2 for number, count in connection.execute(query)}


# Sign-in sessions (times: the real wall clock, in milliseconds).


def create_sign_in(
    connection: Connection,
    token_hash: str,
    account: str,
    access_key_id: str | None,
    now: int,
    expires_at: int,
) -> None:
    connection.execute(delete(console_sessions).where(cs.expires_at <= now))
    connection.execute(
        console_sessions.insert().values(
            token_hash=token_hash,
            account=account,
            access_key_id=access_key_id,
            region=None,
            created_at=now,
            expires_at=expires_at,
        )
    )


def find_sign_in(connection: Connection, token_hash: str, now: int) -> RowMapping | None:
    query = select(console_sessions).where(cs.token_hash == token_hash, cs.expires_at > now)
    return connection.execute(query).mappings().first()


def set_scope(connection: Connection, token_hash: str, account: str, region: str | None) -> None:
    connection.execute(
        update(console_sessions)
        .where(cs.token_hash == token_hash)
        .values(account=account, region=region)
    )


def end_sign_in(connection: Connection, token_hash: str) -> None:
    connection.execute(delete(console_sessions).where(cs.token_hash == token_hash))
