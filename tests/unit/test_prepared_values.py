"""Rows read as the driver's tuples (`Statements.values`, `PreparedQuery.first_values`): the
same values as the dict rows, and refused for columns that need a conversion the tuple would
skip."""

from __future__ import annotations

import pytest
from sqlalchemy import bindparam, select
from sqlalchemy.dialects import sqlite

from chimeproxy.store import prepared
from chimeproxy.store.database import Database
from chimeproxy.store.prepared import Prepared, PreparedQuery
from chimeproxy.store.schema import proxy_configs, server_settings

SETTINGS = Prepared(select(server_settings.c.name, server_settings.c.value))
ONE_SETTING = PreparedQuery(
    select(server_settings.c.name, server_settings.c.value).where(
        server_settings.c.name == bindparam("name")
    )
)
# `disabled` is a Boolean: SQLite stores 0/1, and SQLAlchemy converts it to False/True.
CONFIG_FLAGS = PreparedQuery(select(proxy_configs.c.disabled))


def test_tuples_hold_what_dict_rows_hold(db: Database) -> None:
    with prepared.write(db) as run:
        for n in range(3):
            run.sql(f"INSERT INTO server_settings (name, value) VALUES ('t-{n}', 'v{n}')")
    with prepared.read(db) as run:
        dicts = [row for row in run.rows(SETTINGS, {}) if row["name"].startswith("t-")]
        tuples = [row for row in run.values(SETTINGS, {}) if row[0].startswith("t-")]
    assert tuples == [(row["name"], row["value"]) for row in dicts]
    assert [tuple(row) for row in tuples] == [("t-0", "v0"), ("t-1", "v1"), ("t-2", "v2")]
    assert ONE_SETTING.first_values(db, {"name": "t-1"}) == ("t-1", "v1")
    assert ONE_SETTING.first_values(db, {"name": "none"}) is None


def test_columns_that_need_converting_are_not_read_as_tuples(db: Database) -> None:
    """Refused whatever the data (here: no row at all), so a mistake shows in any test."""
    with prepared.read(db) as run, pytest.raises(TypeError, match="disabled"):
        run.values(CONFIG_FLAGS, {})
    with pytest.raises(TypeError, match="disabled"):
        CONFIG_FLAGS.first_values(db, {})
    with prepared.read(db) as run:
        assert run.rows(CONFIG_FLAGS, {}) == []  # dict rows convert, as they always did


def test_none_and_bools_bind_as_they_would_without_the_adapters() -> None:
    """store/database.py gives None and bool adapters of their own, so that binding them raises
    no AttributeError inside the driver: they must store what the driver stores without them,
    NULL and the integers 1 and 0."""
    import sqlite3

    import chimeproxy.store.database  # noqa: F401 -- registers the adapters

    assert (type(None), sqlite3.PrepareProtocol) in sqlite3.adapters
    assert (bool, sqlite3.PrepareProtocol) in sqlite3.adapters
    connection = sqlite3.connect(":memory:")
    try:
        connection.execute("CREATE TABLE t (a, b, c)")
        connection.execute("INSERT INTO t VALUES (?, ?, ?)", (None, True, False))
        stored = connection.execute("SELECT a, typeof(a), b, typeof(b), c, typeof(c) FROM t")
        assert stored.fetchone() == (None, "null", 1, "integer", 0, "integer")
        # A NULL bound in a comparison still matches nothing, as NULL does.
        assert connection.execute("SELECT count(*) FROM t WHERE a = ?", (None,)).fetchone() == (0,)
        assert connection.execute("SELECT count(*) FROM t WHERE b = ?", (True,)).fetchone() == (1,)
    finally:
        connection.close()


def test_positional_arguments_are_picked_in_bind_order_with_the_constants() -> None:
    """`_Compiled.arguments` for a positional paramstyle: every bind in order, a constant where
    the statement has one, whatever the number of binds (itemgetter answers a lone value for
    one name)."""
    name, value = server_settings.c.name, server_settings.c.value
    one = select(name).where(name == bindparam("name"))
    several = select(name).where(
        name == bindparam("name"), value == bindparam("value"), name != "constant"
    )
    dialect = sqlite.dialect()  # type: ignore[no-untyped-call]
    assert Prepared(one).compiled(dialect).arguments({"name": "a"}) == ("a",)
    picked = Prepared(several).compiled(dialect).arguments({"value": "v", "name": "a"})
    assert picked == ("a", "v", "constant")
    assert Prepared(select(name)).compiled(dialect).arguments({}) == ()
