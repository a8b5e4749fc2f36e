"""Answers written to the connection in one step, for an application that offers a direct entry.

An ASGI request runs through layers that each cost a live Get microseconds: uvicorn's
`run_asgi`, its ProxyHeadersMiddleware, the application's `__call__`, then two `send` calls
that pass dictionaries and check every header again. chimeproxy's protocol
(connections.LimitedHttpProtocol) instead calls the application's direct entry,

    await entry(scope, receive, respond)         # respond(status, headers, body)

with the same scope and `receive` as ASGI, and a `respond` that writes the status line, the
headers and the body as one piece, with uvicorn's own rules: the server's default headers
first, header names (each name once) and values checked with uvicorn's expressions, no body
for HEAD, `connection: close` when the connection will close, its write buffer drained first,
the cycle marked complete so that keep-alive, pipelining and graceful shutdown go on as before.

The application's headers must be lower-case and hold a correct `content-length`
(ChimeProxyApp sets it on every answer). A request that carries X-Forwarded-For or
X-Forwarded-Proto takes the ASGI path whole, through uvicorn's ProxyHeadersMiddleware when
it is on, so a trusted proxy's headers mean exactly what they meant; without them that
middleware changes nothing, so skipping it is the same. Any other application (or uvicorn
wrapping it otherwise, as its trace log does) is served through ASGI unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    RequestResponseCycle,
)

Headers = list[tuple[bytes, bytes]]
Respond = Callable[[int, Headers, bytes], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
DirectEntry = Callable[[dict[str, Any], Receive, Respond], Awaitable[None]]

# The attribute an application names its direct entry by.
ENTRY_ATTRIBUTE = "answer_directly"
_FORWARDED = (b"x-forwarded-for", b"x-forwarded-proto")
# Header names found valid: the application's few names, checked once rather than by a regular
# expression on every answer. Bounded, whatever an application sends.
_VALID_NAMES: set[bytes] = set()
MAX_VALID_NAMES = 256


def direct_entry(app: Any) -> tuple[DirectEntry | None, bool]:
    """(The application's direct entry or None, whether uvicorn's proxy headers middleware
    wraps it): `app` is what uvicorn serves (`Config.loaded_app`)."""
    forwarded = isinstance(app, ProxyHeadersMiddleware)
    inner = app.app if forwarded else app
    return getattr(inner, ENTRY_ATTRIBUTE, None), forwarded


def _nothing() -> None:
    pass


async def run(cycle: RequestResponseCycle, entry: DirectEntry, app: Any, forwarded: bool) -> None:
    """Serve one request through `entry`, or through ASGI (`app`) when it carries a proxy's
    forwarded headers; a failure is answered and logged as uvicorn's `run_asgi` does."""
    if forwarded:
        for name, _ in cycle.scope["headers"]:
            if name in _FORWARDED:
                await cycle.run_asgi(app)
                return
    try:
        await entry(cycle.scope, cycle.receive, functools.partial(respond, cycle))  # type: ignore[arg-type]
    except BaseException as exc:
        cycle.logger.error("Exception in ASGI application\n", exc_info=exc)
        if not cycle.response_started:
            await cycle.send_500_response()
        else:
            cycle.transport.close()
    else:
        if not cycle.response_started and not cycle.disconnected:
            cycle.logger.error("ASGI callable returned without starting response.")
            await cycle.send_500_response()
    finally:
        cycle.on_response = _nothing  # as run_asgi: no reference cycle through the protocol


async def respond(cycle: RequestResponseCycle, status: int, headers: Headers, body: bytes) -> None:
    """Write a whole answer on the cycle's connection (see the module's docstring)."""
    if cycle.flow.write_paused and not cycle.disconnected:
        await cycle.flow.drain()
    if cycle.disconnected:
        return
    if cycle.response_started:
        raise RuntimeError("An answer was already sent for this request.")
    parts = [STATUS_LINE[status]]
    for name, value in cycle.default_headers:
        parts += (name, b": ", value, b"\r\n")
    for name, value in headers:
        if name not in _VALID_NAMES:
            if HEADER_RE.search(name):
                raise RuntimeError("Invalid HTTP header name.")
            if len(_VALID_NAMES) < MAX_VALID_NAMES:
                _VALID_NAMES.add(name)
        if HEADER_VALUE_RE.search(value):
            raise RuntimeError("Invalid HTTP header value.")
        parts += (name, b": ", value, b"\r\n")
    if not cycle.keep_alive:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    if cycle.scope["method"] != "HEAD":
        parts.append(body)
    cycle.response_started = True
    cycle.waiting_for_100_continue = False
    cycle.transport.write(b"".join(parts))
    cycle.response_complete = True
    cycle.message_event.set()
    if not cycle.keep_alive:
        cycle.transport.close()
    cycle.on_response()
