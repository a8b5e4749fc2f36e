"""Queries on proxy configurations, proxy sessions, active routes and pair history."""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Integer,
    RowMapping,
    bindparam,
    delete,
    exists,
    func,
    literal_column,
    select,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from chimeproxy.domain.catalog import CAPABILITIES
from chimeproxy.domain.ids import session_key
from chimeproxy.domain.lifecycle import SessionStatus
from chimeproxy.domain.phone_numbers import PhoneNumberStatus
from chimeproxy.store import expiry
from chimeproxy.store.database import Database, WriteConflict
from chimeproxy.store.prepared import Prepared, PreparedQuery, Statements, packed, statements
from chimeproxy.store.schema import (
    active_routes,
    pair_history,
    phone_numbers,
    proxy_configs,
    proxy_sessions,
    voice_connectors,
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
    query = select(exists().where(ar.voice_connector_pk == connector_pk, expiry.route_live(now)))
    return bool(connection.scalar(query))


# Allocation inputs.


_CONNECTOR_NUMBERS = Prepared(
    select(pn.e164, pn.country, pn.area_code, pn.capabilities, pn.last_allocated_at).where(
        pn.voice_connector_pk == bindparam("connector_pk"),
        pn.status == PhoneNumberStatus.ASSIGNED,
    )
)


def connector_numbers(
    connection: Statements | Connection, connector_pk: int
) -> list[dict[str, Any]]:
    """Numbers associated with (and assigned to) the connector, as allocation candidates."""
    return statements(connection).rows(_CONNECTOR_NUMBERS, {"connector_pk": connector_pk})


def candidate_numbers(
    connection: Statements | Connection,
    connector_pk: int,
    *,
    busy: Collection[str],
    had: Collection[str],
    countries: Iterable[str],
    needed: Iterable[str],
    geo_country: str | None,
    geo_area_code: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    """A pre-filter of `connector_numbers` for allocation, so a create reads a handful of rows
    instead of the whole pool: the numbers that pass the selection's filters (pool countries,
    number capabilities `needed`, geo, not `busy` for a participant), limited to the `limit`
    first the pair never `had` in the general order (least recently allocated first, then the
    lowest number: digits compare by length, then text), plus every such number it had.
    That always contains the selection's choice; domain/selection.py still makes it.

    `busy` and `had` come as lists (a few numbers each) rather than as subqueries: SQLite
    would otherwise probe active_routes once per number of the pool. The statements are
    prepared for each shape of request (how many numbers in each list, which capabilities,
    which geo filters): building them through Core took half of a create."""
    busy, had, countries = list(busy), list(had), list(countries)
    general, sticky = _candidate_statements(
        len(busy),
        len(had),
        len(countries),
        tuple(sorted(needed)),
        geo_country is not None,
        geo_area_code is not None,
    )
    params: dict[str, Any] = {
        "connector_pk": connector_pk,
        "geo_country": geo_country,
        "geo_area_code": geo_area_code,
        "limit": limit,
    }
    for prefix, values in (("b", busy), ("h", had), ("c", countries)):
        params.update({f"{prefix}{index}": value for index, value in enumerate(values)})
    run = statements(connection)
    rows = run.rows(general, params)
    if sticky is not None:
        rows += run.rows(sticky, params)
    return rows


@functools.lru_cache(maxsize=256)
def _candidate_statements(
    busy: int, had: int, countries: int, needed: tuple[str, ...], geo_country: bool, geo_area: bool
) -> tuple[Prepared, Prepared | None]:
    """`candidate_numbers`' statements for one shape of request: the general order's first
    (`limit` bound), and the pair's own numbers (None when it had none)."""

    def binds(prefix: str, count: int) -> list[Any]:
        return [bindparam(f"{prefix}{index}") for index in range(count)]

    conditions = [
        pn.status == PhoneNumberStatus.ASSIGNED,
        pn.country.in_(binds("c", countries)),
    ]
    conditions += [_has_capability(name) for name in needed]
    if geo_country:
        conditions.append(pn.country == bindparam("geo_country"))
    if geo_area:
        conditions.append(pn.area_code == bindparam("geo_area_code"))
    if busy:
        conditions.append(pn.e164.not_in(binds("b", busy)))
    columns = (pn.e164, pn.country, pn.area_code, pn.capabilities, pn.last_allocated_at)
    general = select(*columns).where(
        pn.voice_connector_pk == bindparam("connector_pk"), *conditions
    )
    if had:
        general = general.where(pn.e164.not_in(binds("h", had)))
    general = general.order_by(
        # As ix_phone_numbers_allocation orders them: never-allocated (NULL) first, on both engines.
        func.coalesce(pn.last_allocated_at, literal_column("0")),
        func.length(pn.e164),
        pn.e164,
    ).limit(bindparam("limit", type_=Integer))
    # The pair's own numbers are found by number. Without statistics SQLite guesses that a
    # connector has a few numbers and would read all of its pool through the connector's index
    # (12 ms a create at 10,000 numbers): `+ 0` keeps that index out of this statement.
    own = (pn.voice_connector_pk + 0) == bindparam("connector_pk")
    sticky = select(*columns).where(own, *conditions, pn.e164.in_(binds("h", had))) if had else None
    return Prepared(general), None if sticky is None else Prepared(sticky)


def _has_capability(name: str) -> ColumnElement[bool]:
    """The number's capabilities (names joined by commas) include `name`, as a constant pattern
    on the column itself. PostgreSQL estimates such a pattern from the column's statistics. A
    pattern bound at run time, or one on the padded text `',' || capabilities || ','` (which
    has no statistics), it guessed to match one number in 200: it then read and sorted the
    whole pool instead of the allocation index, 10 ms a create at 10,000 numbers, which held
    PostgreSQL's creates to about 200 a second (docs/performance.md). The bare name needs no
    commas around it because no capability's name is part of another's."""
    if name not in CAPABILITIES:
        raise ValueError(f"not a phone number capability: {name!r}")
    return pn.capabilities.like(literal_column(f"'%{name}%'"))


def release_expired_routes(
    connection: Connection, connector_pk: int, participants: Iterable[str], now: int
) -> None:
    """Close the sessions of these participants that expired unseen, freeing their routes, so the
    unique constraint judges only sessions that are really active."""
    expired = select(ar.session_pk).where(
        ar.voice_connector_pk == connector_pk,
        ar.participant.in_(list(participants)),
        ~expiry.route_live(now),
    )
    session_pks = list(connection.scalars(expired))
    if not session_pks:
        return
    close_expired_sessions(connection, now, ps.pk.in_(session_pks))


def close_expired_sessions(
    connection: Connection, now: int, *where: ColumnElement[bool], limit: int | None = None
) -> int:
    """Record the closing of the sessions (among `where`; at most `limit`, in
    `expiry.DUE_ORDER`) past their expiry, then release their routes; the number of sessions
    closed."""
    return len(closed_expired_sessions(connection, now, *where, limit=limit))


def closed_expired_sessions(
    connection: Connection, now: int, *where: ColumnElement[bool], limit: int | None = None
) -> list[int]:
    """`close_expired_sessions`, answering the keys of the sessions it closed.

    Safe against concurrent writers under PostgreSQL's READ COMMITTED too: every writer locks a
    session row before its routes (no lock-order deadlock), rows are locked in primary-key order,
    and the UPDATE re-checks expiry on a row that a concurrent transaction changed, so a session
    that an update has just extended stays open and keeps its routes."""
    due = select(ps.pk).where(expiry.due_to_close(now), *where)
    if limit is not None:
        # A batch as the index of status and expiry holds them, then locked by key. Limited in
        # key order, the batch had PostgreSQL walk the primary key through every session when
        # it expected due ones to be many and found none: 443 ms a sweep step at 1M sessions.
        batch = due.order_by(*expiry.DUE_ORDER).limit(limit)
        due = select(ps.pk).where(ps.pk.in_(batch), expiry.due_to_close(now))
    due = due.order_by(ps.pk).with_for_update()
    closed = list(
        connection.scalars(
            update(proxy_sessions)
            .where(ps.pk.in_(due), expiry.due_to_close(now))
            .values(status=SessionStatus.CLOSED, ended_at=ps.expires_at)
            .returning(ps.pk)
        )
    )
    for start in range(0, len(closed), 500):
        connection.execute(
            delete(active_routes).where(ar.session_pk.in_(closed[start : start + 500]))
        )
    return closed


def busy_numbers(
    connection: Connection, connector_pk: int, participants: Iterable[str], now: int
) -> set[str]:
    query = select(ar.proxy_number).where(
        ar.voice_connector_pk == connector_pk,
        ar.participant.in_(list(participants)),
        expiry.route_live(now),
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


# The session's two routes in one INSERT.
_INSERT_ROUTES = Prepared(
    active_routes.insert().values(
        [
            {
                "voice_connector_pk": bindparam("connector_pk"),
                "participant": bindparam(f"participant_{index}"),
                "proxy_number": bindparam("number"),
                "session_pk": bindparam("session_pk"),
                "expires_at": bindparam("expires_at", type_=BigInteger),
            }
            for index in (1, 2)
        ]
    )
)


def _history_upsert(dialect: str) -> Any:
    insert = (postgresql if dialect == "postgresql" else sqlite).insert
    return (
        insert(pair_history)
        .values(
            voice_connector_pk=bindparam("connector_pk"),
            pair=bindparam("pair"),
            proxy_number=bindparam("number"),
            last_used_at=bindparam("used_at", type_=BigInteger),
        )
        .on_conflict_do_update(
            index_elements=["voice_connector_pk", "pair", "proxy_number"],
            set_={"last_used_at": bindparam("used_at", type_=BigInteger)},
        )
    )


_UPSERT_HISTORY = Prepared(_history_upsert)
_MARK_NUMBER = Prepared(
    update(phone_numbers)
    .where(
        pn.e164 == bindparam("number"),
        pn.voice_connector_pk == bindparam("connector_pk"),
        pn.status == PhoneNumberStatus.ASSIGNED,
    )
    .values(last_allocated_at=bindparam("used_at", type_=BigInteger))
)


def record_allocation(
    connection: Statements | Connection,
    connector_pk: int,
    session: dict[str, Any],
    session_pk: int,
) -> None:
    """Claim the routes (the unique constraint refuses a number a participant already has),
    remember the pair's number, and mark the number used now."""
    run = statements(connection)
    number = session["proxy_number"]
    # In a fixed order, so that two creates for the same pair never wait on each other in a
    # cycle (PostgreSQL would abort one as a deadlock).
    first, second = sorted((session["participant_1"], session["participant_2"]))
    run.run(
        _INSERT_ROUTES,
        {
            "connector_pk": connector_pk,
            "participant_1": first,
            "participant_2": second,
            "number": number,
            "session_pk": session_pk,
            "expires_at": session["expires_at"],
        },
    )
    used = {"connector_pk": connector_pk, "number": number, "used_at": session["created_at"]}
    pair = pair_key(session["participant_1"], session["participant_2"])
    run.run(_UPSERT_HISTORY, {**used, "pair": pair})
    # The number must still be this connector's: a disassociation that committed since the
    # candidates were read leaves no row to update, and the create runs again without it.
    if run.run(_MARK_NUMBER, used) != 1:
        raise WriteConflict("the chosen proxy number left the voice connector")


# Locks the connector row until commit (PostgreSQL; SQLite has no row locks and needs none).
_LOCK_CONNECTOR = Prepared(
    select(voice_connectors.c.pk)
    .where(voice_connectors.c.pk == bindparam("connector_pk"))
    .with_for_update()
)
_NEWEST_SESSION = Prepared(
    select(func.max(ps.created_at).label("newest")).where(
        ps.voice_connector_pk == bindparam("connector_pk")
    )
)


def creation_stamp(connection: Statements | Connection, connector_pk: int, now: int) -> int:
    """CreatedTimestamp for a new session: `now`, or just after the connector's newest session.

    Listing pages by (CreatedTimestamp, id), so a new session must sort after every session a
    reader may already have paged past: the connector row stays locked until commit (PostgreSQL;
    SQLite writers are serialized anyway), which makes commit order the listing order, and the
    stamp never repeats or goes back within a connector. The lock is its own statement, before
    the max is read: at READ COMMITTED that read then sees the previous holder's session."""
    run = statements(connection)
    params = {"connector_pk": connector_pk}
    if run.dialect.name != "sqlite":
        run.first(_LOCK_CONNECTOR, params)
    row = run.first(_NEWEST_SESSION, params)
    newest = row["newest"] if row else None
    return now if newest is None or newest < now else newest + 1


# Sessions.


@functools.cache
def _insert_session(columns: tuple[str, ...]) -> Prepared:
    values = {name: bindparam(f"v_{name}", type_=ps[name].type) for name in columns}
    return Prepared(proxy_sessions.insert().values(values).returning(ps.pk))


def stored_key(dialect: str, session_id: str) -> int | None:
    """The primary key a session with this id is stored under, when the store makes it from the
    id (domain.ids.session_key): on SQLite, whose tables are kept in their keys' B-trees. None
    elsewhere (PostgreSQL's rows are in a heap, reached through an index either way; its keys
    are counted up by a sequence) and for ids that make none (sessions created before)."""
    return session_key(session_id) if dialect == "sqlite" else None


def insert_session(connection: Statements | Connection, values: dict[str, Any]) -> int:
    """The new session's primary key. A key made from the id that another session already
    holds fails the insert with a unique violation, as a taken id would: the transaction runs
    again, with a new id (Database.write_retrying)."""
    run = statements(connection)
    key = stored_key(run.dialect.name, values["id"])
    if key is not None:
        values = {"pk": key, **values}
    row = run.first(
        _insert_session(tuple(values)), {f"v_{name}": value for name, value in values.items()}
    )
    assert row is not None
    return int(row["pk"])


def find_session(
    connection: Connection,
    connector_pk: int,
    session_id: str,
    now: int,
    retention_ms: int,
    *,
    lock: bool = False,
) -> RowMapping | None:
    """The session; with `lock`, its row stays locked until the transaction ends, so that a
    decision taken on it (Closed or not) still holds when the change is written (PostgreSQL;
    SQLite writers hold the database write lock anyway)."""
    query = select(proxy_sessions).where(
        ps.voice_connector_pk == connector_pk,
        ps.id == session_id,
        expiry.visible(now, retention_ms),
    )
    if lock:
        query = query.with_for_update()
    return connection.execute(query).mappings().first()


# What GetProxySession and ListProxySessions show of a session, in this order: they read it as
# the driver's tuples, without a dict per row (shapes.proxy_session_wire).
SHOWN_SESSION_COLUMNS = (
    "id",
    "name",
    "status",
    "capabilities",
    "expiry_minutes",
    "number_selection_behavior",
    "geo_match_level",
    "geo_country",
    "geo_area_code",
    "participant_1",
    "participant_2",
    "proxy_number",
    "created_at",
    "updated_at",
    "expires_at",
    "ended_at",
)
_SHOWN = tuple(ps[name] for name in SHOWN_SESSION_COLUMNS)
SHOWN_CREATED_AT = SHOWN_SESSION_COLUMNS.index("created_at")
SHOWN_ID = SHOWN_SESSION_COLUMNS.index("id")


@functools.cache
def _session_page(status: str | None, after: bool) -> Prepared:
    """A page of a connector's visible sessions in listing order, the connector named by its
    ids (one statement for each kind of request: with or without a status filter, first page
    or after a position). The connector's key is a subquery rather than a statement of its
    own, so that a page is one statement and needs no transaction around it. A subquery, not a
    join: both databases then evaluate it once and read the listing index in its order with
    the key as a constant, where a join would make PostgreSQL sort all the connector's
    sessions."""
    now = bindparam("now", type_=BigInteger)
    connector = select(voice_connectors.c.pk).where(*_CONNECTOR_BY_IDS).scalar_subquery()
    query = select(*_SHOWN).where(
        ps.voice_connector_pk == connector,
        expiry.visible(now, bindparam("retention_ms", type_=BigInteger)),
    )
    if status is not None:
        query = query.where(expiry.reads_as(status, now))
    if after:
        position = tuple_(bindparam("after_created", type_=BigInteger), bindparam("after_id"))
        query = query.where(tuple_(ps.created_at, ps.id) > position)
    limit = bindparam("limit", type_=Integer)
    return Prepared(query.order_by(ps.created_at, ps.id).limit(limit))


def session_page(
    connection: Statements | Connection,
    account: str,
    region: str,
    connector_id: str,
    *,
    status: str | None,
    after: tuple[int, str] | None,
    limit: int,
    now: int,
    retention_ms: int,
) -> list[tuple[Any, ...]]:
    """The page's sessions, each as its SHOWN_SESSION_COLUMNS; empty as well when there is no
    such connector."""
    params: dict[str, Any] = {
        "account": account,
        "region": region,
        "connector_id": connector_id,
        "now": now,
        "retention_ms": retention_ms,
        "limit": limit,
    }
    if after is not None:
        params["after_created"], params["after_id"] = after
    return statements(connection).values(_session_page(status, after is not None), params)


@functools.cache
def _update_session(columns: tuple[str, ...]) -> Prepared:
    values = {name: bindparam(f"v_{name}", type_=ps[name].type) for name in columns}
    return Prepared(update(proxy_sessions).where(ps.pk == bindparam("session_pk")).values(values))


def update_session(
    connection: Statements | Connection, session_pk: int, values: dict[str, Any]
) -> None:
    params = {f"v_{name}": value for name, value in values.items()}
    statements(connection).run(_update_session(tuple(values)), {**params, "session_pk": session_pk})


_SET_ROUTE_EXPIRY = Prepared(
    update(active_routes)
    .where(ar.session_pk == bindparam("session_pk"))
    .values(expires_at=bindparam("expires_at", type_=BigInteger))
)
_RELEASE_ROUTES = Prepared(delete(active_routes).where(ar.session_pk == bindparam("session_pk")))
_DELETE_SESSION = Prepared(delete(proxy_sessions).where(ps.pk == bindparam("session_pk")))


def set_route_expiry(connection: Statements | Connection, session_pk: int, expires_at: int) -> None:
    params = {"session_pk": session_pk, "expires_at": expires_at}
    statements(connection).run(_SET_ROUTE_EXPIRY, params)


def release_routes(connection: Statements | Connection, session_pk: int) -> None:
    statements(connection).run(_RELEASE_ROUTES, {"session_pk": session_pk})


def delete_session(connection: Statements | Connection, session_pk: int) -> None:
    run = statements(connection)
    run.run(_RELEASE_ROUTES, {"session_pk": session_pk})
    run.run(_DELETE_SESSION, {"session_pk": session_pk})


def number_capabilities(connection: Connection, e164: str) -> frozenset[str]:
    value = connection.scalar(select(pn.capabilities).where(pn.e164 == e164))
    return frozenset(filter(None, (value or "").split(",")))


# The connector named by (account, region, connector id), and a session of it named by its id
# that is visible at `now`: the conditions of the prepared session look-ups.
_CONNECTOR_BY_IDS = (
    voice_connectors.c.account == bindparam("account"),
    voice_connectors.c.region == bindparam("region"),
    voice_connectors.c.id == bindparam("connector_id"),
)
_SESSION_BY_IDS_WHERE = (
    *_CONNECTOR_BY_IDS,
    ps.id == bindparam("session_id"),
    expiry.visible(bindparam("now", type_=BigInteger), bindparam("retention_ms", type_=BigInteger)),
)

# The same, for a session stored under the key made from its id (SQLite, `stored_key`): the
# row is read by its key, in one descent of the table, and still checked against its id.
_SESSION_BY_KEY_WHERE = (*_SESSION_BY_IDS_WHERE, ps.pk == bindparam("session_pk"))


def _shown_session(where: tuple[Any, ...]) -> PreparedQuery:
    """GetProxySession in one prepared statement (store/prepared.py): the session joined to
    its connector."""
    return PreparedQuery(
        lambda dialect: (
            select(*packed(dialect, *_SHOWN, voice_connectors.c.id.label("voice_connector_id")))
            .select_from(
                proxy_sessions.join(
                    voice_connectors, voice_connectors.c.pk == ps.voice_connector_pk
                )
            )
            .where(*where)
        )
    )


def _session_to_change(where: tuple[Any, ...]) -> Prepared:
    """Update and Delete: the session locked (PostgreSQL: FOR UPDATE OF the session row only, as
    before; SQLite writers hold the write lock), joined to its connector and to its proxy
    number's capabilities, in one statement instead of three."""
    return Prepared(
        select(
            proxy_sessions,
            voice_connectors.c.id.label("voice_connector_id"),
            pn.capabilities.label("number_capabilities"),
        )
        .select_from(
            proxy_sessions.join(
                voice_connectors, voice_connectors.c.pk == ps.voice_connector_pk
            ).outerjoin(phone_numbers, pn.e164 == ps.proxy_number)
        )
        .where(*where)
        .with_for_update(of=proxy_sessions)
    )


_SESSION_BY_IDS = _shown_session(_SESSION_BY_IDS_WHERE)
_SESSION_BY_KEY = _shown_session(_SESSION_BY_KEY_WHERE)
_SESSION_TO_CHANGE = _session_to_change(_SESSION_BY_IDS_WHERE)
_SESSION_TO_CHANGE_BY_KEY = _session_to_change(_SESSION_BY_KEY_WHERE)
_CONNECTOR_PK = Prepared(select(voice_connectors.c.pk).where(*_CONNECTOR_BY_IDS))


def _ids(
    account: str, region: str, connector_id: str, session_id: str, now: int, retention_ms: int
) -> dict[str, Any]:
    return {
        "account": account,
        "region": region,
        "connector_id": connector_id,
        "session_id": session_id,
        "now": now,
        "retention_ms": retention_ms,
    }


def find_session_by_ids(
    db: Database,
    account: str,
    region: str,
    connector_id: str,
    session_id: str,
    now: int,
    retention_ms: int,
) -> Sequence[Any] | None:
    """The visible session's SHOWN_SESSION_COLUMNS, then its connector's id; None when there
    is none (or the driver failed), for the caller to take the ordinary path and word the
    error."""
    params = _ids(account, region, connector_id, session_id, now, retention_ms)
    key = stored_key(db.dialect, session_id)
    if key is None:
        return _SESSION_BY_IDS.first_values(db, params)
    params["session_pk"] = key
    return _SESSION_BY_KEY.first_values(db, params)


def session_to_change(
    run: Statements,
    account: str,
    region: str,
    connector_id: str,
    session_id: str,
    now: int,
    retention_ms: int,
) -> dict[str, Any] | None:
    """The visible session, locked until the transaction ends, with its `voice_connector_id`
    and `number_capabilities` (its proxy number's); None when there is none."""
    params = _ids(account, region, connector_id, session_id, now, retention_ms)
    key = stored_key(run.dialect.name, session_id)
    if key is not None:
        row = run.first(_SESSION_TO_CHANGE_BY_KEY, {**params, "session_pk": key})
        if row is not None:
            return row
    # No key, or none under it: by the id alone, which finds every session however stored.
    return run.first(_SESSION_TO_CHANGE, params)


def connector_pk(run: Statements, account: str, region: str, connector_id: str) -> int | None:
    """The primary key of the connector, None when there is none."""
    params = {"account": account, "region": region, "connector_id": connector_id}
    row = run.first(_CONNECTOR_PK, params)
    return None if row is None else int(row["pk"])


# CreateProxySession's checks in one statement: the connector, its proxy configuration (NULLs
# when it has none) and whether each participant is one of its numbers.
def _own_number(participant: str) -> Any:
    return exists().where(
        pn.voice_connector_pk == voice_connectors.c.pk, pn.e164 == bindparam(participant)
    )


_CREATE_FACTS = Prepared(
    select(
        voice_connectors.c.pk,
        voice_connectors.c.id,
        pc.voice_connector_pk.label("config_pk"),
        pc.default_expiry_minutes,
        pc.countries,
        pc.disabled,
        _own_number("participant_1").label("own_1"),
        _own_number("participant_2").label("own_2"),
    )
    .select_from(
        voice_connectors.outerjoin(proxy_configs, pc.voice_connector_pk == voice_connectors.c.pk)
    )
    .where(*_CONNECTOR_BY_IDS)
)


def create_facts(
    connection: Statements | Connection,
    account: str,
    region: str,
    connector_id: str,
    participants: tuple[str, str],
) -> dict[str, Any] | None:
    """The connector (`pk`, `id`), its proxy configuration (`config_pk` None when it has none,
    `default_expiry_minutes`, `countries`, `disabled`) and `own_1`, `own_2`: whether each
    participant is a number of the connector. None when there is no such connector."""
    params = {
        "account": account,
        "region": region,
        "connector_id": connector_id,
        "participant_1": participants[0],
        "participant_2": participants[1],
    }
    return statements(connection).first(_CREATE_FACTS, params)


# The participants' routes and the pair's history in one statement: `kind` says which.
_ROUTES_AND_HISTORY = Prepared(
    union_all(
        select(
            literal_column("'route'").label("kind"),
            ar.proxy_number.label("number"),
            ar.expires_at.label("at"),
        ).where(
            ar.voice_connector_pk == bindparam("connector_pk"),
            ar.participant.in_([bindparam("participant_1"), bindparam("participant_2")]),
        ),
        select(
            literal_column("'pair'"),
            ph.proxy_number,
            ph.last_used_at,
        ).where(ph.voice_connector_pk == bindparam("connector_pk"), ph.pair == bindparam("pair")),
    )
)


def routes_and_history(
    connection: Statements | Connection, connector_pk: int, participants: tuple[str, str]
) -> tuple[list[tuple[str, int]], dict[str, int]]:
    """The participants' routes on the connector, live or not, as (proxy number, expires_at),
    and the pair's numbers with when each was last used (`pair_numbers`)."""
    params = {
        "connector_pk": connector_pk,
        "participant_1": participants[0],
        "participant_2": participants[1],
        "pair": pair_key(*participants),
    }
    routes: list[tuple[str, int]] = []
    history: dict[str, int] = {}
    for row in statements(connection).rows(_ROUTES_AND_HISTORY, params):
        if row["kind"] == "route":
            routes.append((row["number"], row["at"]))
        else:
            history[row["number"]] = row["at"]
    return routes, history
