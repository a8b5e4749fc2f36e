"""Two processes opening the same new SQLite file at once (two servers started together): both
switch it to WAL, and SQLite may answer the second 'database is locked' at once instead of
waiting; `enable_wal` tries again (store/database.py)."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from chimeproxy.store.database import Database, enable_wal

PAIRS = 20


class _Cursor:
    """A cursor whose first `failures` executions raise `error`."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.executed: list[str] = []

    def execute(self, sql: str) -> None:
        self.executed.append(sql)
        if len(self.executed) <= self.failures:
            raise self.error


def _sqlite_error(code: int, message: str) -> sqlite3.OperationalError:
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code  # type: ignore[attr-defined]
    return error


@pytest.mark.parametrize("code", [sqlite3.SQLITE_BUSY, 261])  # 261: SQLITE_BUSY_RECOVERY
def test_a_busy_answer_is_tried_again(code: int) -> None:
    cursor = _Cursor(2, _sqlite_error(code, "database is locked"))
    enable_wal(cursor, patience_s=5)
    assert cursor.executed == ["PRAGMA journal_mode=WAL"] * 3


def test_other_errors_and_a_busy_answer_past_the_patience_are_raised() -> None:
    readonly = _Cursor(1, _sqlite_error(8, "attempt to write a readonly database"))
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        enable_wal(readonly, patience_s=5)
    assert len(readonly.executed) == 1
    busy = _Cursor(10**6, _sqlite_error(sqlite3.SQLITE_BUSY, "database is locked"))
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        enable_wal(busy, patience_s=0.05)
    assert 1 < len(busy.executed) < 50


def _open(path: str, barrier: Any, answers: Any) -> None:
    barrier.wait()
    try:
        database = Database(f"sqlite:///{path}", log_failures=False)
        database.upgrade()
        database.token_key()
        database.dispose()
        answers.put(None)
    except Exception as exc:  # reported to the test, whatever it is
        answers.put(f"{type(exc).__name__}: {exc} (cause: {exc.__cause__!r})")


def test_two_processes_opening_a_new_database_together_both_succeed(tmp_path: Path) -> None:
    """Before the retry, about one pair in 40 failed; 20 pairs all succeed now."""
    context = multiprocessing.get_context("fork")
    failures = []
    for index in range(PAIRS):
        path = str(tmp_path / f"fresh{index}.db")
        barrier, answers = context.Barrier(2), context.Queue()
        processes = [context.Process(target=_open, args=(path, barrier, answers)) for _ in "ab"]
        for process in processes:
            process.start()
        for process in processes:
            process.join(60)
        failures += [answer for answer in (answers.get(timeout=5) for _ in processes) if answer]
    assert failures == []
