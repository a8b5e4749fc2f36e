"""Limits on connections, so that idle or excess connections can never take the file
descriptors that health checks and real requests need:

- a header timeout: a connection that has not sent a whole request's headers within
  `--header-timeout` seconds of opening (or of its idle keep-alive period ending) is closed;
- a maximum of open connections per process (`--max-connections`): past it, a connection may
  still ask for health or readiness, and any other request is answered 503 with Retry-After and
  closed (the protocol marks the request, the application answers it, so that it is logged and
  counted with the others); past it by OVERFLOW_CONNECTIONS more, the connection that has been
  idle longest (no request in progress) is closed to make room, so a flood of idle connections
  cannot lock out a health check; with none idle, the new connection is closed as soon as it
  opens;
- the open-files limit checked at start-up against what those settings need, and raised up to
  the hard limit when it is below;
- under load, requests start in batches of START_BATCH per turn of the event loop, and health
  and readiness at once: a burst of 2,000 requests all read in one turn would otherwise run
  before the loop reads another socket (SQLite work runs on the loop), and a health check
  arriving behind them waited 2-3 s.

uvicorn has none of the first (a connection that sends nothing is kept forever), and its
`limit_concurrency` answers 503 to health checks too, so the limits live in a subclass of its
HTTP protocol.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import resource
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from chimeproxy import direct
from chimeproxy.logs import EpisodeLog
from chimeproxy.protocol.errors import ServiceUnavailableException

log = logging.getLogger("chimeproxy.connections")

# Connections above --max-connections still accepted, for long enough to read their request:
# health and readiness checks get through a server that is full; the others are told 503.
OVERFLOW_CONNECTIONS = 64
# How long such a connection may take to send its request headers.
OVERFLOW_HEADER_TIMEOUT_S = 1.0
# What a process holds open besides connections and database files: standard streams,
# listening sockets, the event loop's own descriptors, worker pipes, metrics files, outgoing
# HTTP clients (events, SMS), imported modules being read.
BASE_FILES = 64
DEFAULT_MAX_CONNECTIONS = 10_000
# The smallest limit worth starting with: below it, the open-files limit is far too low.
MIN_MAX_CONNECTIONS = 16
EXEMPT_PATHS = frozenset({"/_chimeproxy/health", "/_chimeproxy/ready"})
# Requests started per turn of the event loop once START_BATCH are in progress: small enough
# that a turn stays in the tens of milliseconds, large enough not to slow a busy server.
START_BATCH = 32
RETRY_AFTER_S = 1

_episodes = EpisodeLog(log)
# Requests read but not started yet (see START_BATCH), oldest first, and whether a turn of the
# loop will start some.
_waiting: deque[tuple[LimitedHttpProtocol, Any, Any]] = deque()
_starting = False
# This process's connections with no request in progress, longest idle first (a dict keeps
# insertion order: a connection that becomes idle again goes to the end).
_idle: dict[LimitedHttpProtocol, None] = {}
# The request tasks in progress in this process's server (uvicorn's ServerState.tasks, the
# same set for all its connections; rebound by each new connection, so with several servers in
# one process, as in tests, the newest's).
_tasks: set[asyncio.Task[None]] = set()
# The longest an answer waits for the others of its turn (TurnWrites): a turn of slow requests
# (creates, about 0.5 ms each) must not hold its first answers for the whole turn.
MAX_HOLD_S = 0.001


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout: float
    max_connections: int


# The open-files arithmetic.


def files_needed(max_connections: int, database_files: int) -> int:
    """Open files one process needs: its connections (with those above the limit it still
    reads), its database's files, and the rest (BASE_FILES)."""
    return max_connections + OVERFLOW_CONNECTIONS + database_files + BASE_FILES


def connections_allowed(file_limit: int, database_files: int) -> int:
    """The most connections a process can hold within `file_limit` open files."""
    return file_limit - OVERFLOW_CONNECTIONS - database_files - BASE_FILES


@dataclass(frozen=True, slots=True)
class FilePlan:
    soft_limit: int  # the soft limit to set (the current one when nothing changes)
    max_connections: int
    warning: str | None


def plan_files(soft: int, hard: int, database_files: int, max_connections: int | None) -> FilePlan:
    """The soft open-files limit to run with (raised towards the hard limit when the settings
    need more), the connection limit (what the files allow when not given), and a warning when
    the settings need more than the hard limit allows. RLIM_INFINITY reads as unlimited."""
    unlimited = resource.RLIM_INFINITY
    wanted = max_connections or DEFAULT_MAX_CONNECTIONS
    needed = files_needed(wanted, database_files)
    new_soft = soft
    if soft != unlimited and soft < needed:
        new_soft = needed if hard == unlimited else min(hard, needed)
    if max_connections is None:
        allowed = wanted if new_soft == unlimited else connections_allowed(new_soft, database_files)
        chosen = max(MIN_MAX_CONNECTIONS, min(wanted, allowed))
        warning = None
        if allowed < MIN_MAX_CONNECTIONS:
            warning = (
                f"the open-files limit ({new_soft}) leaves room for only {max(allowed, 0)} "
                f"connections; raise it (ulimit -n, systemd LimitNOFILE=) to at least "
                f"{files_needed(MIN_MAX_CONNECTIONS, database_files)}"
            )
        return FilePlan(new_soft, chosen, warning)
    warning = None
    if new_soft != unlimited and new_soft < needed:
        warning = (
            f"the open-files limit ({new_soft}) is below the {needed} that --max-connections "
            f"{max_connections} needs ({max_connections} connections + {OVERFLOW_CONNECTIONS} "
            f"over the limit + {database_files} database files + {BASE_FILES} others): raise "
            f"it (ulimit -n, systemd LimitNOFILE=) or lower --max-connections to "
            f"{max(connections_allowed(new_soft, database_files), 1)}"
        )
    return FilePlan(new_soft, max_connections, warning)


def open_files_limit() -> int:
    """This process's soft open-files limit (-1: unlimited)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return -1 if soft == resource.RLIM_INFINITY else soft


def apply_file_limit(database_files: int, max_connections: int | None) -> int:
    """Raise this process's soft open-files limit as far as the settings need and the hard
    limit allows (worker processes inherit it), warn when that is not enough; the connection
    limit to use."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    plan = plan_files(soft, hard, database_files, max_connections)
    if plan.soft_limit != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (plan.soft_limit, hard))
        except (ValueError, OSError) as exc:
            log.warning(f"could not raise the open-files limit to {plan.soft_limit}: {exc}")
            plan = plan_files(soft, soft, database_files, max_connections)
        else:
            log.info(
                "raised the open-files limit",
                extra={"from": soft, "to": plan.soft_limit, "hard": hard},
            )
    if plan.warning:
        log.warning(plan.warning)
    return plan.max_connections


# The protocol.


# The scope key that marks a request over the connection limit: the application answers it
# with `over_limit_error`, through its own path, so that it is logged and counted like any other
# answer (ChimeProxyApp._refused_over_limit).
OVER_LIMIT = "chimeproxy.over_connection_limit"


def over_limit_error() -> ServiceUnavailableException:
    """The answer to a request over the connection limit: 503 in the API's wire format, after
    which the connection closes (the protocol no longer keeps it alive), so that SDKs retry,
    on another server behind a load balancer."""
    return ServiceUnavailableException(
        "The server has too many open connections; retry the request.",
        headers=[(b"retry-after", str(RETRY_AFTER_S).encode())],
    )


class TurnWrites:
    """The transports that buffered bytes in this turn of the loop, written at its end by one
    callback rather than one per transport; and the finished answers held for that end.

    A write that finds its reader asleep wakes it, and on loopback that wake-up runs on the
    writer's CPU; the turn's later writes find the reader already awake. Under load, a Get cost
    about a fifth less CPU and its p99 fell with its answer held for the turn's end
    (docs/performance.md, tenth pass), as Redis writes its replies just before its event loop
    sleeps. A held answer never waits more than `max_hold_s` after the first of its batch was
    held: the answer finished after that sends the whole batch. One per event loop
    (`turn_writes`)."""

    __slots__ = ("_held_since", "_transports", "loop", "max_hold_s")

    def __init__(self, loop: asyncio.AbstractEventLoop, max_hold_s: float = MAX_HOLD_S) -> None:
        self.loop = loop
        self.max_hold_s = max_hold_s
        self._transports: list[CoalescingTransport] = []
        self._held_since: float | None = None

    def add(self, transport: CoalescingTransport) -> None:
        """`transport` has bytes to send by the end of this turn."""
        if not self._transports:
            self.loop.call_soon(self.send)
        self._transports.append(transport)

    def hold(self) -> None:
        """An answer just finished (its bytes added) waits for the turn's end, unless the first
        answer of its batch has already waited `max_hold_s`: then the batch leaves now."""
        now = time.monotonic()
        if self._held_since is None:
            self._held_since = now
        elif now - self._held_since >= self.max_hold_s:
            self.send()

    def send(self) -> None:
        """Send every transport's bytes, in the order they were first written this turn."""
        transports, self._transports = self._transports, []
        self._held_since = None
        for transport in transports:
            transport.turn_ended()


_turn_writes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TurnWrites] = (
    weakref.WeakKeyDictionary()
)


def others_in_progress() -> bool:
    """Whether requests other than the caller's are in progress in this process's server: then a
    request that yields to the event loop lets them run (app.ChimeProxyApp.handle)."""
    return len(_tasks) > 1


def turn_writes(loop: asyncio.AbstractEventLoop) -> TurnWrites:
    """The loop's TurnWrites: per loop, so that no batch is left behind with a closed loop or
    shared with another thread's."""
    writes = _turn_writes.get(loop)
    if writes is None:
        writes = _turn_writes[loop] = TurnWrites(loop)
    return writes


class CoalescingTransport:
    """A connection's transport whose writes made in one turn of the event loop leave as one.

    uvicorn writes a response's status line and headers, then its body: two `write` calls,
    each a system call that carries a TCP segment through the network stack (on loopback,
    through the receiver's side too). A whole response now costs one: a Get spent about a
    third of its HTTP time in those writes (docs/performance.md). Buffered bytes leave when the
    protocol sends a finished answer (at once, or with the others of its turn: TurnWrites.hold),
    at the end of the loop's turn otherwise (a streamed body, a 100 Continue), and before the
    connection closes; everything else is the transport's own."""

    __slots__ = ("_pending", "_queued", "_turn", "transport")

    def __init__(
        self,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
        turn: TurnWrites | None = None,
    ) -> None:
        self.transport = transport
        self._turn = turn or turn_writes(loop)
        self._pending: list[bytes] = []
        self._queued = False  # in this turn's TurnWrites

    def write(self, data: bytes) -> None:
        self._pending.append(data)
        if not self._queued:
            self._queued = True
            self._turn.add(self)

    def writelines(self, chunks: Iterable[bytes]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        pending = self._pending
        if pending:
            self._pending = []
            self.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def hold(self) -> None:
        """A finished answer: sent with the others of this turn, at its end (TurnWrites)."""
        self._turn.hold()

    def turn_ended(self) -> None:
        self._queued = False
        if not self.transport.is_closing():
            self.flush()

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() + sum(map(len, self._pending))

    def write_eof(self) -> None:
        self.flush()
        self.transport.write_eof()

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def abort(self) -> None:
        self._pending = []
        self.transport.abort()

    def is_closing(self) -> bool:
        # Asked twice a request: through `__getattr__`, each time after an AttributeError.
        return self.transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header timeout and a connection limit (see the
    module's docstring), one timer per connection for both its waits, and requests handed to
    the application's direct entry when it has one (direct.py)."""

    def __init__(self, *args: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        global _tasks
        _tasks = self.tasks
        self.limits = limits
        # The application's direct entry, when it has one (direct.py), and whether uvicorn's
        # proxy headers middleware wraps it.
        self.direct_entry, self.forwarded = direct.direct_entry(self.app)
        # The connection's one wait at a time: for a request's headers (the header timeout), or
        # for the next request (uvicorn's keep-alive timeout). `due`: when it ends (None: no
        # wait). The timer that checks is left armed across waits and re-arms itself for what
        # a later wait has left (see `_wait`).
        self.due: float | None = None
        self.headers_awaited = False  # the wait is the header clock's, else the keep-alive's
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.over_limit = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        already_open = len(self.connections)
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
        if already_open >= self.limits.max_connections + OVERFLOW_CONNECTIONS:
            idlest = next(iter(_idle), None)
            if idlest is None:
                _episodes.occurred(
                    "connections_closed",
                    f"closed new connections at once: {already_open} open, every one busy "
                    f"(--max-connections {self.limits.max_connections})",
                    level=logging.WARNING,
                )
                transport.close()
                return
            _episodes.occurred(
                "connections_evicted",
                "closed the longest idle connections to make room for new ones "
                f"(--max-connections {self.limits.max_connections})",
                level=logging.WARNING,
            )
            idlest.transport.close()
            _idle.pop(idlest, None)
        self.over_limit = already_open >= self.limits.max_connections
        _idle[self] = None
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self.due = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        _idle.pop(self, None)
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        """uvicorn's, but for its keep-alive timer: uvicorn arms one per response and cancels
        it when the next request arrives (1.7 µs a request); here the connection's timer
        serves (`_wait`)."""
        transport: CoalescingTransport = self.transport  # type: ignore[assignment]
        if len(self.tasks) <= 1 and not _waiting:
            # The only request in progress: no other answer can join it this turn, and
            # holding it would only cost the loop another turn.
            transport.flush()
        else:
            transport.hold()
        self.server_state.total_requests += 1
        if transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._wait(self.timeout_keep_alive, headers=False)
        if self.cycle is None or self.cycle.response_complete:
            _idle[self] = None  # idle again, and the newest of the idle

    def _unset_keepalive_if_required(self) -> None:
        # uvicorn's hook for "a request arrived (or the connection ended): stop waiting".
        if not self.headers_awaited:
            self.due = None

    def data_received(self, data: bytes) -> None:
        # Between requests (idle after keep-alive), the first bytes of the next one start its
        # header clock; the keep-alive wait ends when they arrive.
        if (self.cycle is None or self.cycle.response_complete) and (
            not self.headers_awaited or self.due is None
        ):
            self._await_headers()
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self.due = None  # the armed timer, when it fires, finds nothing to do
        _idle.pop(self, None)
        super().on_headers_complete()

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        if self.over_limit:
            # One answer, then the connection closes: it must not keep an overflow place.
            cycle.keep_alive = False
            if cycle.scope["path"] not in EXEMPT_PATHS:
                _episodes.occurred(
                    "connections_refused",
                    "answered 503 to requests over --max-connections "
                    f"{self.limits.max_connections}",
                    level=logging.WARNING,
                )
                cycle.scope[OVER_LIMIT] = True
        exempt = cycle.scope["path"] in EXEMPT_PATHS
        if exempt or (not _waiting and len(self.tasks) < START_BATCH):
            self._start_task(cycle, app)
            return
        global _starting
        _waiting.append((self, cycle, app))
        if not _starting:
            _starting = True
            self.loop.call_soon(_start_batch)

    def _start_task(self, cycle: Any, app: Any) -> None:
        """uvicorn's `_start_asgi_task`, through the application's direct entry when it has
        one and `app` is the application (not uvicorn's own 503 for `limit_concurrency`)."""
        entry = self.direct_entry
        if entry is None or app is not self.app:
            coroutine = cycle.run_asgi(app)
        else:
            coroutine = direct.run(cycle, entry, app, self.forwarded)
        if self.config.reset_contextvars:
            task = self.loop.create_task(coroutine, context=contextvars.Context())
        else:
            task = self.loop.create_task(coroutine)
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def _await_headers(self) -> None:
        """Start the header clock."""
        timeout = OVERFLOW_HEADER_TIMEOUT_S if self.over_limit else self.limits.header_timeout
        self._wait(timeout, headers=True)

    def _wait(self, seconds: float, *, headers: bool) -> None:
        """Wait `seconds` from now for a request's headers or for the next request, then close
        the connection, unless the wait is stopped first (`due` set to None). A timer is armed
        only when none is, or when the one armed would fire after this wait's end: one armed
        for an earlier wait checks then, and re-arms itself for what is left. Arming and
        cancelling one per request cost a Get 5,700 instructions (the header clock) and 1.7 µs
        (the keep-alive clock)."""
        self.due = due = self.loop.time() + seconds
        self.headers_awaited = headers
        if self.timer is not None:
            if self.timer_at <= due:
                return
            self.timer.cancel()
        self.timer_at = due
        self.timer = self.loop.call_at(due, self._timer_fired)

    def _timer_fired(self) -> None:
        self.timer = None
        due = self.due
        if due is None:
            return  # the wait was stopped: the headers came, or the next request
        if self.loop.time() < due:
            self.timer_at = due
            self.timer = self.loop.call_at(due, self._timer_fired)
            return
        self.due = None
        if self.headers_awaited:
            self._close_slow_headers()
        else:
            self.timeout_keep_alive_handler()

    def _close_slow_headers(self) -> None:
        if not self.transport.is_closing():
            _episodes.occurred(
                "connections_shed",
                "closed connections that sent no whole request headers within "
                f"--header-timeout {self.limits.header_timeout:g} s",
                level=logging.WARNING,
            )
            self.transport.close()


def _start_batch() -> None:
    """Start the next START_BATCH waiting requests; the rest in the loop's next turn, after it
    has read its sockets again."""
    global _starting
    for _ in range(min(START_BATCH, len(_waiting))):
        protocol, cycle, app = _waiting.popleft()
        protocol._start_task(cycle, app)
    if _waiting:
        asyncio.get_running_loop().call_soon(_start_batch)
    else:
        _starting = False


def protocol_factory(limits: ConnectionLimits) -> Callable[..., LimitedHttpProtocol]:
    """What uvicorn's `http` option takes: a protocol class, here bound to the limits (a
    partial, so that it travels to worker processes by pickling)."""
    return functools.partial(LimitedHttpProtocol, limits=limits)
