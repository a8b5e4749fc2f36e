"""Queries on voice connectors, always scoped to one (account, region)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, RowMapping, func, select, tuple_

from chimeproxy.store.schema import phone_numbers, voice_connectors

vc = voice_connectors.c


def insert(connection: Connection, values: dict[str, Any]) -> int:
    return connection.execute(voice_connectors.insert().values(**values)).inserted_primary_key[0]


def find(connection: Connection, account: str, region: str, connector_id: str) -> RowMapping | None:
    return (
        connection.execute(
            select(voice_connectors).where(
                vc.account == account, vc.region == region, vc.id == connector_id
            )
        )
        .mappings()
        .first()
    )


def page(
    connection: Connection, account: str, region: str, after: tuple[int, str] | None, limit: int
) -> list[RowMapping]:
    query = select(voice_connectors).where(vc.account == account, vc.region == region)
    if after is not None:
        query = query.where(tuple_(vc.created_at, vc.id) > tuple_(*after))
    query = query.order_by(vc.created_at, vc.id).limit(limit)
    return list(connection.execute(query).mappings())


def update(connection: Connection, pk: int, values: dict[str, Any]) -> None:
    connection.execute(voice_connectors.update().where(vc.pk == pk).values(**values))


def delete(connection: Connection, pk: int) -> None:
    connection.execute(voice_connectors.delete().where(vc.pk == pk))


def associated_number_count(connection: Connection, pk: int) -> int:
    return connection.scalar(
        select(func.count())
        .select_from(phone_numbers)
        .where(phone_numbers.c.voice_connector_pk == pk)
    )
