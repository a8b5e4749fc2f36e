"""Prepared statements for the hot paths: a SQLAlchemy Core statement compiled once per
dialect, then run straight on a pooled DB-API connection.

SQLAlchemy Core spent about 0.6 ms of a Get building, cache-keying and executing its two
statements and their transaction on the benchmark machine, for 24 µs of SQLite work; this
path takes 15 µs (docs/performance.md). A write transaction through an SQLAlchemy Connection
costs about 45 µs more than the same BEGIN IMMEDIATE ... COMMIT on the driver, and each Core
statement 30-60 µs more than the driver's execute. The statements are still written in Core
against the schema, so the SQL stays the one SQLAlchemy would send; only the per-call
machinery is skipped.

Two ways to run them:
- `PreparedQuery.first` (a read): one statement in the driver's autocommit mode reads one
  consistent snapshot, as a read transaction would. Any database error answers None, so that
  callers fall back on their ordinary path, which reports the error exactly as it always has.
- `write_retrying(db, work)`: `work` gets a `Statements` in a write transaction with the
  semantics of `Database.write` (SQLite: BEGIN IMMEDIATE; PostgreSQL: READ COMMITTED, row locks
  taken by the statements themselves), retried by `Database.write_retrying`'s rules. Driver
  errors are raised as the SQLAlchemy exceptions Core would raise (IntegrityError for the
  routing invariant's unique violation, OperationalError carrying a SQLSTATE such as 40001 or
  40P01), so the retry and the 503 answers follow the same rules as on the Core path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from enum import Enum
from operator import itemgetter
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from sqlalchemy import ColumnElement, Dialect, func
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.sql.expression import Executable

from chimeproxy.store.database import (
    TOO_MANY_CONFLICTS,
    WRITE_RETRIES,
    DatabaseUnavailable,
    WriteConflict,
    check_abandoned,
)

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.pool import PoolProxiedConnection

    from chimeproxy.store.database import Database

T = TypeVar("T")
# A statement, or a function building it for a dialect name (upserts and row locks differ).
Build = Executable | Callable[[str], Executable]


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    defaults: dict[str, Any]  # every bind's value as compiled (constants such as 'Closed')
    columns: tuple[str, ...]
    # The result conversions SQLAlchemy would apply (booleans on SQLite): (column, processor)
    # for the columns that have one; most statements have none.
    conversions: tuple[tuple[str, Callable[[Any], Any]], ...]
    # The positional arguments in bind order, picked from the named values (None: named style).
    pick: Callable[[Mapping[str, Any]], tuple[Any, ...]] | None = None

    def arguments(self, params: Mapping[str, Any]) -> Any:
        values = {**self.defaults, **params} if self.defaults else params
        return values if self.pick is None else self.pick(values)

    def check_unconverted(self) -> None:
        """Tuples straight from the driver are only right when no column needs converting."""
        if self.conversions:
            names = ", ".join(name for name, _ in self.conversions)
            raise TypeError(f"columns {names} need converting: read them as dict rows")

    def row(self, values: tuple[Any, ...]) -> dict[str, Any]:
        row = dict(zip(self.columns, values, strict=True))
        for name, process in self.conversions:
            value = row[name]
            if value is not None:
                row[name] = process(value)
        return row


class Prepared:
    """One statement, compiled lazily for each dialect it meets."""

    def __init__(self, build: Build) -> None:
        self.build = build
        self._compiled: dict[tuple[str, str], _Compiled] = {}

    def compiled(self, dialect: Dialect) -> _Compiled:
        key = (dialect.name, dialect.paramstyle)
        compiled = self._compiled.get(key)
        if compiled is None:
            statement = self.build if isinstance(self.build, Executable) else self.build(key[0])
            result = statement.compile(dialect=dialect)
            selected = list(getattr(statement, "exported_columns", ()))
            columns = tuple(column.key for column in selected)
            processors = [
                column.type.dialect_impl(dialect).result_processor(dialect, None)
                for column in selected
            ]
            conversions = tuple(
                (name, process)
                for name, process in zip(columns, processors, strict=True)
                if process is not None
            )
            positions = tuple(result.positiontup) if result.positional else None  # type: ignore[arg-type]
            # Constants as plain values: the drivers bind an Enum member (`'Closed'` written as
            # SessionStatus.CLOSED) as the str it is, but SQLite's driver first looks for an
            # adapter on its type, raising and clearing an AttributeError per bind.
            defaults = {
                name: value.value if isinstance(value, Enum) else value
                for name, value in result.params.items()
            }
            compiled = _Compiled(str(result), defaults, columns, conversions, _picker(positions))
            self._compiled[key] = compiled
        return compiled


def _picker(
    positions: tuple[str, ...] | None,
) -> Callable[[Mapping[str, Any]], tuple[Any, ...]] | None:
    """What picks the positional arguments from the named values, in C (`itemgetter`, which
    answers a lone value, not a tuple, for one name)."""
    if positions is None:
        return None
    if len(positions) == 1:
        name = positions[0]
        return lambda values: (values[name],)
    if not positions:
        return lambda values: ()
    return itemgetter(*positions)


# The label of a row's columns packed into one (`packed`).
PACKED = "packed"


def packed(dialect: str, *columns: ColumnElement[Any]) -> tuple[ColumnElement[Any], ...]:
    """`columns` to select, on SQLite packed into one JSON array that `first_values` unpacks.

    Python's SQLite driver builds a 7-tuple describing each column of every statement it runs,
    then a Python object per column fetched, each through several calls into SQLite: for a
    Get's 17 columns that was 60,000 instructions, three times SQLite's own work. One text
    column, unpacked by orjson, costs a fraction of that. Only for columns whose values JSON
    carries as they are (text, integers, NULL) and that need no conversion."""
    if dialect != "sqlite":
        return columns
    return (func.json_array(*columns).label(PACKED),)


class PreparedQuery(Prepared):
    """One SELECT whose first row is read outside any transaction."""

    def first_values(self, db: Database, params: Mapping[str, Any]) -> Sequence[Any] | None:
        """The first row's values (the driver's tuple, see `Statements.values`; a list when
        they came `packed`), or None when there is none or the driver fails."""
        dialect = db.engine.dialect
        compiled = self.compiled(dialect)
        compiled.check_unconverted()
        arguments = compiled.arguments(params)
        # The driver's own errors, and those the pool wraps (a failed connect, say).
        errors = (dialect.loaded_dbapi.Error, DBAPIError)
        try:
            row = db.first_row(compiled.sql, arguments)
        except errors:
            return None
        if row is not None and compiled.columns == (PACKED,):
            return orjson.loads(row[0])  # type: ignore[no-any-return]
        return row


class Statements:
    """Prepared statements run on one DB-API connection, inside the caller's transaction."""

    __slots__ = ("_connection", "_cursor", "_error", "_owned", "dialect")

    def __init__(
        self, connection: PoolProxiedConnection, dialect: Dialect, *, owned: bool = True
    ) -> None:
        """`owned`: the connection is this transaction's own (`write`), not an SQLAlchemy
        Connection's, which handles a lost connection itself."""
        self._connection = connection
        self._cursor = connection.cursor()
        self._error = dialect.loaded_dbapi.Error
        self._owned = owned
        self.dialect = dialect

    def _execute(self, prepared: Prepared, params: Mapping[str, Any]) -> _Compiled:
        compiled = prepared.compiled(self.dialect)
        arguments = compiled.arguments(params)
        try:
            self._cursor.execute(compiled.sql, arguments)
        except self._error as exc:
            raise self._wrap(exc, compiled.sql, arguments) from exc
        return compiled

    def rows(self, prepared: Prepared, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        compiled = self._execute(prepared, params)
        return [compiled.row(values) for values in self._fetch(self._cursor.fetchall)]

    def values(self, prepared: Prepared, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """The rows as the driver's tuples, in the statement's column order, without a dict per
        row: for pages read on hot paths, of columns that need no conversion."""
        compiled = self._execute(prepared, params)
        compiled.check_unconverted()
        return self._fetch(self._cursor.fetchall)  # type: ignore[no-any-return]

    def first(self, prepared: Prepared, params: Mapping[str, Any]) -> dict[str, Any] | None:
        compiled = self._execute(prepared, params)
        values = self._fetch(self._cursor.fetchone)
        if values is not None:
            self._fetch(self._cursor.fetchall)  # the rest, so the statement is done
        return None if values is None else compiled.row(values)

    def run(self, prepared: Prepared, params: Mapping[str, Any]) -> int:
        """Run a statement without results (or whose results do not matter); its row count."""
        self._execute(prepared, params)
        return int(self._cursor.rowcount)

    def changes(self) -> int:
        """Rows inserted, updated or deleted on this connection so far (SQLite's
        `total_changes`; a statement that failed counts none, having undone its own)."""
        return self._connection.dbapi_connection.total_changes  # type: ignore[union-attr]

    def sql(self, text: str) -> None:
        """A statement of the driver's (BEGIN IMMEDIATE)."""
        try:
            self._cursor.execute(text)
        except self._error as exc:
            raise self._wrap(exc, text, ()) from exc

    def _fetch(self, fetch: Callable[[], T]) -> T:
        try:
            return fetch()
        except self._error as exc:
            raise self._wrap(exc, "", ()) from exc

    def _wrap(self, exc: Exception, sql: str, arguments: Any) -> DBAPIError:
        """The driver's error as SQLAlchemy raises it (IntegrityError, OperationalError...):
        the callers' rules (retry, 503) are written for those. A lost connection is
        invalidated, so the pool does not hand it out again."""
        lost = self.dialect.is_disconnect(exc, self._connection, self._cursor)  # type: ignore[arg-type]
        if lost and self._owned:
            self._connection.invalidate(exc)
        return DBAPIError.instance(
            sql, arguments, exc, self._error, connection_invalidated=lost, dialect=self.dialect
        )

    def close(self) -> None:
        with suppress(self._error):
            self._cursor.close()


def statements(connection: Statements | Connection) -> Statements:
    """Prepared statements on `connection`, in its current transaction: the store's prepared
    functions take a transaction of this module's, or an SQLAlchemy Connection in one of
    `Database`'s (the SMS relay, the tests), whose driver connection then runs them."""
    if isinstance(connection, Statements):
        return connection
    return Statements(
        connection.connection,  # type: ignore[arg-type]
        connection.dialect,
        owned=False,
    )


@contextmanager
def write(db: Database) -> Iterator[Statements]:
    """A write transaction on a pooled DB-API connection, as `Database.write` opens one: SQLite
    takes the write lock with its first statement (BEGIN IMMEDIATE); PostgreSQL begins
    implicitly at the server's READ COMMITTED. Committed when the block ends, rolled back when
    it raises or when its caller stopped waiting (Database.run's deadline)."""
    begin = "BEGIN IMMEDIATE" if db.dialect == "sqlite" else None
    with _transaction(db, begin, writes=True) as statements:
        yield statements


@contextmanager
def read(db: Database) -> Iterator[Statements]:
    """A read-only transaction over one snapshot, as `Database.read` opens one (PostgreSQL:
    REPEATABLE READ READ ONLY, which never fails with a serialization error)."""
    begin = (
        "BEGIN"
        if db.dialect == "sqlite"
        else "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
    )
    with _transaction(db, begin, writes=False) as statements:
        yield statements


@contextmanager
def statement(db: Database) -> Iterator[Statements]:
    """Reads without a BEGIN: each statement sees a snapshot of its own (SQLite's autocommit;
    PostgreSQL's READ COMMITTED), which is all a read of one statement needs, for two
    statements fewer than `read`. Failures are classified and told to health as `read`'s."""
    with _transaction(db, None, writes=False) as statements:
        yield statements


@contextmanager
def _transaction(db: Database, begin: str | None, *, writes: bool) -> Iterator[Statements]:
    # The same guard as Database's transactions: failures classified and told to health.
    with db._guard(writing=writes), db.driver_connection() as connection:
        statements = Statements(connection, db.engine.dialect)
        try:
            if begin is not None:
                statements.sql(begin)
            yield statements
            if writes:
                check_abandoned()
            try:
                # On the driver's connection itself: the pool's proxy has no `commit` and
                # reaches it through `__getattr__`, which on Python 3.11 first raises and clears
                # an AttributeError inside C (about 2,000 instructions a transaction).
                connection.dbapi_connection.commit()  # type: ignore[union-attr]
            except statements._error as exc:
                raise statements._wrap(exc, "COMMIT", ()) from exc
            db.health.succeeded(wrote=writes)
        except BaseException:
            _rollback(connection, statements)
            raise
        finally:
            statements.close()


def _rollback(connection: PoolProxiedConnection, statements: Statements) -> None:
    if not connection.is_valid:
        return  # invalidated after a lost connection (`_wrap`): nothing left to roll back
    try:
        connection.dbapi_connection.rollback()  # type: ignore[union-attr]  (see commit above)
    except statements._error as exc:
        # A transaction may still be open on it: no one may use it again (the loop's kept
        # connection included, see Database.driver_connection).
        connection.invalidate(exc)


def write_retrying(db: Database, work: Callable[[Statements], T]) -> T:
    """`Database.write_retrying` for prepared statements: the same retry rules, around `write`."""
    return db.write_retrying(work, transaction=lambda: write(db))  # type: ignore[arg-type]


# Set in a task once it has waited for a batch (its own context: a request's task).
_waited_for_batch: ContextVar[bool] = ContextVar("waited_for_batch", default=False)


def waited_for_batch() -> bool:
    """Whether the current task has waited for a write batch. The batch's writers then resume
    together, in one turn of the loop, which is what a request's phases wait for
    (app.ChimeProxyApp.handle)."""
    return _waited_for_batch.get()


class WriteBatch:
    """Group commit for the writes SQLite runs on the event loop (`Database.inline`): the
    writes queued during one turn of the loop run in one transaction, and the commit is shared.
    A commit writes every page the transaction changed to the WAL, and concurrent writes change
    many of the same pages (the tail of a table and of its indexes): a `/route` in a batch of
    4-16 costs about 40 % less to write (docs/performance.md). No write waits for a batch to
    fill: the batch is what arrived while the loop was busy, and it runs at the end of that
    turn.

    Each write keeps `Database.write_retrying`'s meaning: a unique violation or a write
    conflict undoes the write and runs it again; another exception of the work (a refusal, a
    bug) undoes it and is that write's answer alone. The writes run as they are; only when one
    fails after changing rows is the transaction rolled back and the batch run again, each
    write in a SAVEPOINT of its own, so that it alone can be undone (`_write_one`). Database
    trouble (a full disk, a read-only file, a failed COMMIT) fails the whole batch, as it
    would have failed each write, and `health` is told once."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._queue: list[tuple[Callable[[Statements], Any], asyncio.Future[Any]]] = []

    async def write(self, work: Callable[[Statements], T], deadline: float | None = None) -> T:
        """Run `work` in the next batch; its result, or its exception. A database whose work
        runs in threads (PostgreSQL) has no batches: `work` runs there in a transaction of its
        own, `write_retrying`, within `deadline` (Database.run)."""
        if not self.db.inline:
            return await self.db.run(lambda: write_retrying(self.db, work), deadline)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append((work, future))
        if len(self._queue) == 1:
            loop.call_soon(self._run)
        try:
            return await future
        finally:
            _waited_for_batch.set(True)

    def _run(self) -> None:
        queue, self._queue = self._queue, []
        try:
            try:
                answers = self._transaction(queue, savepoints=False)
            except _WroteThenFailed:
                answers = self._transaction(queue, savepoints=True)
        except Exception as exc:
            for _, future in queue:
                if not future.done():
                    future.set_exception(_for_each(exc))
            return
        for future, error, result in answers:
            if future.done():  # its caller was cancelled
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

    def _transaction(
        self,
        queue: list[tuple[Callable[[Statements], Any], asyncio.Future[Any]]],
        *,
        savepoints: bool,
    ) -> list[tuple[asyncio.Future[Any], Exception | None, Any]]:
        with write(self.db) as run:
            return [
                (future, *_write_one(run, work, savepoint=savepoints)) for work, future in queue
            ]


class _WroteThenFailed(Exception):
    """A write of the batch failed after changing rows: its transaction is rolled back, and
    the batch runs again with each write in a SAVEPOINT of its own."""


def _write_one(
    run: Statements, work: Callable[[Statements], T], *, savepoint: bool
) -> tuple[Exception | None, Any]:
    """(None, result) or (the work's exception, None); database trouble is raised. A unique
    violation or a write conflict runs the work again, up to WRITE_RETRIES times.

    Without a `savepoint`, the common case (every write of the batch succeeds): a SAVEPOINT
    makes SQLite keep a copy of each page a write changes until it is released, and a `/route`
    cost about 3 % more with one (docs/performance.md). A write that fails before it has
    changed a row needs no undoing (a failed statement undoes its own changes); one that
    fails after changing rows raises _WroteThenFailed, since only a rollback can undo its
    part. In a SAVEPOINT, a failed write is rolled back to it."""
    before = run.changes()
    conflict: Exception | None = None
    for _ in range(WRITE_RETRIES):
        if savepoint:
            run.sql("SAVEPOINT batched")
        try:
            result = work(run)
        except (IntegrityError, WriteConflict) as exc:
            conflict = exc
            _undo(run, exc, savepoint=savepoint, changes_before=before)
        except DBAPIError:
            raise
        except Exception as exc:
            _undo(run, exc, savepoint=savepoint, changes_before=before)
            return exc, None
        else:
            if savepoint:
                run.sql("RELEASE batched")
            return None, result
    error = DatabaseUnavailable(TOO_MANY_CONFLICTS)
    error.__cause__ = conflict
    return error, None


def _undo(run: Statements, cause: Exception, *, savepoint: bool, changes_before: int) -> None:
    """Undo a failed write (see `_write_one`)."""
    if savepoint:
        run.sql("ROLLBACK TO batched")
        run.sql("RELEASE batched")
    elif run.changes() != changes_before:
        raise _WroteThenFailed from cause


def _for_each(exc: Exception) -> Exception:
    """A whole batch's failure for each waiting write: database trouble as its own object per
    write (one object raised in several tasks would collect all their tracebacks); anything
    else (a fault of this code) as it is, for each request's 500 and its log line."""
    if not isinstance(exc, DatabaseUnavailable):
        return exc
    copy = DatabaseUnavailable(str(exc), exc.cause)
    copy.__cause__ = exc.__cause__
    return copy
