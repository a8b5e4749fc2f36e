"""Columns read `packed` (store/prepared.py) come out as the driver gives them unpacked: the
JSON array SQLite builds and orjson reads carry text, integers and NULL unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import BigInteger, Column, MetaData, String, Table, bindparam, insert, select
from sqlalchemy.dialects import postgresql

from chimeproxy.store.database import Database
from chimeproxy.store.prepared import PACKED, PreparedQuery, packed

metadata = MetaData()
things = Table(
    "packed_things",
    metadata,
    Column("id", String, primary_key=True),
    Column("name", String),
    Column("count", BigInteger),
)
ROWS = [
    {"id": "plain", "name": "Ride 42", "count": 1_764_800_000_123},
    {"id": "nulls", "name": None, "count": None},
    {"id": "quoted", "name": 'a "quoted" \\ back\\slash\nnew line\ttab', "count": -(2**63)},
    {"id": "unicode", "name": "Zoë's café — 🚕 ライド", "count": 2**63 - 1},
    {"id": "empty", "name": "", "count": 0},
]
WHERE = things.c.id == bindparam("id")
PACKED_QUERY = PreparedQuery(
    lambda dialect: select(*packed(dialect, things.c.id, things.c.name, things.c.count)).where(
        WHERE
    )
)
PLAIN_QUERY = PreparedQuery(select(things.c.id, things.c.name, things.c.count).where(WHERE))


@pytest.fixture
def stocked(db: Database) -> Database:
    metadata.create_all(db.engine)
    with db.engine.begin() as connection:
        connection.execute(insert(things), ROWS)
    return db


@pytest.mark.parametrize("row", ROWS, ids=[row["id"] for row in ROWS])
def test_packed_columns_read_as_the_unpacked_ones(stocked: Database, row: dict[str, Any]) -> None:
    unpacked = PLAIN_QUERY.first_values(stocked, {"id": row["id"]})
    assert unpacked == tuple(row.values())
    assert list(PACKED_QUERY.first_values(stocked, {"id": row["id"]}) or ()) == list(unpacked)


def test_packing_is_sqlite_s_alone_and_a_missing_row_is_none(stocked: Database) -> None:
    assert PACKED_QUERY.compiled(stocked.engine.dialect).columns == (PACKED,)
    assert PACKED_QUERY.first_values(stocked, {"id": "nowhere"}) is None
    on_postgresql = PACKED_QUERY.compiled(postgresql.dialect())  # type: ignore[no-untyped-call]
    assert on_postgresql.columns == ("id", "name", "count")
