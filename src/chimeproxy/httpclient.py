"""Small outbound HTTP helpers: an asyncio POST that a task cancellation stops
at once (event webhooks) and blocking GET/POST for work that already runs in a worker thread."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import ssl
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from chimeproxy import __version__

USER_AGENT = f"chimeproxy/{__version__}"


class HttpError(Exception):
    """A request that got no usable answer (bad URL, network error, timeout)."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Callers vet the URLs they fetch; a redirect must not take them elsewhere."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)

# What a blocking request can raise for want of a usable answer; http.client.HTTPException (a
# connection closed or garbled mid-answer) is not an OSError.
_REQUEST_FAILURES = (urllib.error.URLError, OSError, ValueError, http.client.HTTPException)


async def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST `body` and answer the response status; only the status line is read."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpError(f"not an http(s) URL: {parts.scheme}://{parts.hostname}")
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [
        f"POST {target} HTTP/1.1",
        f"Host: {parts.netloc.rpartition('@')[2]}",
        f"User-Agent: {USER_AGENT}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                parts.hostname,
                port,
                ssl=ssl.create_default_context() if secure else None,
            )
            try:
                writer.write(request)
                await writer.drain()
                status_line = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError, ssl.SSLError):
                    await writer.wait_closed()
    except TimeoutError as exc:
        raise HttpError(f"no answer within {timeout}s") from exc
    except (OSError, ssl.SSLError) as exc:
        raise HttpError(f"connection failed: {exc.__class__.__name__}") from exc
    fields = status_line.split()
    if len(fields) < 2 or not fields[0].startswith(b"HTTP/") or not fields[1].isdigit():
        raise HttpError("the answer is not HTTP")
    return int(fields[1])


def fetch(url: str, *, timeout: float, limit: int = 64 * 1024) -> bytes:
    """GET `url` (blocking) and answer at most `limit` bytes of a 2xx body."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with _OPENER.open(request, timeout=timeout) as answer:
            return answer.read(limit)
    except _REQUEST_FAILURES as exc:
        raise HttpError(f"GET failed: {exc.__class__.__name__}") from exc


def post_blocking(url: str, body: bytes, headers: dict[str, str], *, timeout: float) -> int:
    """POST `body` (blocking) and answer the response status, 4xx and 5xx included."""
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"User-Agent": USER_AGENT, **headers}
    )
    try:
        with _OPENER.open(request, timeout=timeout) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except _REQUEST_FAILURES as exc:
        raise HttpError(f"POST failed: {exc.__class__.__name__}") from exc
