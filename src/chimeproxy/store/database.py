"""Engine, connection settings, transactions and migrations for SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from chimeproxy.protocol.errors import ServiceUnavailableException
from chimeproxy.store.schema import server_settings

T = TypeVar("T")
MIGRATIONS = Path(__file__).with_name("migrations")
WRITE_RETRIES = 20


class Database:
    """One engine per process; SQLite in WAL mode or PostgreSQL with a connection pool."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "NORMAL") -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            self.engine = _sqlite_engine(url, sqlite_synchronous)
        elif self.dialect == "postgresql":
            if parsed.drivername == "postgresql":
                parsed = parsed.set(drivername="postgresql+psycopg")
            self.engine = create_engine(
                parsed, pool_size=10, max_overflow=20, pool_pre_ping=True, pool_timeout=10
            )
        else:
            raise ValueError(f"unsupported database URL scheme: {parsed.drivername}")

    def describe(self) -> str:
        """The database as shown in health answers and logs: engine and location, no password."""
        return make_url(self.url).render_as_string(hide_password=True)

    def upgrade(self) -> None:
        """Apply every migration not applied yet."""
        with self.engine.begin() as connection:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def pending_migrations(self) -> list[str]:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        head = ScriptDirectory.from_config(config).get_current_head()
        with self.engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
        return [] if current == head else [str(head)]

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self._guard(), self.engine.connect() as connection, connection.begin():
            yield connection

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with (
            self._guard(),
            self.engine.connect().execution_options(immediate=True) as connection,
            connection.begin(),
        ):
            yield connection

    def write_retrying(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in a write transaction, again from the start when a unique constraint
        shows that a concurrent writer won (the database, not this process, arbitrates)."""
        for attempt in range(WRITE_RETRIES):
            try:
                with self.write() as connection:
                    return work(connection)
            except IntegrityError:
                if attempt == WRITE_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except IntegrityError:
            raise
        except OperationalError as exc:
            raise ServiceUnavailableException(
                "The database is unavailable or busy; retry the request."
            ) from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise ServiceUnavailableException(
                    "The database connection was lost; retry the request."
                ) from exc
            raise

    def setting(self, name: str, default: Callable[[], str]) -> str:
        """A server-wide setting, created once by whichever process asks first."""
        with self.read() as connection:
            value = connection.scalar(
                select(server_settings.c.value).where(server_settings.c.name == name)
            )
        if value is not None:
            return value
        try:
            with self.write() as connection:
                connection.execute(server_settings.insert().values(name=name, value=default()))
        except IntegrityError:
            pass
        with self.read() as connection:
            return connection.scalar(
                select(server_settings.c.value).where(server_settings.c.name == name)
            )

    def token_key(self) -> bytes:
        return bytes.fromhex(self.setting("token_key", lambda: secrets.token_hex(32)))

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_engine(url: str, synchronous: str) -> Engine:
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def configure(dbapi_connection: Any, _record: Any) -> None:
        # Autocommit at the driver so that transactions begin exactly as below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def begin(connection: Connection) -> None:
        # Writers take the write lock up front, so two processes never deadlock upgrading a
        # read lock; readers see one snapshot for the whole transaction.
        immediate = connection.get_execution_options().get("immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine
