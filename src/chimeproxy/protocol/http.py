"""Minimal HTTP request and response types over ASGI, and the middleware chain that joins them."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from chimeproxy.protocol.errors import ServiceError


@dataclass(slots=True)
class Request:
    method: str
    raw_path: str
    query_string: str
    headers: dict[str, str]
    body: bytes
    client_host: str | None
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    account: str = ""
    region: str = ""
    operation: str | None = None


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    error_type: str | None = None

    @classmethod
    def json(cls, status: int, document: Any) -> Response:
        return cls(status, orjson.dumps(document))

    @classmethod
    def error(cls, error: ServiceError) -> Response:
        response = cls(error.status, orjson.dumps(error.body()), error_type=error.type_name)
        response.headers.append((b"x-amzn-errortype", error.type_name.encode()))
        return response


Handler = Callable[[Request], Awaitable[Response]]
Middleware = Callable[[Request, Handler], Awaitable[Response]]


def chain(middlewares: Sequence[Middleware], endpoint: Handler) -> Handler:
    """Compose middlewares so the first one listed runs outermost."""
    handler = endpoint
    for middleware in reversed(middlewares):
        handler = _bind(middleware, handler)
    return handler


def _bind(middleware: Middleware, next_handler: Handler) -> Handler:
    async def bound(request: Request) -> Response:
        return await middleware(request, next_handler)

    return bound
