"""The console's "find a number" (store/console.py `interactions_of_number`): every contact a
number took part in, whether in a session or not, though only contacts out of session are in
the caller and proxy-number indexes (migration 0006). On SQLite and on PostgreSQL, with the
plans each database chooses."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, text

from chimeproxy.store.console import interactions_of_number
from chimeproxy.store.database import Database
from chimeproxy.store.schema import interactions, proxy_sessions
from tests.integration.helpers import postgres_database
from tests.unit.store_rows import add_voice_connector, recorded_statements

NOW = 1_800_000_000_000
DRIVER, RIDER, PROXY = "+14255550100", "+13605550100", "+12065550100"
STRANGER, OTHER_PROXY = "+15035550100", "+12065550101"
# Another driver's session on the same proxy number, for `PROXY` to find as well.
DRIVER_2, RIDER_2 = "+14255550200", "+13605550200"


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with _url(request.param, tmp_path) as url:
        db = Database(url)
        try:
            db.upgrade()
            _seed(db)
            yield db
        finally:
            db.dispose()


def _url(kind: str, tmp_path: Path) -> AbstractContextManager[str]:
    if kind == "postgresql":
        return postgres_database()
    return nullcontext(f"sqlite:///{tmp_path / 'find.db'}")


def _session(pk: int, first: str, second: str, proxy: str, created: int) -> dict[str, Any]:
    return {
        "pk": pk,
        "voice_connector_pk": 1,
        "id": f"00000000-0000-4000-8000-{pk:012d}",
        "status": "Open",
        "capabilities": "Voice,SMS",
        "expiry_minutes": 60,
        "expiry_minutes_given": True,
        "participant_1": first,
        "participant_2": second,
        "proxy_number": proxy,
        "created_at": created,
        "updated_at": created,
        "expires_at": created + 3_600_000,
        "ended_at": None,
    }


def _contact(
    pk: int, session_pk: int | None, caller: str, proxy: str, started: int
) -> dict[str, Any]:
    return {
        "pk": pk,
        "id": f"00000000-0000-7000-8000-{pk:012d}",
        "voice_connector_pk": 1,
        "session_pk": session_pk,
        "kind": "voice",
        "action": "connect" if session_pk else "reject",
        "direction": None,
        "out_of_session": None if session_pk else "no_session",
        "caller": caller,
        "proxy_number": proxy,
        "target": None,
        "started_at": started,
    }


def _seed(db: Database) -> None:
    with db.write() as connection:
        add_voice_connector(connection, name="rides")
        connection.execute(
            insert(proxy_sessions),
            [
                _session(1, DRIVER, RIDER, PROXY, NOW),
                _session(2, DRIVER_2, RIDER_2, PROXY, NOW + 1),
            ],
        )
        connection.execute(
            insert(interactions),
            [
                _contact(1, 1, DRIVER, PROXY, NOW + 10),  # the driver calls the rider
                _contact(2, 1, RIDER, PROXY, NOW + 20),  # the rider texts back
                _contact(3, None, STRANGER, PROXY, NOW + 30),  # a stranger calls the number
                _contact(4, None, DRIVER, OTHER_PROXY, NOW + 40),  # the driver, out of session
                _contact(5, 2, RIDER_2, PROXY, NOW + 50),  # another session on the number
            ],
        )


def _found(db: Database, number: str, limit: int = 200) -> list[int]:
    with db.read() as connection:
        return [row["pk"] for row in interactions_of_number(connection, [1], number, limit)]


def test_a_number_finds_every_contact_it_took_part_in_newest_first(database: Database) -> None:
    # The driver called (1), was texted in its session (2), and called another number (4).
    assert _found(database, DRIVER) == [4, 2, 1]
    # The rider was called (1) and texted (2): found through its session though it is the
    # caller of only one of them.
    assert _found(database, RIDER) == [2, 1]
    # The proxy number: both sessions' contacts and the stranger's call.
    assert _found(database, PROXY) == [5, 3, 2, 1]
    assert _found(database, STRANGER) == [3]
    assert _found(database, OTHER_PROXY) == [4]
    assert _found(database, "+19995550100") == []
    # The newest first, cut at the limit.
    assert _found(database, PROXY, limit=2) == [5, 3]


def test_another_connector_s_contacts_are_not_found(database: Database) -> None:
    with database.read() as connection:
        assert interactions_of_number(connection, [2], DRIVER, 200) == []


def test_only_contacts_out_of_session_are_in_the_caller_and_proxy_number_indexes(
    database: Database,
) -> None:
    """The routing path's insert of a contact in session writes neither index: each is
    partial, and holds the two contacts out of session only."""
    with database.read() as connection:
        if database.dialect == "sqlite":
            definitions = connection.execute(
                text("SELECT name, sql FROM sqlite_master WHERE name LIKE 'ix_interactions_%'")
            ).all()
        else:
            definitions = connection.execute(
                text(
                    "SELECT indexname, indexdef FROM pg_indexes "
                    "WHERE indexname LIKE 'ix_interactions_%'"
                )
            ).all()
    found = {name: sql for name, sql in definitions}
    for name in ("ix_interactions_stranger_caller", "ix_interactions_stranger_proxy_number"):
        assert "session_pk IS NULL" in found[name], found[name]
    assert "ix_interactions_caller" not in found and "ix_interactions_proxy_number" not in found


def test_each_look_up_reads_an_index(database: Database) -> None:
    """No look-up of "find a number" reads a whole table or all of a connector's contacts:
    without statistics, SQLite was drawn to the connector's index of contacts, which also
    gives their order, and would have read every contact of the connector."""
    with recorded_statements(database) as seen:
        _found(database, PROXY)
    selects = [(s, p) for s, p in seen if s.lstrip().startswith("SELECT")]
    assert len(selects) == 3, selects
    plans = [_explain(database, statement, parameters) for statement, parameters in selects]
    in_session, caller, stranger_proxy = plans
    for index in (
        "ix_proxy_sessions_participant_1",
        "ix_proxy_sessions_participant_2",
        "ix_proxy_sessions_proxy_number",
        "ix_interactions_session",
    ):
        assert index in in_session, in_session
    assert "ix_interactions_stranger_caller" in caller, caller
    assert "ix_interactions_stranger_proxy_number" in stranger_proxy, stranger_proxy
    for plan in plans:
        assert "ix_interactions_connector" not in plan, plan
        assert "ix_interactions_started" not in plan, plan
        assert "SCAN" not in plan and "Seq Scan" not in plan, plan


def _explain(database: Database, statement: str, parameters: Any) -> str:
    with database.read() as connection:
        driver = connection.connection.driver_connection
        assert driver is not None
        if database.dialect == "sqlite":
            rows = driver.execute("EXPLAIN QUERY PLAN " + statement, parameters).fetchall()
            return "\n".join(str(row[-1]) for row in rows)
        cursor = driver.cursor()
        # A handful of rows: every plan would do; judge the one PostgreSQL takes at size.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + statement, parameters)
        return "\n".join(row[0] for row in cursor.fetchall())
