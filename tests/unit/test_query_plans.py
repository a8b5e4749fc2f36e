"""The hot statements read what they must through the index meant for them, on SQLite as it
runs without statistics (nobody runs ANALYZE on an embedded database): a connector with a big
pool must not make a create, a page or a Get read the whole pool or every session."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import insert, update

from chimeproxy.store.database import Database
from chimeproxy.store.phone_numbers import purge_deleted
from chimeproxy.store.prepared import Prepared
from chimeproxy.store.proxy import _candidate_statements, _session_page, close_expired_sessions
from chimeproxy.store.schema import phone_numbers, proxy_sessions
from chimeproxy.store.stats import session_counts
from tests.integration.helpers import postgres_database
from tests.unit.store_rows import add_voice_connector, recorded_statements

POOL = 2_000
PAIR_HAD = ["+12065550007", "+12065551234", "+12065551999"]
SESSIONS = 50_000
NOW = 1_800_000_000_000


@pytest.fixture
def pool(db: Database) -> Database:
    """One connector holding a pool of POOL numbers."""
    _fill_pool(db)
    return db


@pytest.fixture
def postgres_pool() -> Iterator[Database]:
    """A migrated PostgreSQL database of the test's own holding the same pool."""
    with postgres_database() as url:
        database = Database(url)
        try:
            database.upgrade()
            _fill_pool(database)
            yield database
        finally:
            database.dispose()


def _fill_pool(db: Database) -> None:
    with db.write() as connection:
        add_voice_connector(connection, name="pool")
        connection.execute(
            insert(phone_numbers),
            [
                {
                    "account": "111122223333",
                    "region": "us-east-1",
                    "e164": f"+1206555{index:04d}",
                    "country": "US",
                    "area_code": "206",
                    "number_type": "Local",
                    "product_type": "VoiceConnector",
                    "status": "Assigned",
                    "capabilities": "InboundCall,OutboundCall,InboundSMS,OutboundSMS",
                    "voice_connector_pk": 1,
                    "last_allocated_at": index,
                    "created_at": 0,
                    "updated_at": 0,
                }
                for index in range(POOL)
            ],
        )


def _run(db: Database, sql: str, arguments: Any) -> list[Any]:
    """Rows of `sql` straight from the driver."""
    with db.read() as connection:
        driver = connection.connection.driver_connection
        assert driver is not None
        return driver.execute(sql, arguments).fetchall()


def _plan(db: Database, prepared: Prepared, params: dict[str, Any]) -> str:
    compiled = prepared.compiled(db.engine.dialect)
    return _explain(db, compiled.sql, compiled.arguments(params))


def _candidate_params(**extra: Any) -> dict[str, Any]:
    return {
        "connector_pk": 1,
        "c0": "US",
        "limit": 8,
        "geo_country": None,
        "geo_area_code": None,
        **extra,
    }


def test_a_pairs_own_numbers_are_found_by_number_not_by_reading_the_pool(
    pool: Database,
) -> None:
    general, sticky = _candidate_statements(1, len(PAIR_HAD), 1, ("InboundCall",), False, False)
    assert sticky is not None
    params = _candidate_params(b0="+12065550001", **{f"h{i}": n for i, n in enumerate(PAIR_HAD)})
    plan = _plan(pool, sticky, params)
    assert "(e164=?)" in plan, plan
    assert "ix_phone_numbers_connector" not in plan, plan
    # And it finds exactly them.
    compiled = sticky.compiled(pool.engine.dialect)
    found = _run(pool, compiled.sql, compiled.arguments(params))
    assert sorted(row[0] for row in found) == sorted(PAIR_HAD)
    # The general order is read from the allocation index, in its order (no sort of the pool).
    plan = _plan(pool, general, params)
    assert "ix_phone_numbers_allocation" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


@pytest.mark.parametrize("plan_kind", ["custom", "generic"])
def test_on_postgresql_a_create_reads_the_pool_through_the_allocation_index(
    postgres_pool: Database, plan_kind: str
) -> None:
    """PostgreSQL, with statistics (as autovacuum gathers them once a pool is loaded), must not
    read and sort the whole pool for a create's candidates. It did while the capability test
    was a pattern it could not estimate: 10 ms a create at 10,000 numbers. Both the plan made
    for the values and the generic plan psycopg's prepared statements settle on."""
    general, _ = _candidate_statements(2, 0, 1, ("InboundCall", "OutboundCall"), False, False)
    params = _candidate_params(b0="+12065550001", b1="+12065550002")
    compiled = general.compiled(postgres_pool.engine.dialect)
    with postgres_pool.read() as connection:
        driver = connection.connection.driver_connection
        assert driver is not None
        driver.execute("ANALYZE phone_numbers")
        plan = _postgres_plan(driver, compiled.sql, compiled.arguments(params), plan_kind)
        found = driver.execute(compiled.sql, compiled.arguments(params)).fetchall()
    assert "Index Scan using ix_phone_numbers_allocation" in plan, plan
    assert "Seq Scan" not in plan and "Sort" not in plan, plan
    # And they are the least recently allocated numbers with both capabilities, but the busy.
    assert [row[0] for row in found] == [f"+1206555{index:04d}" for index in (0, *range(3, 10))]


def _postgres_plan(driver: Any, sql: str, arguments: dict[str, Any], plan_kind: str) -> str:
    """EXPLAIN of a statement compiled for psycopg (`%(name)s` binds): as planned for these
    values, or as the generic plan of a prepared statement."""
    if plan_kind == "custom":
        rows = driver.execute(f"EXPLAIN {sql}", arguments).fetchall()
        return "\n".join(row[0] for row in rows)
    import psycopg

    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", sql)))
    numbered = re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m.group(1)) + 1}", sql)
    cursor = psycopg.ClientCursor(driver)
    cursor.execute("SET plan_cache_mode = force_generic_plan")
    cursor.execute(f"PREPARE candidates AS {numbered.replace('%%', '%')}")
    placeholders = ", ".join(["%s"] * len(names))
    cursor.execute(
        f"EXPLAIN EXECUTE candidates({placeholders})", [arguments[name] for name in names]
    )
    plan = "\n".join(row[0] for row in cursor.fetchall())
    cursor.execute("DEALLOCATE candidates")
    cursor.execute("RESET plan_cache_mode")
    return plan


def test_on_postgresql_a_sweep_step_finds_expired_sessions_on_their_index(
    postgres_pool: Database,
) -> None:
    """Most sessions are closed with their expiry long past, a few are open: PostgreSQL,
    taking the two facts as independent, expects many sessions due to close. The sweep step's
    batch must still be read through the index of status and expiry: taken in key order, it
    walked the primary key through every session to find none (443 ms at 1M sessions)."""
    _add_sessions(postgres_pool, closed=SESSIONS, open_=SESSIONS // 100)
    with postgres_pool.write() as connection:
        driver = connection.connection.driver_connection
        assert driver is not None
        driver.execute("ANALYZE proxy_sessions")
        with recorded_statements(postgres_pool) as seen:
            assert close_expired_sessions(connection, NOW, limit=100) == 0
        [(statement, parameters)] = [s for s in seen if s[0].startswith("UPDATE")]
        rows = driver.execute(f"EXPLAIN ANALYZE {statement}", parameters).fetchall()
        connection.rollback()
    plan = "\n".join(row[0] for row in rows)
    assert "ix_proxy_sessions_open" in plan, plan
    assert "Rows Removed by Filter" not in plan, plan


def test_a_sweep_releases_deleted_numbers_through_their_index(pool: Database) -> None:
    """Every sweep looks for deleted numbers whose queue time is over; it read every number of
    every pool to find them (about 5 ms a sweep at 10,000 numbers, with the write lock held)."""
    statement, parameters = _purge_queued_deletions(pool)
    plan = _explain(pool, statement, parameters)
    assert "ix_phone_numbers_deletion" in plan, plan
    assert "SCAN phone_numbers" not in plan, plan


def test_on_postgresql_a_sweep_releases_deleted_numbers_through_their_index(
    postgres_pool: Database,
) -> None:
    with postgres_pool.write() as connection:
        driver = connection.connection.driver_connection
        assert driver is not None
        driver.execute("ANALYZE phone_numbers")
    statement, parameters = _purge_queued_deletions(postgres_pool)
    with postgres_pool.read() as connection:
        driver = connection.connection.driver_connection
        assert driver is not None
        plan = "\n".join(row[0] for row in driver.execute(f"EXPLAIN {statement}", parameters))
    assert "ix_phone_numbers_deletion" in plan, plan
    assert "Seq Scan on phone_numbers" not in plan, plan


def _purge_queued_deletions(db: Database) -> tuple[str, Any]:
    """Queue five of the pool's numbers for deletion, three of them long enough ago to be
    released, run the sweeper's purge, and return the statement it ran to find them."""
    queued = {f"+1206555{index:04d}": NOW - age for index, age in enumerate((9, 8, 7, -1, -2))}
    with db.write() as connection:
        for e164, deletion_at in queued.items():
            connection.execute(
                update(phone_numbers)
                .where(phone_numbers.c.e164 == e164)
                .values(status="DeleteInProgress", deletion_at=deletion_at)
            )
    with db.write() as connection, recorded_statements(db) as seen:
        assert purge_deleted(connection, NOW, limit=100) == 3
    with db.read() as connection:
        left = connection.execute(
            phone_numbers.select().where(phone_numbers.c.status == "DeleteInProgress")
        ).mappings()
        assert sorted(row["e164"] for row in left) == ["+12065550003", "+12065550004"]
    [found] = [record for record in seen if record[0].startswith("DELETE")]
    return found


def _add_sessions(db: Database, *, closed: int, open_: int) -> None:
    """`closed` sessions that expired and closed long ago, `open_` open ones expiring later."""

    def session(index: int, status: str, expires_at: int) -> dict[str, Any]:
        return {
            "voice_connector_pk": 1,
            "id": f"00000000-0000-4000-8000-{index:012d}",
            "status": status,
            "capabilities": "Voice",
            "expiry_minutes": 60,
            "expiry_minutes_given": True,
            "participant_1": f"+1425{index:07d}",
            "participant_2": f"+1360{index:07d}",
            "proxy_number": f"+1206555{index % POOL:04d}",
            "created_at": expires_at - 3_600_000,
            "updated_at": expires_at - 3_600_000,
            "expires_at": expires_at,
            "ended_at": expires_at if status == "Closed" else None,
        }

    rows = [session(i, "Closed", NOW - 86_400_000 + i) for i in range(closed)]
    rows += [session(closed + i, "Open", NOW + 3_600_000 + i) for i in range(open_)]
    with db.write() as connection:
        connection.execute(insert(proxy_sessions), rows)


@pytest.mark.parametrize(("status", "after"), [(None, False), ("Open", True)])
def test_a_page_of_sessions_reads_the_listing_index_in_order(
    pool: Database, status: str | None, after: bool
) -> None:
    params: dict[str, Any] = {
        "account": "111122223333",
        "region": "us-east-1",
        "connector_id": "abcdefghijklmnopqrstuv",
        "now": 1,
        "retention_ms": 1,
        "limit": 101,
        "after_created": 0,
        "after_id": "",
    }
    plan = _plan(pool, _session_page(status, after), params)
    assert "ix_proxy_sessions_list" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


def test_the_session_gauges_count_the_active_sessions_on_their_index(db: Database) -> None:
    """A scrape counts the live sessions by their index and Closed as the rest of the table's
    row count: grouping every row by its effective status sorted the whole table."""
    with db.read() as connection, recorded_statements(db) as seen:
        assert session_counts(connection, 1) == {"Open": 0, "InProgress": 0, "Closed": 0}
    plans = [
        _explain(db, statement, parameters)
        for statement, parameters in seen
        if statement.startswith("SELECT")
    ]
    assert len(plans) == 2, plans
    assert not any("TEMP B-TREE" in plan for plan in plans), plans
    grouped = next(plan for plan in plans if "ix_proxy_sessions_open" in plan)
    assert "SEARCH proxy_sessions USING COVERING INDEX ix_proxy_sessions_open" in grouped, plans


def _explain(db: Database, sql: str, arguments: Any) -> str:
    return "\n".join(row[-1] for row in _run(db, f"EXPLAIN QUERY PLAN {sql}", arguments))
