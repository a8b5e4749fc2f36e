"""Aggregate reads for metrics and the console: sessions by status, and each voice connector's
proxy-number pool in use."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, Connection, and_, func, select, true

from chimeproxy.domain.lifecycle import SessionStatus
from chimeproxy.domain.phone_numbers import PhoneNumberStatus
from chimeproxy.store import expiry
from chimeproxy.store.schema import (
    active_routes,
    phone_numbers,
    proxy_configs,
    proxy_sessions,
    voice_connectors,
)

ps = proxy_sessions.c
ar = active_routes.c
pn = phone_numbers.c
pc = proxy_configs.c
vc = voice_connectors.c


@dataclass
class PoolUse:
    """One voice connector's proxy-number pool at one instant."""

    account: str
    voice_connector: str
    numbers: int = 0  # assigned numbers of the pool countries
    in_use: int = 0  # of those, numbers with at least one active session
    active_sessions: int = 0
    busiest_participant: int = 0  # most active sessions any one participant has


@dataclass
class Snapshot:
    """What the database says at scrape time."""

    sessions: dict[str, int] = field(default_factory=dict)
    pools: list[PoolUse] = field(default_factory=list)


def database_snapshot(connection: Connection, now: int) -> Snapshot:
    """Session counts by status (as a read would show them at `now`) and pool use per voice
    connector that has a proxy configuration."""
    return Snapshot(session_counts(connection, now), list(pool_use(connection, now).values()))


def session_counts(connection: Connection, now: int) -> dict[str, int]:
    """Every stored session by the status it reads as at `now`. The active ones are counted on
    the index of stored status and expiry (as many as are live, a few thousand); Closed is all
    the others, from the table's row count, which SQLite answers from its smallest index.
    Grouping every row by its effective status instead sorted the whole table in a temporary
    B-tree: 244 ms a scrape at 1M sessions, against 9 (docs/performance.md). Both counts come
    from the caller's one snapshot, so they agree."""
    counts: dict[str, int] = dict.fromkeys(SessionStatus, 0)
    total = connection.execute(select(func.count()).select_from(proxy_sessions)).scalar_one()
    for status, count in connection.execute(
        select(ps.status, func.count()).where(expiry.active(now)).group_by(ps.status)
    ):
        counts[status] += count
    counts[SessionStatus.CLOSED] = total - sum(counts.values())
    return counts


def pool_use(
    connection: Connection, now: int, connector_pks: Collection[int] | None = None
) -> dict[int, PoolUse]:
    """Pool use of each voice connector (of `connector_pks`, else all) that has a proxy
    configuration, by connector pk."""

    def among(column: ColumnElement[int]) -> ColumnElement[bool]:
        return column.in_(list(connector_pks)) if connector_pks is not None else true()

    configured = connection.execute(
        select(vc.pk, vc.account, vc.id, pc.countries)
        .join(proxy_configs, pc.voice_connector_pk == vc.pk)
        .where(among(vc.pk))
    ).all()
    if not configured:
        return {}
    numbers: dict[tuple[int, str], int] = {}
    for pk, country, count in connection.execute(
        select(pn.voice_connector_pk, pn.country, func.count())
        .where(
            pn.status == PhoneNumberStatus.ASSIGNED,
            pn.voice_connector_pk.is_not(None),
            among(pn.voice_connector_pk),
        )
        .group_by(pn.voice_connector_pk, pn.country)
    ):
        numbers[(pk, country)] = count
    live = and_(expiry.route_live(now), among(ar.voice_connector_pk))
    in_use: dict[tuple[int, str], int] = {}
    for pk, country, count in connection.execute(
        select(ar.voice_connector_pk, pn.country, func.count(ar.proxy_number.distinct()))
        .join(
            phone_numbers,
            (pn.e164 == ar.proxy_number)
            & (pn.voice_connector_pk == ar.voice_connector_pk)
            & (pn.status == PhoneNumberStatus.ASSIGNED),
        )
        .where(live)
        .group_by(ar.voice_connector_pk, pn.country)
    ):
        in_use[(pk, country)] = count
    # Every active session has one route per participant.
    routes = dict(
        connection.execute(
            select(ar.voice_connector_pk, func.count()).where(live).group_by(ar.voice_connector_pk)
        ).all()
    )
    per_participant = (
        select(ar.voice_connector_pk.label("pk"), func.count().label("n"))
        .where(live)
        .group_by(ar.voice_connector_pk, ar.participant)
        .subquery()
    )
    busiest = dict(
        connection.execute(
            select(per_participant.c.pk, func.max(per_participant.c.n)).group_by(
                per_participant.c.pk
            )
        ).all()
    )
    pools = {}
    for pk, account, connector_id, countries in configured:
        pool = PoolUse(account, connector_id)
        for country in countries.split(","):
            pool.numbers += numbers.get((pk, country), 0)
            pool.in_use += in_use.get((pk, country), 0)
        pool.active_sessions = routes.get(pk, 0) // 2
        pool.busiest_participant = busiest.get(pk, 0)
        pools[pk] = pool
    return pools
