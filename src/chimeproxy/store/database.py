"""Engine, connection settings, transactions and migrations for SQLite and PostgreSQL.

Concurrency is arbitrated by the database, never by locks in this process, so any number of
processes on any number of hosts may share one database:

- SQLite: WAL mode; writers begin with BEGIN IMMEDIATE, so writers (of every process on the host)
  queue for the one write lock and never interleave.
- PostgreSQL: writers run at READ COMMITTED, each statement sees what other transactions have
  committed, and unique constraints arbitrate races: the loser's INSERT waits for the winner's
  commit, then fails with a unique violation and `write_retrying` runs the whole transaction again
  (now seeing the winner's rows). Reads run as REPEATABLE READ READ ONLY: one snapshot per request
  as with SQLite, and a read-only snapshot never fails with a serialization error.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import random
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.pool import PoolProxiedConnection

from chimeproxy.store.health import Cause, DatabaseHealth, Failure
from chimeproxy.store.schema import server_settings

T = TypeVar("T")
log = logging.getLogger("chimeproxy.database")
MIGRATIONS = Path(__file__).with_name("migrations")
WRITE_RETRIES = 20
TOO_MANY_CONFLICTS = "Too many concurrent writers competed for the same rows; retry the request."
SQLITE_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
# PostgreSQL SQLSTATEs after which the whole transaction may simply run again: serialization
# failure and deadlock detected (the database rolled the transaction back, nothing was written).
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
# Any 64-bit number, the same in every process: migrations take this advisory lock so that
# processes starting together on a fresh database upgrade it one after the other.
MIGRATION_LOCK = 0x63686D70_726F7879  # "chmproxy"

# Bounds on every PostgreSQL wait, so that a lost or stuck database answers 503, never a hang:
# connecting; a statement (lock waits included); a transaction left open by a frozen client
# (its locks would block everyone); a peer that vanished without closing (TCP keepalives and
# unacknowledged data).
PG_CONNECT_TIMEOUT_S = 5
PG_STATEMENT_TIMEOUT_MS = 15_000
PG_IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000
PG_TCP_USER_TIMEOUT_MS = 15_000
PG_POOL_TIMEOUT_S = 5
# The longest a request waits for database work done in a worker thread before it answers 503
# anyway: the last bound, for a database server that is frozen (its host keeps the connections
# open, so no timeout above fires). Twice the statement timeout, so that it never cuts short
# work that the database would still finish (the server's --db-deadline, settings.py).
DEFAULT_DEADLINE_S = 2 * PG_STATEMENT_TIMEOUT_MS / 1000
# Connections each process keeps to PostgreSQL for its handlers (--db-pool-size), and beyond
# them for work outside the handler threads (start-up), plus the health probe's own.
DEFAULT_POOL_SIZE = 10
POOL_OVERFLOW = 2
PROBE_CONNECTIONS = 1
# SQLite's pool when its file is opened by several threads (SQLAlchemy's default for files).
SQLITE_POOL_SIZE, SQLITE_POOL_OVERFLOW = 5, 10
# Files a connection holds open: PostgreSQL a socket; SQLite the database, its WAL and its
# shared-memory index.
FILES_PER_CONNECTION = {"postgresql": 1, "sqlite": 3}
# How often the health probe asks the database, on its own connection and thread.
PROBE_INTERVAL_S = 1.0
# The probe's SQLite connection gives up waiting for the write lock sooner than handlers do: a
# probe stuck behind a long write would say nothing for 30 s.
PROBE_SQLITE_BUSY_TIMEOUT_MS = 1000
# What a client is told for each cause (the log has the database's own words).
_UNAVAILABLE_MESSAGES = {
    Cause.DISK_FULL: "The database cannot store the change: its disk is full.",
    Cause.READ_ONLY: "The database is read-only: the change cannot be stored.",
    Cause.UNAVAILABLE: "The database is unavailable; retry the request.",
    Cause.TIMEOUT: "The database is busy; retry the request.",
    Cause.OTHER: "The database is unavailable or busy; retry the request.",
}


def database_files(url: str, pool_size: int) -> int:
    """The most files a process's database connections hold open (pool, overflow, probe)."""
    if make_url(url).get_backend_name() == "sqlite":
        connections = SQLITE_POOL_SIZE + SQLITE_POOL_OVERFLOW + PROBE_CONNECTIONS
        return connections * FILES_PER_CONNECTION["sqlite"]
    connections = pool_size + POOL_OVERFLOW + PROBE_CONNECTIONS
    return connections * FILES_PER_CONNECTION["postgresql"]


class WriteConflict(Exception):
    """A row the transaction relied on was changed by a concurrent writer: run it again."""


class DatabaseUnavailable(Exception):
    """The database did not do the work, and a retry may succeed (unreachable, busy, too slow,
    a lost connection, a full disk, a read-only file); the message says which, for the HTTP
    layer's 503 answer, and `cause` classifies it."""

    def __init__(self, message: str, cause: Cause | None = None) -> None:
        super().__init__(message)
        self.cause = cause

    @property
    def detail(self) -> str:
        """The database's own words for what went wrong (the driver's first line), for logs
        and the command line; the message when there are none."""
        cause = getattr(self.__cause__, "orig", None) or self.__cause__ or self
        text = str(cause).strip()
        return text.splitlines()[0] if text else type(cause).__name__

    @property
    def reason(self) -> str:
        """The cause and the database's own words, for one line at start-up."""
        if self.cause is None or self.cause is Cause.OTHER:
            return self.detail
        return f"{self.cause.words}: {self.detail}"


class DatabaseConfigurationError(ValueError):
    """The database cannot be used as configured (a driver is missing); the message says what
    to do."""


class Database:
    """One engine per process; SQLite in WAL mode or PostgreSQL with a connection pool."""

    def __init__(
        self,
        url: str,
        *,
        sqlite_synchronous: str = "NORMAL",
        pool_size: int = DEFAULT_POOL_SIZE,
        threads: int | None = None,
        count_failure: Callable[[str], None] | None = None,
        log_failures: bool = True,
    ) -> None:
        """`pool_size`: PostgreSQL connections kept for handlers; `threads`: how many pieces of
        work `run` does at once in threads (default: one per pooled connection);
        `count_failure`: counts each failure by cause (the metrics); `log_failures`: False
        for commands that print a failure themselves."""
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        # Engines over the same database: the handlers' pool, and the health probe's own.
        self._new_engine: Callable[..., Engine]
        if self.dialect == "sqlite":
            synchronous = sqlite_synchronous.upper()
            if synchronous not in SQLITE_SYNCHRONOUS:
                raise ValueError(
                    f"SQLite synchronous must be one of {', '.join(SQLITE_SYNCHRONOUS)}, "
                    f"not {sqlite_synchronous!r}"
                )
            self._new_engine = lambda size, overflow, busy_ms=30_000: _sqlite_engine(
                url, synchronous, size, overflow, busy_ms
            )
            self.engine = self._new_engine(SQLITE_POOL_SIZE, SQLITE_POOL_OVERFLOW)
        elif self.dialect == "postgresql":
            try:
                self.engine = _postgresql_engine(parsed, pool_size, POOL_OVERFLOW)
            except ImportError as exc:
                raise DatabaseConfigurationError(
                    "PostgreSQL needs the psycopg driver, which is not installed: "
                    "pip install 'chimeproxy[postgres]'"
                ) from exc
            self._new_engine = lambda size, overflow, busy_ms=0: _postgresql_engine(
                parsed, size, overflow
            )
        else:
            raise ValueError(f"unsupported database URL scheme: {parsed.drivername}")
        self.threads = threads or pool_size
        # Work in threads runs here, not in the event loop's default executor (min(32, cores
        # + 4) threads, shared with everything else): a process serves as many requests at once
        # as it has threads, and each thread holds at most one pooled connection.
        self._executor: ThreadPoolExecutor | None = None
        self.health = DatabaseHealth(
            self.describe(), count_failure, logger=log if log_failures else None
        )
        self._probe: _Probe | None = None
        self._loop_connection = _LoopConnection()

    def describe(self) -> str:
        """The database as shown in health answers and logs: engine and location, no password."""
        return make_url(self.url).render_as_string(hide_password=True)

    def upgrade(self) -> None:
        """Apply every migration not applied yet; safe when several processes start at once.
        A database already at the latest schema is only read (so a read-only one starts)."""
        if not self.pending_migrations():
            return
        with (
            self._guard(writing=True),
            self._connect(immediate=True) as connection,
            connection.begin(),
        ):
            if self.dialect == "postgresql":
                # DDL is transactional in PostgreSQL: the second process waits here, then finds
                # the schema at head and does nothing. A long migration must not be cut short.
                connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            config = _alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def pending_migrations(self) -> list[str]:
        head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
        with self._guard(), self.engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
        return [] if current == head else [str(head)]

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction over one snapshot."""
        with self._guard(), self._connect(read_only=True) as connection, connection.begin():
            yield connection
        self.health.succeeded(wrote=False)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (SQLite: holding the write lock from its first statement)."""
        with (
            self._guard(writing=True),
            self._connect(immediate=True) as connection,
            connection.begin(),
        ):
            yield connection
            check_abandoned()
        self.health.succeeded(wrote=True)

    def write_retrying(
        self,
        work: Callable[[Any], T],
        *,
        transaction: Callable[[], AbstractContextManager[Any]] | None = None,
    ) -> T:
        """Run `work` in a write transaction, again from the start when a unique constraint
        shows that a concurrent writer won, or when PostgreSQL rolled the transaction back to
        resolve a deadlock or serialization conflict (the database, not this process,
        arbitrates). `work` must have no effect outside the transaction. `transaction`: another
        kind of write transaction than `write` (store/prepared.py runs on the driver's
        connection), with the same rules."""
        begin = transaction or self.write
        for attempt in range(WRITE_RETRIES):
            try:
                with begin() as connection:
                    return work(connection)
            except (IntegrityError, WriteConflict, DatabaseUnavailable) as exc:
                if not _retryable(exc):
                    raise
                if attempt == WRITE_RETRIES - 1:
                    raise DatabaseUnavailable(TOO_MANY_CONFLICTS) from exc
                log.debug("write conflict, retrying", extra={"attempt": attempt + 1})
                # A little jitter so that the losers of one race do not all collide again.
                time.sleep(random.uniform(0, 0.001 * (attempt + 1)))
        raise AssertionError("unreachable")

    @property
    def inline(self) -> bool:
        """SQLite answers in microseconds from a local file, and one write lock serializes its
        writers anyway, so its work runs on the event loop; a network database's round trips
        run in worker threads over the pool."""
        return self.dialect == "sqlite"

    async def run(
        self, work: Callable[[], T], deadline: float | None = None, *, background: bool = False
    ) -> T:
        """Run database work for a caller on the event loop: the one rule for every request
        handler, data-plane endpoint and background task.

        SQLite work runs inline (see `inline`), except `background` work, long enough to stall
        the loop: a sweep (which may hold the write lock), the metrics' counts over whole indexes, a
        console page. Work in a thread that has not finished within `deadline` seconds raises
        DatabaseUnavailable; work still queued then never starts, and work already running goes
        on in its thread (a stuck database call cannot be interrupted) but its write transaction
        rolls back instead of committing, so nothing is committed after its caller was told it
        failed. Only a deadline passing during
        the COMMIT itself leaves the outcome unknown, as with any connection lost mid-commit."""
        if self.inline and not background:
            return work()
        abandoned = threading.Event()
        context = contextvars.copy_context()  # as asyncio.to_thread does
        context.run(_abandoned.set, abandoned)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="chimeproxy-db")
        future = asyncio.get_running_loop().run_in_executor(self._executor, context.run, work)
        try:
            return await asyncio.wait_for(future, deadline)
        except TimeoutError as exc:
            abandoned.set()
            self.health.record(
                Failure(Cause.TIMEOUT, f"no answer within the deadline of {deadline:g} s"),
                writing=False,
            )
            raise DatabaseUnavailable(
                "The database did not answer in time; retry the request.", Cause.TIMEOUT
            ) from exc

    def keep_a_connection_for_this_thread(self) -> None:
        """Called on the event loop at start-up: SQLite's inline work (`run`) then takes one
        connection kept for the loop instead of a pool checkout and check-in per transaction
        (about 8 µs of a 75 µs Get), and always the same one, whose statement and page caches
        stay warm. Other threads (sweeps, commands, the tests) keep using the pool."""
        if self.inline:
            self._loop_connection.thread = threading.get_ident()
            self._loop_connection.loop = asyncio.get_running_loop()

    @contextmanager
    def driver_connection(self) -> Iterator[PoolProxiedConnection]:
        """A DB-API connection for one statement or transaction (store/prepared.py): the
        loop's kept connection when this is the loop and it is free, else one from the pool,
        returned afterwards. The caller leaves no transaction open. A failed connect is
        raised as SQLAlchemy's `Engine.connect` raises it (the pool hands the driver's own
        error on), for the 503 rules."""
        connection = self._take_kept()
        if connection is not None:
            try:
                yield connection
            finally:
                self._loop_connection.in_use = False
            return
        connection = _pooled(self.engine)
        try:
            yield connection
        finally:
            connection.close()

    def first_row(self, sql: str, arguments: Any) -> tuple[Any, ...] | None:
        """The first row of one statement, run outside any transaction on the connection
        `driver_connection` would lend. Every Get's only statement: on the loop's kept
        connection it runs without the context manager's generator around it."""
        connection = self._take_kept()
        if connection is not None:
            try:
                # SQLite's own shortcut: a cursor made, run and read in one call.
                return connection.dbapi_connection.execute(sql, arguments).fetchone()  # type: ignore[no-any-return,union-attr]
            finally:
                self._loop_connection.in_use = False
        with self.driver_connection() as pooled:
            cursor = pooled.cursor()
            try:
                cursor.execute(sql, arguments)
                return cursor.fetchone()  # type: ignore[no-any-return]
            finally:
                cursor.close()

    def _take_kept(self) -> PoolProxiedConnection | None:
        """The loop's kept connection, now in use, when this is the loop and it is free."""
        kept = self._loop_connection
        if kept.thread == threading.get_ident() and not kept.in_use:
            return kept.take(self.engine)
        return None

    def ping(self) -> None:
        """Raise DatabaseUnavailable unless the database answers a query."""
        with self.read() as connection:
            connection.exec_driver_sql("SELECT 1")

    def start_probe(self, interval: float = PROBE_INTERVAL_S) -> None:
        """Keep `health` current from a thread and a connection of its own (see _Probe)."""
        if self._probe is None:
            self._probe = _Probe(self, interval)
            self._probe.start()

    @contextmanager
    def _guard(self, *, writing: bool = False, probe: bool = False) -> Iterator[None]:
        """Database trouble that a retry or the operator may cure becomes DatabaseUnavailable,
        classified by cause, counted and logged (once per cause) in `health`."""
        try:
            yield
        except IntegrityError:
            raise
        except (DBAPIError, PoolTimeoutError) as exc:
            if _retryable(exc):
                # A conflict the database resolved by rolling back: write_retrying runs the
                # transaction again; nothing is wrong with the database.
                raise DatabaseUnavailable(_UNAVAILABLE_MESSAGES[Cause.OTHER]) from exc
            failure = self.health.failed(exc, writing=writing, probe=probe)
            if failure.cause is Cause.READ_ONLY:
                self._reopen()
            transient = isinstance(exc, OperationalError | InterfaceError | PoolTimeoutError)
            lost = isinstance(exc, DBAPIError) and exc.connection_invalidated
            if transient or lost or failure.cause is not Cause.OTHER:
                message = _UNAVAILABLE_MESSAGES[failure.cause]
                if isinstance(exc, PoolTimeoutError):
                    message = "Every database connection is busy; retry the request."
                elif lost:
                    message = "The database connection was lost; retry the request."
                raise DatabaseUnavailable(message, failure.cause) from exc
            raise

    def _reopen(self) -> None:
        """After a read-only failure, every connection of the process is closed so that the
        next ones open the database anew: SQLite keeps a file that was read-only when its first
        connection opened it read-only for every connection of the process until the last
        closes; PostgreSQL may reach the new primary after a failover."""
        self._loop_connection.reopen()
        self.engine.dispose()
        if self._probe is not None:
            self._probe.engine.dispose()

    def _connect(self, *, immediate: bool = False, read_only: bool = False) -> Connection:
        connection = self.engine.connect()
        if self.dialect == "sqlite":
            return connection.execution_options(immediate=immediate)
        if read_only:
            return connection.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
        return connection

    def setting(self, name: str, default: Callable[[], str]) -> str:
        """A server-wide setting, created once by whichever process asks first: every process
        gets the same value however many start at once (the primary key arbitrates)."""
        query = select(server_settings.c.value).where(server_settings.c.name == name)
        with self.read() as connection:
            value = connection.scalar(query)
        if value is not None:
            return value
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        with self.write() as connection:
            # A concurrent first insert makes this one wait for it, then do nothing; the read
            # that follows (a new snapshot at READ COMMITTED) sees the winner's value.
            connection.execute(
                insert(server_settings)
                .values(name=name, value=default())
                .on_conflict_do_nothing(index_elements=["name"])
            )
            return connection.scalar(query)

    def token_key(self) -> bytes:
        return bytes.fromhex(self.setting("token_key", lambda: secrets.token_hex(32)))

    def dispose(self) -> None:
        if self._probe is not None:
            self._probe.stop()
            self._probe = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self._loop_connection.release()
        self.engine.dispose()


def _pooled(engine: Engine) -> PoolProxiedConnection:
    error = engine.dialect.loaded_dbapi.Error
    try:
        return engine.raw_connection()
    except error as exc:
        raise DBAPIError.instance(None, None, exc, error, dialect=engine.dialect) from exc


class _LoopConnection:
    """The pooled connection the event loop keeps checked out for SQLite's inline work
    (`Database.keep_a_connection_for_this_thread`). Replaced when it was invalidated (a lost
    connection) and when the database was reopened (`_reopen` bumps `generation`: the file
    must be opened anew by every connection)."""

    def __init__(self) -> None:
        self.thread: int | None = None  # the loop's thread; None: nothing is kept
        self.loop: asyncio.AbstractEventLoop | None = None
        self.in_use = False  # a transaction on it is running (a nested one takes the pool's)
        self.generation = 0
        self._connection: PoolProxiedConnection | None = None
        self._generation = 0

    def take(self, engine: Engine) -> PoolProxiedConnection:
        connection = self._connection
        if connection is None or not connection.is_valid or self._generation != self.generation:
            self.release(discard=self._generation != self.generation)
            self._generation = self.generation
            connection = self._connection = _pooled(engine)
        self.in_use = True
        return connection

    def reopen(self) -> None:
        """The database must be opened anew: the kept connection is closed by the loop's
        thread (its owner) at once if it is idle, at its next use otherwise. At once matters
        when no request comes: while one connection keeps the file open read-only, the health
        probe's new connections would find it read-only too."""
        self.generation += 1
        if self.loop is None:
            return
        if threading.get_ident() == self.thread:
            self._release_if_stale()
        else:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                self.loop.call_soon_threadsafe(self._release_if_stale)

    def _release_if_stale(self) -> None:
        if not self.in_use and self._generation != self.generation:
            self.release(discard=True)

    def release(self, *, discard: bool = False) -> None:
        """Give the connection back to the pool; `discard`: close it for good (invalidated),
        since the pool it came from may have been disposed since."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                if discard:
                    connection.invalidate()
                else:
                    connection.close()


class _Probe(threading.Thread):
    """Asks the database every `interval` seconds, over a connection of its own, never the
    handlers' pool or threads: a trivial read while all is well; while writes fail, a real
    write (one row of server_settings), so that health turns ok again by itself once the
    disk has room or the file is writable, with no client traffic needed."""

    def __init__(self, database: Database, interval: float) -> None:
        super().__init__(name="chimeproxy-health-probe", daemon=True)
        self.database = database
        self.interval = interval
        self.engine = database._new_engine(1, 0, PROBE_SQLITE_BUSY_TIMEOUT_MS)
        self._stopping = threading.Event()
        self._writes = itertools.count()

    def run(self) -> None:
        while not self._stopping.wait(self.interval):
            self.probe()

    def stop(self) -> None:
        self._stopping.set()
        self.engine.dispose()

    def probe(self) -> None:
        database, health = self.database, self.database.health
        writing = health.writes_failing
        health.probe_started = health.clock()
        try:
            # A database failure is classified, counted and logged by _guard; only a success
            # is left to record here.
            with (
                contextlib.suppress(DatabaseUnavailable, DBAPIError),
                database._guard(writing=writing, probe=True),
                self.engine.connect() as connection,
            ):
                connection = connection.execution_options(immediate=writing)
                with connection.begin():
                    if writing:
                        _write_probe(connection, database.dialect, next(self._writes))
                    else:
                        connection.exec_driver_sql("SELECT 1")
                health.succeeded(wrote=writing)
        except Exception as exc:  # never let the probe thread die: the next round tries again
            health.episodes.occurred("probe", f"health probe failed unexpectedly: {exc!r}")
        finally:
            health.probe_started = None


def _write_probe(connection: Connection, dialect: str, number: int) -> None:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(server_settings).values(name="health_write_probe", value=str(number))
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=["name"], set_={"value": statement.excluded.value}
        )
    )


# Set by Database.run for the work it runs in a thread: whether its caller stopped waiting.
_abandoned: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "chimeproxy_abandoned", default=None
)


def check_abandoned() -> None:
    """Raise DatabaseUnavailable when the caller of this write stopped waiting (see
    `Database.run`) and answered 503: the write rolls back rather than commit a change its client
    was told did not happen."""
    abandoned = _abandoned.get()
    if abandoned is not None and abandoned.is_set():
        log.warning("rolled back a write whose caller stopped waiting at its deadline")
        raise DatabaseUnavailable(
            "The database did not answer in time; retry the request.", Cause.TIMEOUT
        )


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, IntegrityError | WriteConflict):
        return True
    cause = exc.__cause__
    sqlstate = getattr(getattr(cause, "orig", None), "sqlstate", None)
    return sqlstate in RETRYABLE_SQLSTATES


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _postgresql_engine(url: URL, pool_size: int, max_overflow: int) -> Engine:
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    options = (
        f"-c statement_timeout={PG_STATEMENT_TIMEOUT_MS} "
        f"-c idle_in_transaction_session_timeout={PG_IDLE_IN_TRANSACTION_TIMEOUT_MS}"
    )
    connect_args: dict[str, Any] = {
        "connect_timeout": PG_CONNECT_TIMEOUT_S,
        "options": options,
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "tcp_user_timeout": PG_TCP_USER_TIMEOUT_MS,
        "application_name": "chimeproxy",
    }
    # Parameters given in the URL (e.g. ?connect_timeout=2) win over these defaults.
    for key in url.query:
        connect_args.pop(key, None)
    return create_engine(
        url,
        connect_args=connect_args,
        # Database.run's threads each hold at most one connection (--db-threads defaults to
        # --db-pool-size); the overflow is for start-up work outside those threads.
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=PG_POOL_TIMEOUT_S,
        # A connection the database dropped (restart, pg_terminate_backend, failover) is noticed
        # when it is taken from the pool, and replaced, instead of failing a request.
        pool_pre_ping=True,
        pool_recycle=1800,
    )


# Python 3.11's sqlite3 binds only exact int, float, str and bytearray values directly. Any other
# value, None included, first goes through its adapter look-up, which asks the driver's
# protocol type for `__adapt__`: a missing attribute on a type raises an AttributeError inside
# C, formatted and then cleared (about 390 ns a bind; Python 3.12 no longer raises there). A
# `/route` binds eight NULLs in its interaction's row. Registered adapters are looked up first,
# so None and bool get adapters of their own, each the conversion the driver makes anyway:
# None stays None (`{}.get` is a C callable that answers None, without a Python frame) and a
# bool binds as its int. These are per process and apply to every SQLite connection.
sqlite3.register_adapter(type(None), {}.get)
sqlite3.register_adapter(bool, int)


# How long to wait between attempts at switching a database that another process is switching.
WAL_RETRY_S = 0.01


def enable_wal(cursor: Any, patience_s: float) -> None:
    """Put the database in WAL mode (a no-op once it is). Two processes opening a new database
    file at the same moment both switch it, and SQLite may answer the second 'database is
    locked' at once, without its busy timeout (seen about once in 40 starts of two servers on a
    fresh file): that is tried again for up to `patience_s`; any other error is raised."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            # SQLITE_BUSY, or one of its extended codes (the low byte is the primary code).
            busy = (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() >= deadline:
                raise
        time.sleep(WAL_RETRY_S)


def _sqlite_engine(
    url: str, synchronous: str, pool_size: int, max_overflow: int, busy_timeout_ms: int
) -> Engine:
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
        pool_size=pool_size,
        max_overflow=max_overflow,
    )

    @event.listens_for(engine, "connect")
    def configure(dbapi_connection: Any, _record: Any) -> None:
        # Autocommit at the driver so that transactions begin exactly as below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        enable_wal(cursor, busy_timeout_ms / 1000)
        # NORMAL (default): a commit survives the process being killed, since it is in the WAL
        # file before COMMIT returns; the last commits may be lost on power failure or an OS
        # crash. FULL also syncs the WAL at every commit: power-loss safe, slower writes.
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def begin(connection: Connection) -> None:
        # Writers take the write lock up front, so two processes never deadlock upgrading a
        # read lock; readers see one snapshot for the whole transaction.
        immediate = connection.get_execution_options().get("immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine
