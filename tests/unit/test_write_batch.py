"""Group commit on the event loop (`prepared.WriteBatch`): the writes of one turn share one
transaction, each keeps its own outcome, and database trouble fails them all, with nothing
committed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from chimeproxy.store import prepared
from chimeproxy.store.database import Database, DatabaseUnavailable


def names(db: Database) -> set[str]:
    with db.read() as connection:
        rows = connection.exec_driver_sql("SELECT name FROM server_settings").fetchall()
    return {row[0] for row in rows if row[0].startswith("t-")}


def insert(name: str) -> Any:
    def work(run: prepared.Statements) -> str:
        run.sql(f"INSERT INTO server_settings (name, value) VALUES ('{name}', 'x')")
        return name

    return work


def one_turn(db: Database, *works: Any) -> list[Any]:
    """Queue `works` in one turn of a new loop; each one's result or exception, in order."""

    async def main() -> list[Any]:
        db.keep_a_connection_for_this_thread()
        batch = prepared.WriteBatch(db)
        return await asyncio.gather(*(batch.write(w) for w in works), return_exceptions=True)

    return asyncio.run(main())


def counting_transactions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    opened: list[int] = []
    original = prepared.write

    def counted(db: Database) -> Any:
        opened.append(1)
        return original(db)

    monkeypatch.setattr(prepared, "write", counted)
    return opened


def test_the_writes_of_one_turn_share_one_transaction(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = counting_transactions(monkeypatch)

    assert one_turn(db, *(insert(f"t-{n}") for n in range(10))) == [f"t-{n}" for n in range(10)]
    assert len(opened) == 1
    assert names(db) == {f"t-{n}" for n in range(10)}


def test_a_write_that_fails_is_rolled_back_alone(db: Database) -> None:
    def refused(run: prepared.Statements) -> None:
        run.sql("INSERT INTO server_settings (name, value) VALUES ('t-refused', 'x')")
        raise ValueError("refused by the domain")

    first, second, third = one_turn(db, insert("t-a"), refused, insert("t-b"))
    assert (first, third) == ("t-a", "t-b")
    assert isinstance(second, ValueError)
    assert names(db) == {"t-a", "t-b"}


def test_a_unique_violation_is_retried_then_answered_503_alone(db: Database) -> None:
    attempts = 0

    def duplicate(run: prepared.Statements) -> None:
        nonlocal attempts
        attempts += 1
        run.sql("INSERT INTO server_settings (name, value) VALUES ('t-a', 'again')")

    first, second, third = one_turn(db, insert("t-a"), duplicate, insert("t-b"))
    assert (first, third) == ("t-a", "t-b")
    assert isinstance(second, DatabaseUnavailable)
    assert attempts > 1  # run again from its SAVEPOINT, as write_retrying would
    assert names(db) == {"t-a", "t-b"}


def test_database_trouble_fails_the_whole_batch_and_commits_nothing(db: Database) -> None:
    def broken(run: prepared.Statements) -> None:
        run.sql("INSERT INTO no_such_table VALUES (1)")

    answers = one_turn(db, insert("t-a"), broken, insert("t-b"))
    assert all(isinstance(answer, DatabaseUnavailable) for answer in answers)
    assert len({id(answer) for answer in answers}) == 3  # one object per waiting request
    assert names(db) == set()


def test_writes_of_a_later_turn_make_a_batch_of_their_own(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = counting_transactions(monkeypatch)

    async def main() -> None:
        db.keep_a_connection_for_this_thread()
        batch = prepared.WriteBatch(db)
        await batch.write(insert("t-first"))
        await batch.write(insert("t-second"))

    asyncio.run(main())
    assert len(opened) == 2
    assert names(db) == {"t-first", "t-second"}
