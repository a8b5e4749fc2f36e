"""The pure logic behind issue #16: database failures classified by cause, trouble logged once
per cause, health's verdict from what transactions and probes found, which metrics directories
may be removed, and the open-files arithmetic. Time is a fake clock: nothing here sleeps."""

from __future__ import annotations

import logging
import resource
import sqlite3
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.exc import OperationalError as SAOperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from chimeproxy.connections import (
    BASE_FILES,
    MIN_MAX_CONNECTIONS,
    OVERFLOW_CONNECTIONS,
    files_needed,
    plan_files,
)
from chimeproxy.logs import EpisodeLog
from chimeproxy.store.health import (
    PROBE_TIMEOUT_S,
    Cause,
    DatabaseHealth,
    Failure,
    State,
    classify,
    first_line,
)
from chimeproxy.workers import (
    METRICS_PREFIX,
    UNKNOWN_START,
    Owner,
    owner_is_dead,
    owner_of,
    remove_dead_metrics_directories,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def messages(self) -> list[str]:
        return [record.getMessage() for record in self.records]


@pytest.fixture
def lines() -> Lines:
    handler = Lines()
    logger = logging.getLogger("chimeproxy.test-health")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return handler


# Classification.


def wrapped(original: BaseException) -> SAOperationalError:
    return SAOperationalError("INSERT ...", {}, original)


def sqlite_error(message: str, code: int) -> sqlite3.OperationalError:
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code
    return error


def test_a_real_sqlite_read_only_error_is_read_only(tmp_path: Path) -> None:
    path = tmp_path / "db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()
    read_only = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as caught:
        read_only.execute("INSERT INTO t VALUES (1)")
    assert classify(wrapped(caught.value)) is Cause.READ_ONLY
    assert first_line(wrapped(caught.value)) == "attempt to write a readonly database"


@pytest.mark.parametrize(
    ("original", "cause"),
    [
        (sqlite_error("database or disk is full", 13), Cause.DISK_FULL),
        (sqlite_error("database is locked", 5), Cause.TIMEOUT),
        (sqlite_error("unable to open database file", 14), Cause.UNAVAILABLE),
        # An extended code: SQLITE_READONLY_DBMOVED (8 | 4 << 8).
        (sqlite_error("attempt to write a readonly database", 8 | 4 << 8), Cause.READ_ONLY),
        (psycopg.errors.ReadOnlySqlTransaction("cannot execute INSERT"), Cause.READ_ONLY),
        (psycopg.errors.DiskFull("could not extend file"), Cause.DISK_FULL),
        (psycopg.errors.QueryCanceled("canceling statement"), Cause.TIMEOUT),
        (psycopg.errors.AdminShutdown("terminating connection"), Cause.UNAVAILABLE),
        (psycopg.errors.TooManyConnections("sorry, too many clients"), Cause.UNAVAILABLE),
        (
            psycopg.OperationalError(
                'connection failed: connection to server at "127.0.0.1", port 1 failed: '
                "Connection refused"
            ),
            Cause.UNAVAILABLE,
        ),
        (psycopg.OperationalError("could not write: No space left on device"), Cause.DISK_FULL),
        (psycopg.errors.UndefinedTable('relation "x" does not exist'), Cause.OTHER),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_failures_are_classified_by_the_drivers_codes_or_words(
    original: BaseException, cause: Cause
) -> None:
    assert classify(wrapped(original)) is cause


def test_a_pool_timeout_and_a_deadline_are_timeouts() -> None:
    assert classify(PoolTimeoutError("QueuePool limit reached")) is Cause.TIMEOUT
    assert classify(TimeoutError()) is Cause.TIMEOUT


def test_the_detail_is_the_drivers_first_line() -> None:
    error = wrapped(sqlite_error("database or disk is full\nmore", 13))
    assert first_line(error) == "database or disk is full"


# Once per cause.


def test_an_episode_is_logged_at_once_then_once_per_interval_then_when_it_ends(
    lines: Lines,
) -> None:
    clock = Clock()
    episodes = EpisodeLog(logging.getLogger("chimeproxy.test-health"), 60, clock)
    episodes.occurred("disk_full", "disk is full")
    for _ in range(500):
        clock.now += 0.05
        episodes.occurred("disk_full", "disk is full")
    assert lines.messages == ["disk is full"]
    episodes.occurred("read_only", "read-only")  # another cause has its own line
    clock.now += 60
    episodes.occurred("disk_full", "disk is full")
    assert lines.messages[-1] == "disk is full (and 500 more since the last line)"
    episodes.ended(["disk_full", "timeout"], "writes succeed again")
    assert lines.messages[-1] == "writes succeed again"
    assert lines.records[-1].ended == ["disk_full"]
    assert len(lines.messages) == 4


def test_trouble_that_comes_and_goes_is_no_louder_than_trouble_that_stays(lines: Lines) -> None:
    clock = Clock()
    episodes = EpisodeLog(logging.getLogger("chimeproxy.test-health"), 60, clock)
    for _ in range(1000):  # fails, succeeds, fails... each a new episode
        clock.now += 0.01
        episodes.occurred("timeout", "busy")
        episodes.ended(["timeout"], "answers again")
    assert lines.messages == ["busy", "answers again"]


# Health's verdict.


def health_with(clock: Clock) -> tuple[DatabaseHealth, list[str]]:
    counted: list[str] = []
    health = DatabaseHealth("sqlite:///x.db", counted.append, clock, logger=None)
    return health, counted


def test_writes_failing_is_degraded_until_a_write_succeeds() -> None:
    clock = Clock()
    health, counted = health_with(clock)
    assert health.verdict().state is State.OK
    clock.now += 1
    health.record(Failure(Cause.DISK_FULL, "database or disk is full"), writing=True)
    assert (health.verdict().state, health.verdict().cause) == (State.DEGRADED, Cause.DISK_FULL)
    assert health.verdict().reason == "writes fail: disk full"
    clock.now += 1
    health.succeeded(wrote=False)  # reads still work: still degraded
    assert health.verdict().state is State.DEGRADED
    assert health.writes_failing
    clock.now += 1
    health.succeeded(wrote=True)
    assert health.verdict().state is State.OK
    assert counted == ["disk_full"]


def test_a_refused_connection_is_unavailable_until_anything_succeeds() -> None:
    clock = Clock()
    health, counted = health_with(clock)
    clock.now += 1
    health.record(Failure(Cause.UNAVAILABLE, "Connection refused"), writing=False)
    assert health.verdict().state is State.UNAVAILABLE
    clock.now += 1
    health.succeeded(wrote=False)
    assert health.verdict().state is State.OK
    assert counted == ["unavailable"]


def test_busy_traffic_is_not_an_outage_but_a_failing_probe_is() -> None:
    clock = Clock()
    health, counted = health_with(clock)
    clock.now += 1
    health.record(Failure(Cause.TIMEOUT, "no answer within the deadline"), writing=False)
    assert health.verdict().state is State.OK
    health.record(Failure(Cause.TIMEOUT, "canceling statement"), writing=False, probe=True)
    assert health.verdict().state is State.UNAVAILABLE
    assert counted == ["timeout", "timeout"]


def test_a_probe_that_hangs_is_an_outage_unless_traffic_succeeds_meanwhile() -> None:
    clock = Clock()
    health, _ = health_with(clock)
    clock.now += 1
    health.probe_started = clock.now
    clock.now += PROBE_TIMEOUT_S / 2
    assert health.verdict().state is State.OK  # slow, not yet lost
    clock.now += PROBE_TIMEOUT_S
    assert (health.verdict().state, health.verdict().cause) == (State.UNAVAILABLE, Cause.TIMEOUT)
    health.succeeded(wrote=False)  # a request's transaction: the database answers
    assert health.verdict().state is State.OK


# Metrics directories.

ME = Owner(pid=100, started=5000, pid_namespace=4026531836, boot="a" * 32)


def test_a_directory_name_records_its_owner() -> None:
    name = ME.directory_prefix() + "x1y2z3"
    assert owner_of(name) == ME
    assert owner_of(f"{METRICS_PREFIX}x1y2z3ab") is None  # the older names: no owner
    assert owner_of(f"{METRICS_PREFIX}123-456") is None


@pytest.mark.parametrize(
    ("owner", "started", "dead"),
    [
        (Owner(200, 7000, ME.pid_namespace, ME.boot), None, True),  # no such process
        (Owner(200, 7000, ME.pid_namespace, ME.boot), 9000, True),  # the pid was reused
        (Owner(200, 7000, ME.pid_namespace, ME.boot), 7000, False),  # alive
        (Owner(200, 7000, ME.pid_namespace, ME.boot), UNKNOWN_START, False),  # cannot tell
        (Owner(200, 7000, 1, ME.boot), None, False),  # another container's pid
        (Owner(200, 7000, ME.pid_namespace, "b" * 32), None, False),  # another boot or host
    ],
)
def test_only_a_proven_dead_owner_loses_its_directory(
    owner: Owner, started: int | None, dead: bool
) -> None:
    assert owner_is_dead(owner, ME, lambda pid: started) is dead


def test_cleaning_removes_dead_owners_directories_and_nothing_else(tmp_path: Path) -> None:
    from chimeproxy.workers import current_owner

    me = current_owner()
    assert me is not None
    dead = tmp_path / (Owner(7, 1, me.pid_namespace, me.boot).directory_prefix() + "a")
    alive = tmp_path / (me.directory_prefix() + "b")  # empty: no metrics files yet
    unowned = tmp_path / f"{METRICS_PREFIX}c"
    for path in (dead, alive, unowned):
        path.mkdir()

    def started_of(pid: int) -> int | None:
        return me.started if pid == me.pid else None

    assert remove_dead_metrics_directories(tmp_path, started_of) == [dead]
    assert not dead.exists() and alive.exists() and unowned.exists()


# The open-files arithmetic.

DB_FILES = 48


def test_the_default_connection_limit_fits_the_open_files_limit() -> None:
    plan = plan_files(1024, 1024, DB_FILES, None)
    assert plan.soft_limit == 1024
    assert plan.max_connections == 1024 - OVERFLOW_CONNECTIONS - DB_FILES - BASE_FILES
    assert files_needed(plan.max_connections, DB_FILES) == 1024
    assert plan.warning is None


def test_the_soft_limit_is_raised_towards_the_hard_one() -> None:
    plan = plan_files(1024, 524_288, DB_FILES, None)
    assert plan.max_connections == 10_000
    assert plan.soft_limit == files_needed(10_000, DB_FILES)
    capped = plan_files(1024, 4096, DB_FILES, 8000)
    assert capped.soft_limit == 4096
    assert capped.warning is not None and "(4096) is below" in capped.warning
    unlimited = plan_files(1024, resource.RLIM_INFINITY, DB_FILES, 5000)
    assert unlimited.soft_limit == files_needed(5000, DB_FILES) and unlimited.warning is None


def test_a_connection_limit_the_files_cannot_hold_is_warned_about_with_the_numbers() -> None:
    plan = plan_files(1024, 1024, DB_FILES, 5000)
    assert plan.max_connections == 5000  # the operator's choice stands, warned about
    assert plan.warning == (
        f"the open-files limit (1024) is below the {5000 + 64 + DB_FILES + 64} that "
        f"--max-connections 5000 needs (5000 connections + 64 over the limit + {DB_FILES} "
        "database files + 64 others): raise it (ulimit -n, systemd LimitNOFILE=) or lower "
        f"--max-connections to {1024 - 64 - DB_FILES - 64}"
    )


def test_a_tiny_open_files_limit_still_allows_a_few_connections_and_says_so() -> None:
    plan = plan_files(128, 128, DB_FILES, None)
    assert plan.max_connections == MIN_MAX_CONNECTIONS
    assert plan.warning is not None and "leaves room for only 0 connections" in plan.warning
