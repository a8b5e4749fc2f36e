"""Queries on owned phone numbers and number orders, scoped to one (account, region)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, RowMapping, delete, exists, select, tuple_, update

from chimeproxy.domain.phone_numbers import PhoneNumberStatus
from chimeproxy.store import expiry
from chimeproxy.store.schema import (
    active_routes,
    phone_number_orders,
    phone_numbers,
    voice_connectors,
)

pn = phone_numbers.c
po = phone_number_orders.c


def owned_among(connection: Connection, numbers: Iterable[str]) -> set[str]:
    """Which of `numbers` anyone owns already (a carrier sells a number once)."""
    numbers = list(numbers)
    if not numbers:
        return set()
    return set(connection.scalars(select(pn.e164).where(pn.e164.in_(numbers))))


def insert_many(connection: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        connection.execute(phone_numbers.insert(), rows)


def _with_connector() -> Any:
    return select(phone_numbers, voice_connectors.c.id.label("voice_connector_id")).outerjoin(
        voice_connectors, voice_connectors.c.pk == pn.voice_connector_pk
    )


def find(connection: Connection, account: str, region: str, e164: str) -> RowMapping | None:
    query = _with_connector().where(pn.account == account, pn.region == region, pn.e164 == e164)
    return connection.execute(query).mappings().first()


def find_many(
    connection: Connection,
    account: str,
    region: str,
    numbers: Iterable[str],
    *,
    for_update: bool = False,
) -> dict[str, RowMapping]:
    """The caller's rows among `numbers`. With `for_update`, the rows stay locked until the
    transaction ends (PostgreSQL; SQLite writers are serialized anyway), so that concurrent
    association changes of one number queue up and each sees the one before it."""
    query = _with_connector().where(
        pn.account == account, pn.region == region, pn.e164.in_(sorted(set(numbers)))
    )
    if for_update:
        # Only the number rows: the connector is the nullable side of an outer join.
        query = query.with_for_update(of=phone_numbers).order_by(pn.e164)
    return {row["e164"]: row for row in connection.execute(query).mappings()}


def page(
    connection: Connection,
    account: str,
    region: str | None,
    *,
    status: str | None,
    product_type: str | None,
    connector_pk: int | None,
    after: str | None,
    limit: int,
) -> list[RowMapping]:
    """A page of the account's numbers by E.164 (of `region`, else every region: the console)."""
    query = _with_connector().where(pn.account == account)
    if region is not None:
        query = query.where(pn.region == region)
    if status is not None:
        query = query.where(pn.status == status)
    if product_type is not None:
        query = query.where(pn.product_type == product_type)
    if connector_pk is not None:
        query = query.where(pn.voice_connector_pk == connector_pk)
    if after is not None:
        query = query.where(pn.e164 > after)
    return list(connection.execute(query.order_by(pn.e164).limit(limit)).mappings())


def update_number(connection: Connection, pk: int, values: dict[str, Any]) -> None:
    connection.execute(update(phone_numbers).where(pn.pk == pk).values(**values))


def in_active_session(connection: Connection, e164: str, now: int) -> bool:
    """Whether an Open or InProgress session routes through this number right now."""
    return bool(
        connection.scalar(
            select(exists().where(active_routes.c.proxy_number == e164, expiry.route_live(now)))
        )
    )


def purge_deleted(connection: Connection, before: int, limit: int) -> int:
    """Release up to `limit` numbers whose deletion queue time is over, back to the carrier."""
    due = (
        select(pn.pk)
        .where(pn.status == PhoneNumberStatus.DELETE_IN_PROGRESS, pn.deletion_at <= before)
        .limit(limit)
    )
    return connection.execute(delete(phone_numbers).where(pn.pk.in_(due))).rowcount


def insert_order(connection: Connection, values: dict[str, Any]) -> None:
    connection.execute(phone_number_orders.insert().values(**values))


def find_order(
    connection: Connection, account: str, region: str, order_id: str
) -> RowMapping | None:
    query = select(phone_number_orders).where(
        po.account == account, po.region == region, po.id == order_id
    )
    return connection.execute(query).mappings().first()


def order_page(
    connection: Connection, account: str, region: str, after: tuple[int, str] | None, limit: int
) -> list[RowMapping]:
    query = select(phone_number_orders).where(po.account == account, po.region == region)
    if after is not None:
        query = query.where(tuple_(po.created_at, po.id) > tuple_(*after))
    return list(connection.execute(query.order_by(po.created_at, po.id).limit(limit)).mappings())
