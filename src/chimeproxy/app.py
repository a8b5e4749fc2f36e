"""Assembly of the ASGI application: every request, whether an operation of the model or one of
chimeproxy's own endpoints, takes the same path (docs/architecture.md):

    match (model router, then the endpoint table) -> access rule -> rate limit -> handler

with errors answered in the wire format and every answer counted in the metrics under the
matched operation's name.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from chimeproxy import __version__, logs, sweeper
from chimeproxy.clock import Clock
from chimeproxy.connections import OVER_LIMIT, others_in_progress, over_limit_error
from chimeproxy.console.web import Console
from chimeproxy.dataplane.endpoints import Dataplane
from chimeproxy.direct import Respond
from chimeproxy.domain.selection import PoolExhausted
from chimeproxy.events import EventSink, NullSink, WebhookSink
from chimeproxy.logs import shown_path
from chimeproxy.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from chimeproxy.metrics import Metrics
from chimeproxy.operations import load_operations
from chimeproxy.operations.interactions import (
    CONNECTOR_LISTING,
    SESSION_LISTING,
    InteractionListing,
)
from chimeproxy.operations.registry import AWAITED, OPERATIONS, Context
from chimeproxy.protocol.access import AccessControl
from chimeproxy.protocol.auth import Authenticator
from chimeproxy.protocol.endpoints import Access, Endpoint, EndpointTable
from chimeproxy.protocol.errors import (
    BadRequestException,
    HeadersTooLargeException,
    NotImplementedOperation,
    RequestEntityTooLargeException,
    ServiceError,
    ServiceFailureException,
    ServiceUnavailableException,
    UnknownOperationException,
)
from chimeproxy.protocol.http import Request, Response
from chimeproxy.protocol.model import service_model, success_status
from chimeproxy.protocol.parser import parse_input
from chimeproxy.protocol.router import Router
from chimeproxy.protocol.serializer import OutputSerializer
from chimeproxy.protocol.throttle import RateLimiter
from chimeproxy.services import Services
from chimeproxy.settings import Settings
from chimeproxy.store import stats
from chimeproxy.store.database import Database, DatabaseUnavailable
from chimeproxy.store.health import State
from chimeproxy.store.prepared import waited_for_batch

log = logging.getLogger("chimeproxy")
access_log = logging.getLogger("chimeproxy.access")
JSON_CONTENT_TYPE = (b"content-type", b"application/json")
# Signed SDK requests carry about 1 KiB of headers; more than this is refused with 431. (The
# HTTP server has buffered them by then: a front proxy bounds memory, see docs/security.md.)
MAX_HEADER_BYTES = 32 * 1024
UNMATCHED = "unknown"  # the operation name of requests that match nothing

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def _joined_headers(raw_headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in raw_headers:
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


def _has_body(headers: dict[str, str]) -> bool:
    """Whether the request frames a body (RFC 9112 6.3: by Content-Length or Transfer-Encoding).
    A Get has none: it is answered without asking the server for one (a receive, its event,
    and the coroutine that reads it, per request)."""
    declared = headers.get("content-length")
    return (declared is not None and declared != "0") or "transfer-encoding" in headers


class ChimeProxyApp:
    """The ASGI application; `services` is ready once the lifespan startup has run."""

    def __init__(
        self, settings: Settings, *, clock: Clock | None = None, announce: bool = True
    ) -> None:
        """`announce`: log the authentication mode (the command line does it once, first)."""
        load_operations()
        self.settings = settings
        clock = clock or Clock()
        self.metrics = Metrics()
        database = Database(
            settings.database,
            sqlite_synchronous=settings.sqlite_synchronous,
            pool_size=settings.db_pool_size,
            threads=settings.db_threads,
            count_failure=self.metrics.database_failure,
        )
        self.events: EventSink = NullSink()
        if settings.events_url:
            self.events = WebhookSink(
                settings.events_url,
                settings.events_secret,
                settings.events_queue_size,
                now_ms=clock.now_ms,
            )
        self.services = Services(settings, database, clock, self.events)
        self.router = Router(service_model())
        self.serializer = OutputSerializer()
        self.access = AccessControl(
            Authenticator.from_settings(settings, announce=announce), settings.route_secret
        )
        self.limiter = RateLimiter(settings.rate_limit) if settings.rate_limit else None
        self.dataplane = Dataplane(self.services)
        self.console = Console(self.services, self.access.authenticator)
        self.operations = {
            name: Endpoint(name, Access.SIGV4, self._operation) for name in OPERATIONS
        }
        self.endpoints = self._endpoint_table()
        self._sweeper: asyncio.Task[None] | None = None
        self._ready = False

    def _endpoint_table(self) -> EndpointTable:
        table = EndpointTable()
        table.add(
            "GET",
            "/_chimeproxy/health",
            Endpoint("Health", Access.NONE, self._health, rate_limited=False),
        )
        table.add(
            "GET",
            "/_chimeproxy/ready",
            Endpoint("Ready", Access.NONE, self._ready_check, rate_limited=False),
        )
        table.add(
            "GET",
            "/_chimeproxy/metrics",
            Endpoint("Metrics", Access.NONE, self._metrics, rate_limited=False),
        )
        clock = self._advance_clock if self.settings.clock_control else self._no_clock_control
        table.add("POST", "/_chimeproxy/clock", Endpoint("AdvanceClock", Access.NONE, clock))
        listing = Endpoint(
            "ListInteractions", Access.SIGV4, InteractionListing(self.services).handle
        )
        table.add("GET", SESSION_LISTING, listing)
        table.add("GET", CONNECTOR_LISTING, listing)
        for method, template, endpoint in [*self.dataplane.endpoints(), *self.console.endpoints()]:
            table.add(method, template, endpoint)
        return table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def startup(self) -> None:
        db = self.services.db
        if self.settings.migrate:
            await asyncio.to_thread(db.upgrade)
        elif pending := await asyncio.to_thread(db.pending_migrations):
            raise RuntimeError(
                f"database schema is behind ({pending}); run `chimeproxy db upgrade` first"
            )
        self.services.token_key  # noqa: B018 -- created now so no request pays for it
        await asyncio.to_thread(self.services.catalog)
        db.start_probe()
        db.keep_a_connection_for_this_thread()
        if isinstance(self.events, WebhookSink):
            await self.events.start()
        self._sweeper = asyncio.create_task(sweeper.run_forever(self.services))
        # What start-up built (modules, the service model, the catalog) lives as long as the
        # process: frozen, the collector's full passes no longer walk it, which took 60-80 ms
        # each, with every request waiting (docs/performance.md).
        gc.freeze()
        self._ready = True
        log.info(
            "chimeproxy ready",
            extra={"auth": self.access.authenticator.mode, "database": db.describe()},
        )

    async def shutdown(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if isinstance(self.events, WebhookSink):
            await self.events.stop()
        self.services.db.dispose()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    # The cause on the line itself (a database's own words, not "retry the
                    # request"); a traceback only for what nobody foresaw.
                    expected = isinstance(exc, DatabaseUnavailable | RuntimeError)
                    cause = exc.reason if isinstance(exc, DatabaseUnavailable) else str(exc)
                    log.error(
                        f"start-up failed: {cause or type(exc).__name__}",
                        exc_info=None if expected else exc,
                    )
                    # No message: uvicorn would log it again, as the client-facing words
                    # ("retry the request") rather than the cause.
                    await send({"type": "lifespan.startup.failed", "message": ""})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                logs.write_directly()
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI path: the answer in ASGI's two messages."""
        request, response, started = await self._answer(scope, receive)
        await send(
            {"type": "http.response.start", "status": response.status, "headers": response.headers}
        )
        await send({"type": "http.response.body", "body": response.body})
        self._log_access(request, response, started)

    async def answer_directly(self, scope: Scope, receive: Receive, respond: Respond) -> None:
        """The direct path (chimeproxy.direct, under chimeproxy's own protocol): the same
        answer, written to the connection in one step."""
        request, response, started = await self._answer(scope, receive)
        await respond(response.status, response.headers, response.body)
        self._log_access(request, response, started)

    async def _answer(self, scope: Scope, receive: Receive) -> tuple[Request, Response, float]:
        """The request read from the scope, answered (`handle`), with the headers every answer
        carries; and when it started."""
        started = time.perf_counter()
        raw_headers = scope["headers"]
        # ASGI servers hand header names lower-cased. One comprehension for the common case;
        # a request that repeats a header has its values joined with commas (RFC 9110 5.3).
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in raw_headers}
        if len(headers) != len(raw_headers):
            headers = _joined_headers(raw_headers)
        header_bytes = sum(map(len, itertools.chain.from_iterable(raw_headers)))
        header_bytes += 4 * len(raw_headers)  # ": " and CRLF
        client = scope.get("client")
        raw_path = scope.get("raw_path")
        # Positional: a dataclass's __init__ takes keyword arguments at several times the cost.
        request = Request(
            scope["method"],
            (scope["path"].encode() if raw_path is None else raw_path).decode("latin-1"),
            scope["query_string"].decode("latin-1"),
            headers,
            b"",  # body
            client[0] if client else None,
            scope.get("scheme", "http"),
            over_connection_limit=OVER_LIMIT in scope,
        )
        try:
            if header_bytes > MAX_HEADER_BYTES:
                raise HeadersTooLargeException(
                    f"The request headers are larger than {MAX_HEADER_BYTES} bytes."
                )
            if request.over_connection_limit:
                # Refused before its body is read: no 100 Continue, nothing uploaded for
                # nothing, and no slot held by a slow body.
                response = self._refused_over_limit(request, started)
            else:
                if _has_body(headers):
                    request.body = await self._read_body(receive, headers)
                response = await self.handle(request)
        except ServiceError as error:
            response = Response.error(error)
        response.headers.append((b"x-amzn-requestid", request.request_id.encode()))
        response.headers.append((b"content-length", str(len(response.body)).encode()))
        if response.body:
            for name, _ in response.headers:
                if name == b"content-type":
                    break
            else:
                response.headers.append(JSON_CONTENT_TYPE)
        return request, response, started

    @staticmethod
    def _log_access(request: Request, response: Response, started: float) -> None:
        if access_log.isEnabledFor(logging.INFO):
            logs.access(
                request.request_id,
                request.operation,
                request.method,
                response.status,
                response.error_type,
                request.account or None,
                time.perf_counter() - started,
            )

    async def _read_body(self, receive: Receive, headers: dict[str, str]) -> bytes:
        limit = self.settings.body_limit
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RequestEntityTooLargeException(f"The request body is larger than {limit} bytes.")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise RequestEntityTooLargeException(
                    f"The request body is larger than {limit} bytes."
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    # The request path.

    async def handle(self, request: Request) -> Response:
        """Answer one request; never raises.

        A request has three phases: its caller is checked (SigV4), its work done (input,
        database, output), its answer sent. While other requests are in progress, it yields to
        the event loop between phases, so that under load the loop runs one phase for every
        request ready for it before the next phase: all the turn's signatures are checked, then
        all its reads made, then all its answers sent. Each phase's code and data then stay in
        the CPU's caches from one request to the next rather than being evicted by the other
        phases' (a Get cost about a sixth less CPU under 32 connections: docs/performance.md,
        thirteenth pass). A lone request does not yield: it would only wait for turns of the
        loop. A request without a signature to check (the data plane, health) goes on to its
        work without the first yield, and one whose work waited for a write batch
        (store.prepared.WriteBatch) answers without the second: the batch's writers resume
        together, in one turn, and answer in it."""
        started = time.perf_counter()
        try:
            endpoint = self._match(request)
            request.operation = endpoint.name
            caller = self.access.check(request, endpoint.access)
            if self.limiter is not None and endpoint.rate_limited:
                self.limiter.check(caller)
            if endpoint.access is Access.SIGV4 and others_in_progress():
                await asyncio.sleep(0)
            response = await endpoint.handler(request, request.labels)
            if others_in_progress() and not waited_for_batch():
                await asyncio.sleep(0)
        except ServiceError as error:
            response = Response.error(error)
            if isinstance(error.__cause__, PoolExhausted):
                self.metrics.pool_exhausted(request)
                await self.console.pool_refused(
                    request.account, request.region, request.labels.get("voiceConnectorId", "")
                )
        except DatabaseUnavailable as exc:
            # The store says why (unreachable, busy, too slow); the client may retry.
            response = Response.error(ServiceUnavailableException(str(exc)))
        except Exception:
            log.exception("unhandled error", extra={"request_id": request.request_id})
            response = Response.error(
                ServiceFailureException("The service encountered an unexpected error.")
            )
        self.metrics.observe(
            request.operation or UNMATCHED, response.status, time.perf_counter() - started
        )
        return response

    def _refused_over_limit(self, request: Request, started: float) -> Response:
        """The 503 of a request over the connection limit (connections.OVER_LIMIT), answered
        here rather than by the protocol so that it is logged and counted under its operation
        like any other answer."""
        with contextlib.suppress(ServiceError):
            request.operation = self._match(request).name
        response = Response.error(over_limit_error())
        self.metrics.observe(
            request.operation or UNMATCHED, response.status, time.perf_counter() - started
        )
        return response

    def _match(self, request: Request) -> Endpoint:
        """The endpoint for the request (its labels set on it); 404 when nothing matches."""
        found = self.endpoints.match(request.method, request.raw_path)
        if found is not None:
            endpoint, request.labels = found
            return endpoint
        match = self.router.match(request.method, request.raw_path, request.query_string)
        if match is None:
            # The path may hold a phone number (/phone-numbers/%2B1...): shown redacted.
            raise UnknownOperationException(
                f"No operation matches {request.method} {shown_path(request.raw_path)}."
            )
        request.labels = match.labels
        request.query = match.query
        request.model_operation = match.operation
        endpoint = self.operations.get(match.operation.name)
        if endpoint is None:
            request.operation = match.operation.name
            raise NotImplementedOperation(
                f"{match.operation.name} is not implemented by chimeproxy."
            )
        return endpoint

    async def _operation(self, request: Request, labels: dict[str, str]) -> Response:
        """An operation of the model: parse and validate its input, run its handler, serialize
        its output."""
        operation = request.model_operation
        assert operation is not None
        params = parse_input(operation, labels, request.query, request.headers, request.body)
        context = Context(request.account, request.region, request.request_id, self.services)
        handler = OPERATIONS[operation.name]
        if operation.name in AWAITED:
            output = await handler(context, params)  # type: ignore[misc]
        else:
            output = await self.services.db.run(
                lambda: handler(context, params), self.settings.db_deadline
            )
        status = success_status(operation)
        if status == 204:
            return Response(204)
        return Response(status, self.serializer.body(operation, output))

    # chimeproxy's own endpoints.

    async def _health(self, request: Request, labels: dict[str, str]) -> Response:
        """Liveness, from what the database's transactions and probe last found (never a query
        of its own, so it answers at once under any load): 200 `ok`, or `degraded` while writes
        fail; 503 while starting or while the database does not answer."""
        status, document = self._health_document()
        return Response.json(status, document)

    async def _ready_check(self, request: Request, labels: dict[str, str]) -> Response:
        """Readiness, for load balancers: 200 only when requests can be served in full, 503
        while starting, when the database does not answer and while writes fail."""
        status, document = self._health_document()
        if document["status"] != State.OK:
            status = 503
        return Response.json(status, document)

    def _health_document(self) -> tuple[int, dict[str, Any]]:
        if not self._ready:
            return 503, {"status": "starting", "version": __version__}
        verdict = self.services.db.health.verdict()
        document: dict[str, Any] = {
            "status": verdict.state.value,
            "version": __version__,
            "database": self.services.db.dialect,
        }
        if verdict.state is State.UNAVAILABLE:
            return 503, document | {"cause": verdict.cause, "reason": verdict.reason}
        document["auth"] = self.access.authenticator.mode
        if verdict.state is State.DEGRADED:
            document |= {"cause": verdict.cause, "reason": verdict.reason}
        return 200, document

    async def _metrics(self, request: Request, labels: dict[str, str]) -> Response:
        """Prometheus text exposition; the database gauges are computed now (see metrics.py)."""
        now = self.services.clock.now_ms()

        def snapshot() -> stats.Snapshot:
            with self.services.db.read() as connection:
                return stats.database_snapshot(connection, now)

        try:
            # In a thread even on SQLite: the gauges count over whole indexes (about 50 ms at 1M
            # sessions), which inline would hold up every request for the length of a scrape.
            current = await self.services.db.run(
                snapshot, self.settings.db_deadline, background=True
            )
        except DatabaseUnavailable:
            current = None
        response = Response(200, self.metrics.exposition(current))
        response.headers.append((b"content-type", METRICS_CONTENT_TYPE.encode()))
        return response

    async def _no_clock_control(self, request: Request, labels: dict[str, str]) -> Response:
        raise UnknownOperationException(
            "The clock can only be moved in test mode: start the server with "
            "`chimeproxy serve --clock-control`."
        )

    async def _advance_clock(self, request: Request, labels: dict[str, str]) -> Response:
        try:
            document = orjson.loads(request.body or b"{}")
        except orjson.JSONDecodeError as exc:
            raise BadRequestException('The body must be JSON: {"advance_seconds": N}.') from exc
        seconds = document.get("advance_seconds") if isinstance(document, dict) else None
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
            raise BadRequestException("advance_seconds must be a number of seconds, at least 0.")
        self.services.clock.advance(seconds)
        return Response.json(200, {"now_ms": self.services.clock.now_ms()})
