"""Assembly of the ASGI application: the middleware chain in front of the operation dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from chimeproxy import __version__
from chimeproxy.clock import Clock
from chimeproxy.config import Settings
from chimeproxy.dataplane.endpoints import Dataplane
from chimeproxy.logs import shown_path
from chimeproxy.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from chimeproxy.metrics import Metrics, scrape_snapshot
from chimeproxy.operations import load_operations
from chimeproxy.operations.registry import OPERATIONS, Context
from chimeproxy.protocol.auth import Authenticator
from chimeproxy.protocol.errors import (
    BadRequestException,
    HeadersTooLargeException,
    NotImplementedOperation,
    RequestEntityTooLargeException,
    ServiceError,
    ServiceFailureException,
    UnknownOperationException,
)
from chimeproxy.protocol.http import Handler, Middleware, Request, Response, chain
from chimeproxy.protocol.model import service_model, success_status
from chimeproxy.protocol.parser import parse_input
from chimeproxy.protocol.router import Router
from chimeproxy.protocol.serializer import OutputSerializer
from chimeproxy.protocol.throttle import RateLimiter
from chimeproxy.services import Services
from chimeproxy.store import sweeper
from chimeproxy.store.database import Database, deadline_seconds, run_in_thread

log = logging.getLogger("chimeproxy")
access_log = logging.getLogger("chimeproxy.access")
INTERNAL_PREFIX = "/_chimeproxy/"
JSON_CONTENT_TYPE = (b"content-type", b"application/json")
# Signed SDK requests carry about 1 KiB of headers; more than this is refused with 431. (The
# HTTP server has buffered them by then: a front proxy bounds memory, see docs/security.md.)
MAX_HEADER_BYTES = 32 * 1024
# Health answers 503 when the database has not answered a trivial query by then.
HEALTH_DEADLINE_S = 5.0

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class ChimeProxyApp:
    """The ASGI application; `services` is ready once the lifespan startup has run."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None) -> None:
        load_operations()
        self.settings = settings
        database = Database(settings.database, sqlite_synchronous=settings.sqlite_synchronous)
        self.services = Services(settings, database, clock or Clock())
        self.metrics = Metrics()
        self.router = Router(service_model())
        self.serializer = OutputSerializer()
        self.authenticator = Authenticator.from_settings(settings)
        self.internal: dict[tuple[str, str], Handler] = {
            ("GET", "/_chimeproxy/health"): self._health,
            ("GET", "/_chimeproxy/metrics"): self._metrics,
        }
        if settings.clock_control:
            self.internal[("POST", "/_chimeproxy/clock")] = self._advance_clock
        self.dataplane = Dataplane(self.services, self.authenticator)
        self.internal.update(self.dataplane.routes())
        middlewares: list[Middleware] = [
            self._guard,
            self._internal_routes,
            self.metrics.middleware,  # after the internal routes: counts API requests only
            self._authenticate,
        ]
        if settings.rate_limit:
            limiter = RateLimiter(settings.rate_limit)
            middlewares.append(limiter.middleware)
        self.handle = chain(middlewares, self._dispatch)
        # SQLite answers in microseconds from one connection, so its work runs on the event loop;
        # a network database's round trips run in worker threads over the pool.
        self._inline = self.services.db.dialect == "sqlite"
        self._deadline = deadline_seconds()
        self._sweeper: asyncio.Task[None] | None = None
        self._ready = False

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
        await self.dataplane.start()
        self._sweeper = asyncio.create_task(sweeper.run_forever(self.services))
        # What start-up built (modules, the service model, the catalog) lives as long as the
        # process: frozen, the collector's full passes no longer walk it, which took 60-80 ms
        # each, with every request waiting (docs/performance.md).
        gc.freeze()
        self._ready = True
        log.info(
            "chimeproxy ready",
            extra={"auth": self.authenticator.mode, "database": db.describe()},
        )

    async def shutdown(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.dataplane.stop()
        self.services.db.dispose()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers: dict[str, str] = {}
        header_bytes = 0
        for raw_name, raw_value in scope["headers"]:
            header_bytes += len(raw_name) + len(raw_value) + 4
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        client = scope.get("client")
        request = Request(
            method=scope["method"],
            raw_path=scope.get("raw_path", scope["path"].encode()).decode("latin-1"),
            query_string=scope["query_string"].decode("latin-1"),
            headers=headers,
            body=b"",
            client_host=client[0] if client else None,
        )
        try:
            if header_bytes > MAX_HEADER_BYTES:
                raise HeadersTooLargeException(
                    f"The request headers are larger than {MAX_HEADER_BYTES} bytes."
                )
            request.body = await self._read_body(receive, headers)
            response = await self.handle(request)
        except ServiceError as error:
            response = Response.error(error)
        response.headers.append((b"x-amzn-requestid", request.request_id.encode()))
        response.headers.append((b"content-length", str(len(response.body)).encode()))
        if response.body and not any(name == b"content-type" for name, _ in response.headers):
            response.headers.append(JSON_CONTENT_TYPE)
        await send(
            {"type": "http.response.start", "status": response.status, "headers": response.headers}
        )
        await send({"type": "http.response.body", "body": response.body})
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "request",
                extra={
                    "request_id": request.request_id,
                    "operation": request.operation,
                    "method": request.method,
                    "status": response.status,
                    "error": response.error_type,
                    "account": request.account or None,
                    "ms": round((time.perf_counter() - started) * 1000, 3),
                },
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

    # Middlewares, outermost first.

    async def _guard(self, request: Request, call_next: Handler) -> Response:
        try:
            return await call_next(request)
        except ServiceError as error:
            return Response.error(error)
        except Exception:
            log.exception("unhandled error", extra={"request_id": request.request_id})
            return Response.error(
                ServiceFailureException("The service encountered an unexpected error.")
            )

    async def _internal_routes(self, request: Request, call_next: Handler) -> Response:
        if not request.raw_path.startswith(INTERNAL_PREFIX):
            return await call_next(request)
        handler = self.internal.get((request.method, request.raw_path))
        if handler is None:
            handler = self.dataplane.match(request.method, request.raw_path)
        if handler is None:
            raise UnknownOperationException(
                f"No chimeproxy endpoint answers {request.method} {shown_path(request.raw_path)}."
            )
        return await handler(request)

    async def _authenticate(self, request: Request, call_next: Handler) -> Response:
        request.account, request.region = self.authenticator.authenticate(request)
        return await call_next(request)

    async def _dispatch(self, request: Request) -> Response:
        match = self.router.match(request.method, request.raw_path, request.query_string)
        if match is None:
            # The path may hold a phone number (/phone-numbers/%2B1...): shown redacted.
            raise UnknownOperationException(
                f"No operation matches {request.method} {shown_path(request.raw_path)}."
            )
        operation = match.operation
        request.operation = operation.name
        handler = OPERATIONS.get(operation.name)
        if handler is None:
            raise NotImplementedOperation(f"{operation.name} is not implemented by chimeproxy.")
        params = parse_input(operation, match.labels, match.query, request.headers, request.body)
        context = Context(request.account, request.region, request.request_id, self.services)
        if self._inline:
            output = handler(context, params)
        else:
            output = await run_in_thread(lambda: handler(context, params), self._deadline)
        status = success_status(operation)
        if status == 204:
            return Response(204)
        return Response(status, self.serializer.body(operation, output))

    # Internal endpoints.

    async def _in_db_thread(self, work: Callable[[], Any], deadline: float) -> Any:
        """Database work off the event loop unless the database is SQLite (see _inline)."""
        return work() if self._inline else await run_in_thread(work, deadline)

    async def _health(self, request: Request) -> Response:
        if not self._ready:
            return Response.json(503, {"status": "starting", "version": __version__})
        try:
            # Quick either way: PostgreSQL connects with a timeout and a dead server refuses.
            await self._in_db_thread(self.services.db.ping, HEALTH_DEADLINE_S)
        except ServiceError:
            return Response.json(
                503,
                {
                    "status": "database unavailable",
                    "version": __version__,
                    "database": self.services.db.dialect,
                },
            )
        return Response.json(
            200,
            {
                "status": "ok",
                "version": __version__,
                "database": self.services.db.dialect,
                "auth": self.authenticator.mode,
            },
        )

    async def _metrics(self, request: Request) -> Response:
        """Prometheus text exposition; the database gauges are computed now (see metrics.py)."""
        now = self.services.clock.now_ms()
        try:
            snapshot = await self._in_db_thread(
                lambda: scrape_snapshot(self.services.db, now), self._deadline
            )
        except ServiceError:  # the database did not answer in time
            snapshot = None
        response = Response(200, self.metrics.exposition(snapshot))
        response.headers.append((b"content-type", METRICS_CONTENT_TYPE.encode()))
        return response

    async def _advance_clock(self, request: Request) -> Response:
        try:
            document = orjson.loads(request.body or b"{}")
        except orjson.JSONDecodeError as exc:
            raise BadRequestException('The body must be JSON: {"advance_seconds": N}.') from exc
        seconds = document.get("advance_seconds") if isinstance(document, dict) else None
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
            raise BadRequestException("advance_seconds must be a number of seconds, at least 0.")
        self.services.clock.advance(seconds)
        return Response.json(200, {"now_ms": self.services.clock.now_ms()})
