"""The event loop's kept SQLite connection (`Database.driver_connection`): the loop reuses one
connection, every other thread and a nested transaction take the pool's, and it is replaced
when the database must be opened anew."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from chimeproxy.store.database import Database


def driver(connection: Any) -> Any:
    return connection.dbapi_connection


def keep_one(db: Database) -> Any:
    """Keep a connection for this thread (the loop's); its driver connection."""
    db.keep_a_connection_for_this_thread()
    with db.driver_connection() as connection:
        return driver(connection)


def assert_a_working_replacement(db: Database, kept: Any) -> None:
    with db.driver_connection() as connection:
        assert driver(connection) is not kept
        assert connection.cursor().execute("SELECT 1").fetchone() == (1,)


def test_the_loop_reuses_one_connection_and_other_threads_use_the_pool(db: Database) -> None:
    async def on_the_loop() -> None:
        db.keep_a_connection_for_this_thread()
        with db.driver_connection() as first:
            kept = driver(first)
            with db.driver_connection() as nested:  # a transaction inside another
                assert driver(nested) is not kept
        with db.driver_connection() as again:
            assert driver(again) is kept
        elsewhere: list[Any] = []

        def in_a_thread() -> None:
            with db.driver_connection() as connection:
                elsewhere.append(driver(connection))

        thread = threading.Thread(target=in_a_thread)
        thread.start()
        thread.join()
        assert elsewhere[0] is not kept

    asyncio.run(on_the_loop())


def test_a_reopen_on_the_loop_closes_the_kept_connection_at_once(db: Database) -> None:
    async def on_the_loop() -> None:
        kept = keep_one(db)
        db._reopen()
        with pytest.raises(Exception, match="closed"):
            kept.execute("SELECT 1")
        assert_a_working_replacement(db, kept)

    asyncio.run(on_the_loop())


def test_a_reopen_from_another_thread_closes_it_on_the_loop(db: Database) -> None:
    async def on_the_loop() -> None:
        kept = keep_one(db)
        thread = threading.Thread(target=db._reopen)  # as the health probe would
        thread.start()
        thread.join()
        await asyncio.sleep(0)  # the loop's next turn runs the release
        with pytest.raises(Exception, match="closed"):
            kept.execute("SELECT 1")

    asyncio.run(on_the_loop())


def test_an_invalidated_connection_is_replaced(db: Database) -> None:
    async def on_the_loop() -> None:
        db.keep_a_connection_for_this_thread()
        with db.driver_connection() as connection:
            kept = driver(connection)
            connection.invalidate()
        assert_a_working_replacement(db, kept)

    asyncio.run(on_the_loop())


def test_a_first_row_runs_on_the_kept_connection_and_gives_it_back(db: Database) -> None:
    """`first_row`, every Get's statement: on the loop, the kept connection (the only one that
    sees its own temporary table), free again afterwards even when the statement fails;
    inside a transaction on it, and in other threads, a pooled one."""

    async def on_the_loop() -> None:
        kept = keep_one(db)
        kept.execute("CREATE TEMP TABLE mine (x)")
        kept.execute("INSERT INTO mine VALUES (7)")
        assert db.first_row("SELECT x FROM mine WHERE x = ?", (7,)) == (7,)
        assert db.first_row("SELECT x FROM mine WHERE x = ?", (8,)) is None
        assert not db._loop_connection.in_use
        with pytest.raises(Exception, match="no such table"):
            db.first_row("SELECT * FROM nowhere", ())
        assert not db._loop_connection.in_use
        with db.driver_connection() as connection:  # a transaction holds the kept one
            assert driver(connection) is kept
            with pytest.raises(Exception, match="no such table: mine"):
                db.first_row("SELECT x FROM mine", ())
            assert db.first_row("SELECT 2", ()) == (2,)
            assert db._loop_connection.in_use
        errors: list[Exception] = []

        def in_a_thread() -> None:
            try:
                db.first_row("SELECT x FROM mine", ())
            except Exception as exc:
                errors.append(exc)

        thread = threading.Thread(target=in_a_thread)
        thread.start()
        thread.join()
        assert "no such table: mine" in str(errors[0])
        assert db.first_row("SELECT x FROM mine", ()) == (7,)

    asyncio.run(on_the_loop())
