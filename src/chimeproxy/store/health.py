"""What the database is doing, known without asking it at the moment someone wants to know:
health and readiness answer from this state in microseconds, whatever the load.

The state is kept up to date by every transaction (a success is one clock read; a failure is
classified by cause, counted and logged once per cause) and by a probe that runs in a thread of
its own over a connection of its own (store/database.py), so that a busy handler pool never
makes a healthy database look lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from chimeproxy.logs import EpisodeLog

log = logging.getLogger("chimeproxy.database")
_SILENT = logging.getLogger("chimeproxy.database.silent")
_SILENT.disabled = True

# A probe that has not answered by then, with nothing else succeeding meanwhile, means the
# database is not answering (a frozen server keeps its connections open: nothing times out).
PROBE_TIMEOUT_S = 2.0
# While a cause lasts, one line per this many seconds says how often it happened meanwhile.
REPEAT_LOG_INTERVAL_S = 60.0


class Cause(StrEnum):
    """Why database work failed, as metrics label it."""

    DISK_FULL = "disk_full"
    READ_ONLY = "read_only"
    UNAVAILABLE = "unavailable"  # refused, unreachable, lost, shutting down
    TIMEOUT = "timeout"  # too slow, or busy: locks, every connection taken
    OTHER = "other"

    @property
    def words(self) -> str:
        return self.value.replace("_", " ").replace("read only", "read-only")


# Causes that stop writes while reads go on: health says "degraded" until a write succeeds.
WRITE_CAUSES = frozenset({Cause.DISK_FULL, Cause.READ_ONLY})

# SQLite's primary result codes (the low byte of the extended code Python reports).
_SQLITE_CAUSES = {
    13: Cause.DISK_FULL,  # SQLITE_FULL
    8: Cause.READ_ONLY,  # SQLITE_READONLY
    5: Cause.TIMEOUT,  # SQLITE_BUSY
    6: Cause.TIMEOUT,  # SQLITE_LOCKED
    14: Cause.UNAVAILABLE,  # SQLITE_CANTOPEN
}
# PostgreSQL SQLSTATEs, then SQLSTATE classes.
_SQLSTATE_CAUSES = {
    "53100": Cause.DISK_FULL,  # disk_full
    "25006": Cause.READ_ONLY,  # read_only_sql_transaction (a standby, or read-only mode)
    "57014": Cause.TIMEOUT,  # query_canceled: statement_timeout
    "55P03": Cause.TIMEOUT,  # lock_not_available
    "53300": Cause.UNAVAILABLE,  # too_many_connections
    "57P01": Cause.UNAVAILABLE,  # admin_shutdown
    "57P02": Cause.UNAVAILABLE,  # crash_shutdown
    "57P03": Cause.UNAVAILABLE,  # cannot_connect_now (starting up, recovering)
}
_SQLSTATE_CLASS_CAUSES = {"08": Cause.UNAVAILABLE}  # connection exceptions
# What drivers say when they give no code (psycopg before the connection exists, say).
_WORDS = (
    (("no space left", "disk is full", "disk full"), Cause.DISK_FULL),
    (("read-only", "readonly"), Cause.READ_ONLY),
    (("timeout", "timed out", "canceling statement", "database is locked", "busy"), Cause.TIMEOUT),
    (
        (
            "connection refused",
            "could not connect",
            "connection failed",
            "server closed the connection",
            "terminating connection",
            "connection is closed",
            "unable to open database",
            "no route to host",
            "name or service not known",
        ),
        Cause.UNAVAILABLE,
    ),
)


@dataclass(frozen=True, slots=True)
class Failure:
    cause: Cause
    detail: str  # the driver's own first line


def classify(exc: BaseException) -> Cause:
    """The cause of a database failure, from the driver's codes where it gives them, else from
    its words."""
    if isinstance(exc, PoolTimeoutError | TimeoutError):
        return Cause.TIMEOUT
    original = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    sqlite_code = getattr(original, "sqlite_errorcode", None)
    if isinstance(sqlite_code, int) and (sqlite_code & 0xFF) in _SQLITE_CAUSES:
        return _SQLITE_CAUSES[sqlite_code & 0xFF]
    sqlstate = getattr(original, "sqlstate", None)
    if isinstance(sqlstate, str):
        if sqlstate in _SQLSTATE_CAUSES:
            return _SQLSTATE_CAUSES[sqlstate]
        if sqlstate[:2] in _SQLSTATE_CLASS_CAUSES:
            return _SQLSTATE_CLASS_CAUSES[sqlstate[:2]]
    text = str(original).lower()
    for words, cause in _WORDS:
        if any(word in text for word in words):
            return cause
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return Cause.UNAVAILABLE
    return Cause.OTHER


def first_line(exc: BaseException) -> str:
    """The driver's own words for a failure (its first line), else the exception's name."""
    original = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(original).strip()
    return text.splitlines()[0] if text else type(original).__name__


def failure_of(exc: BaseException) -> Failure:
    return Failure(classify(exc), first_line(exc))


class State(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"  # reads work, writes fail
    UNAVAILABLE = "database unavailable"


@dataclass(frozen=True, slots=True)
class Verdict:
    state: State
    cause: Cause | None = None

    @property
    def reason(self) -> str | None:
        """What health and readiness say about it, in words that name no host or path."""
        if self.state is State.DEGRADED and self.cause is not None:
            return f"writes fail: {self.cause.words}"
        if self.state is State.UNAVAILABLE:
            return "the database does not answer" + (
                f" ({self.cause.words})" if self.cause is not None else ""
            )
        return None


class DatabaseHealth:
    """The database's state as the last transactions and probes found it."""

    def __init__(
        self,
        where: str,
        count: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = log,
    ) -> None:
        """`logger`: where failures are logged, once per cause (None: not at all, for commands
        that print the failure themselves)."""
        self.where = where  # the database, as logs show it (no password)
        self.count = count  # the metrics counter of failures by cause
        self.clock = clock
        self.episodes = EpisodeLog(logger or _SILENT, REPEAT_LOG_INTERVAL_S, clock)
        self._lock = threading.Lock()
        self.last_ok = clock()
        self.last_write_ok = self.last_ok
        self._unavailable: tuple[float, Cause] | None = None
        self._write_failure: tuple[float, Cause] | None = None
        self.probe_started: float | None = None
        # Read on every success: only a failure can set it, so the fast path stays one check.
        self._troubled = False

    def succeeded(self, wrote: bool) -> None:
        """A transaction (or a probe) was done by the database; `wrote`: it committed a write."""
        now = self.clock()
        self.last_ok = now
        if wrote:
            self.last_write_ok = now
        if self._troubled:
            self._recovered(wrote)

    def failed(self, exc: BaseException, *, writing: bool, probe: bool = False) -> Failure:
        """Database work failed: classified, counted, logged once per cause; the failure."""
        failure = failure_of(exc)
        self.record(failure, writing=writing, probe=probe)
        return failure

    def record(self, failure: Failure, *, writing: bool, probe: bool = False) -> None:
        now = self.clock()
        cause = failure.cause
        with self._lock:
            self._troubled = True
            if cause in WRITE_CAUSES:
                self._write_failure = (now, cause)
            # Busy or slow traffic is not an outage; a probe that fails to read, or any
            # refused connection, is.
            elif cause is Cause.UNAVAILABLE or (probe and not writing):
                self._unavailable = (now, cause)
        if self.count is not None:
            self.count(cause.value)
        doing = "write" if writing else "request"
        self.episodes.occurred(
            cause.value,
            f"database {doing} failed, {cause.words}: {failure.detail}",
            cause=cause.value,
            database=self.where,
            probe=probe,
        )

    def _recovered(self, wrote: bool) -> None:
        with self._lock:
            if self._unavailable is not None and self._unavailable[0] <= self.last_ok:
                self._unavailable = None
            if (
                wrote
                and self._write_failure is not None
                and self._write_failure[0] <= self.last_write_ok
            ):
                self._write_failure = None
            # Timeouts and other one-off failures end with any success; write causes with a
            # successful write.
            ended = [cause.value for cause in Cause if cause not in WRITE_CAUSES or wrote]
            self._troubled = self._unavailable is not None or self._write_failure is not None
        if set(ended) & self.episodes.open_kinds:
            self.episodes.ended(
                ended,
                "database answers again" if not wrote else "database writes succeed again",
                database=self.where,
            )

    @property
    def writes_failing(self) -> bool:
        return self._write_failure is not None

    def verdict(self) -> Verdict:
        now = self.clock()
        unavailable, write_failure = self._unavailable, self._write_failure
        if unavailable is not None and unavailable[0] > self.last_ok:
            return Verdict(State.UNAVAILABLE, unavailable[1])
        started = self.probe_started
        if started is not None and now - started > PROBE_TIMEOUT_S and self.last_ok < started:
            return Verdict(State.UNAVAILABLE, Cause.TIMEOUT)
        if write_failure is not None and write_failure[0] > self.last_write_ok:
            return Verdict(State.DEGRADED, write_failure[1])
        return Verdict(State.OK)
