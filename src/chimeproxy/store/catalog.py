"""The catalog of numbers on offer: the built-in fictional one, the operator's imported numbers
instead of it, or the imported numbers added to it (`chimeproxy numbers import [--add]`,
`numbers reset`). Running servers reload it when its revision changes."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, delete, func, select

from chimeproxy.domain.catalog import Catalog, CatalogNumber
from chimeproxy.domain.catalog_builtin import builtin_catalog
from chimeproxy.store.database import Database
from chimeproxy.store.schema import catalog_numbers, server_settings

REVISION = "catalog_revision"  # present once an operator imported numbers; changes with each
WITH_BUILTIN = "catalog_with_builtin"  # present when the built-in numbers stay on offer too


@dataclass(frozen=True, slots=True)
class Offer:
    """What the catalog in force is made of."""

    revision: str | None  # None: the built-in catalog alone, nothing imported
    with_builtin: bool
    imported: int


def _rows(numbers: Iterable[CatalogNumber]) -> list[dict[str, object]]:
    return [
        {
            "e164": number.e164,
            "country": number.country,
            "number_type": number.number_type,
            "capabilities": ",".join(sorted(number.capabilities)),
            "area_code": number.area_code,
            "city": number.city,
            "state": number.state,
        }
        for number in numbers
    ]


def _set(connection: Connection, name: str, value: str | None) -> None:
    connection.execute(delete(server_settings).where(server_settings.c.name == name))
    if value is not None:
        connection.execute(server_settings.insert().values(name=name, value=value))


def replace(database: Database, catalog: Catalog) -> int:
    """Offer exactly `catalog` (the built-in numbers no more), in one transaction."""
    rows = _rows(catalog)
    with database.write() as connection:
        connection.execute(delete(catalog_numbers))
        if rows:
            connection.execute(catalog_numbers.insert(), rows)
        _set(connection, WITH_BUILTIN, None)
        _set(connection, REVISION, secrets.token_hex(8))
    return len(rows)


def add(database: Database, catalog: Catalog) -> tuple[int, int]:
    """Add `catalog`'s numbers to the catalog in force (to the built-in one when nothing was
    imported yet); a number already imported takes the new row. (added, updated)."""
    rows = _rows(catalog)
    with database.write() as connection:
        if offer(connection).revision is None:
            _set(connection, WITH_BUILTIN, "1")
        present = set(
            connection.scalars(
                select(catalog_numbers.c.e164).where(
                    catalog_numbers.c.e164.in_([row["e164"] for row in rows])
                )
            )
        )
        if present:
            connection.execute(delete(catalog_numbers).where(catalog_numbers.c.e164.in_(present)))
        if rows:
            connection.execute(catalog_numbers.insert(), rows)
        _set(connection, REVISION, secrets.token_hex(8))
    return len(rows) - len(present), len(present)


def reset(database: Database) -> int:
    """Back to the built-in catalog alone; the imported numbers are forgotten (how many)."""
    with database.write() as connection:
        count = connection.execute(delete(catalog_numbers)).rowcount
        _set(connection, WITH_BUILTIN, None)
        _set(connection, REVISION, None)
    return count


def revision(connection: Connection) -> str | None:
    return connection.scalar(
        select(server_settings.c.value).where(server_settings.c.name == REVISION)
    )


def offer(connection: Connection) -> Offer:
    settings = dict(
        connection.execute(
            select(server_settings.c.name, server_settings.c.value).where(
                server_settings.c.name.in_([REVISION, WITH_BUILTIN])
            )
        ).all()
    )
    imported = connection.scalar(select(func.count()).select_from(catalog_numbers)) or 0
    return Offer(settings.get(REVISION), WITH_BUILTIN in settings, imported)


def load(connection: Connection) -> Catalog:
    """The imported numbers (empty when the operator imported a file without numbers)."""
    rows = connection.execute(select(catalog_numbers)).mappings().all()
    return Catalog(
        CatalogNumber(
            e164=row["e164"],
            country=row["country"],
            number_type=row["number_type"],
            capabilities=frozenset(filter(None, row["capabilities"].split(","))),
            area_code=row["area_code"],
            city=row["city"],
            state=row["state"],
        )
        for row in rows
    )


def in_force(connection: Connection) -> Catalog:
    """The catalog on offer now: built-in, imported, or imported over built-in."""
    current = offer(connection)
    if current.revision is None:
        return builtin_catalog()
    imported = load(connection)
    if not current.with_builtin:
        return imported
    mine = {number.e164 for number in imported}
    return Catalog([*imported, *(n for n in builtin_catalog() if n.e164 not in mine)])
