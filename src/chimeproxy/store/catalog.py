"""The operator's imported catalog, replacing the built-in fictional one when present."""

from __future__ import annotations

import secrets

from sqlalchemy import Connection, delete, select

from chimeproxy.domain.catalog import Catalog, CatalogNumber
from chimeproxy.store.database import Database
from chimeproxy.store.schema import catalog_numbers, server_settings

REVISION = "catalog_revision"


def replace(database: Database, catalog: Catalog) -> int:
    """Swap the imported catalog for `catalog` in one transaction; running servers reload it."""
    rows = [
        {
            "e164": number.e164,
            "country": number.country,
            "number_type": number.number_type,
            "capabilities": ",".join(sorted(number.capabilities)),
            "area_code": number.area_code,
            "city": number.city,
            "state": number.state,
        }
        for number in catalog.search(limit=10**9)
    ]
    with database.write() as connection:
        connection.execute(delete(catalog_numbers))
        if rows:
            connection.execute(catalog_numbers.insert(), rows)
        connection.execute(delete(server_settings).where(server_settings.c.name == REVISION))
        connection.execute(
            server_settings.insert().values(name=REVISION, value=secrets.token_hex(8))
        )
    return len(rows)


def revision(connection: Connection) -> str | None:
    return connection.scalar(
        select(server_settings.c.value).where(server_settings.c.name == REVISION)
    )


def load(connection: Connection) -> Catalog:
    """The imported catalog (empty when the operator imported a file without numbers)."""
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
