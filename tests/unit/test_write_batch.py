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


def recording_savepoints(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The SAVEPOINT statements batches run."""
    seen: list[str] = []
    original = prepared.Statements.sql

    def sql(self: prepared.Statements, text: str) -> None:
        if "SAVEPOINT" in text or "RELEASE" in text:
            seen.append(text)
        original(self, text)

    monkeypatch.setattr(prepared.Statements, "sql", sql)
    return seen


def counted(work: Any, runs: list[str]) -> Any:
    def run_counted(run: prepared.Statements) -> Any:
        runs.append(work.__name__)
        return work(run)

    run_counted.__name__ = work.__name__
    return run_counted


def test_a_batch_whose_writes_succeed_runs_them_once_without_savepoints(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    savepoints = recording_savepoints(monkeypatch)
    runs: list[str] = []
    works = [counted(insert(f"t-{n}"), runs) for n in range(5)]
    assert one_turn(db, *works) == [f"t-{n}" for n in range(5)]
    assert savepoints == []
    assert len(runs) == 5
    assert names(db) == {f"t-{n}" for n in range(5)}


def between_two_writes(
    db: Database, monkeypatch: pytest.MonkeyPatch, failing: Any
) -> tuple[list[Any], int, list[str], list[str]]:
    """`failing` queued between two good writes: the answers, the transactions opened, the
    works run (by name) and the SAVEPOINT statements."""
    savepoints = recording_savepoints(monkeypatch)
    opened = counting_transactions(monkeypatch)
    runs: list[str] = []
    works = (insert("t-a"), failing, insert("t-b"))
    answers = one_turn(db, *(counted(work, runs) for work in works))
    assert (answers[0], answers[2]) == ("t-a", "t-b") and isinstance(answers[1], ValueError)
    assert names(db) == {"t-a", "t-b"}
    return answers, len(opened), runs, savepoints


def test_a_write_refused_before_it_changed_anything_is_answered_without_a_second_pass(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(run: prepared.Statements) -> None:
        run.sql("SELECT name FROM server_settings")
        raise ValueError("refused by the domain")

    _, opened, runs, savepoints = between_two_writes(db, monkeypatch, refused)
    assert savepoints == [] and opened == 1 and len(runs) == 3


def test_a_write_that_failed_after_changing_rows_sends_the_batch_round_in_savepoints(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a rollback undoes its rows: the first transaction is rolled back, and every write
    runs again in a SAVEPOINT of its own; the others' rows are committed once."""

    def half_done(run: prepared.Statements) -> None:
        run.sql("INSERT INTO server_settings (name, value) VALUES ('t-half', 'x')")
        raise ValueError("failed after writing")

    _, opened, runs, savepoints = between_two_writes(db, monkeypatch, half_done)
    assert opened == 2
    assert runs == ["work", "half_done", "work", "half_done", "work"]
    assert savepoints.count("SAVEPOINT batched") == 3


def test_a_conflict_after_changing_rows_is_retried_in_a_savepoint(db: Database) -> None:
    attempts = 0

    def conflicting(run: prepared.Statements) -> str:
        nonlocal attempts
        attempts += 1
        run.sql(f"INSERT INTO server_settings (name, value) VALUES ('t-try-{attempts}', 'x')")
        if attempts < 3:
            run.sql("INSERT INTO server_settings (name, value) VALUES ('t-a', 'again')")
        return "done"

    first, second = one_turn(db, insert("t-a"), conflicting)
    assert (first, second) == ("t-a", "done")
    # First pass: failed after its first row; second pass, in a savepoint: once more, then
    # it succeeds; only that attempt's row stays.
    assert attempts == 3
    assert names(db) == {"t-a", "t-try-3"}


def test_a_task_that_waited_for_a_batch_knows_it_and_no_other_does(db: Database) -> None:
    """What a request's phases read (app.ChimeProxyApp.handle): set in the writer's own task."""

    async def main() -> tuple[bool, bool, bool]:
        db.keep_a_connection_for_this_thread()
        batch = prepared.WriteBatch(db)

        async def writer() -> bool:
            before = prepared.waited_for_batch()
            await batch.write(insert("t-a"))
            return not before and prepared.waited_for_batch()

        async def bystander() -> bool:
            await asyncio.sleep(0)
            return prepared.waited_for_batch()

        waited, other = await asyncio.gather(writer(), bystander())
        return waited, other, prepared.waited_for_batch()

    assert asyncio.run(main()) == (True, False, False)
