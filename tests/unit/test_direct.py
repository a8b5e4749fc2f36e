"""chimeproxy.direct against uvicorn's own request cycle, on a transport that records what
would have gone on the wire."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from chimeproxy import direct

DATE = (b"date", b"Thu, 03 Dec 2026 23:00:00 GMT")


class Wire:
    """A transport: what was written, and whether it was closed."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _cycle(
    wire: Wire,
    method: str = "GET",
    headers: list[tuple[bytes, bytes]] | None = None,
    keep_alive: bool = True,
) -> tuple[RequestResponseCycle, list[str]]:
    answered: list[str] = []
    scope: Any = {
        "type": "http",
        "method": method,
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": headers or [],
        "client": ("127.0.0.1", 50000),
    }
    cycle = RequestResponseCycle(
        scope=scope,
        transport=wire,  # type: ignore[arg-type]
        flow=FlowControl(wire),  # type: ignore[arg-type]
        logger=logging.getLogger("test.direct"),
        access_logger=logging.getLogger("test.direct.access"),
        access_log=False,
        default_headers=[DATE],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=keep_alive,
        on_response=lambda: answered.append("done"),
    )
    return cycle, answered


ANSWER = [(b"content-length", b"2"), (b"content-type", b"application/json")]


def test_an_answer_leaves_in_one_write_with_the_server_s_headers_first() -> None:
    wire = Wire()
    cycle, answered = _cycle(wire)
    asyncio.run(direct.respond(cycle, 200, ANSWER, b"{}"))
    assert wire.writes == [
        b"HTTP/1.1 200 OK\r\n"
        b"date: Thu, 03 Dec 2026 23:00:00 GMT\r\n"
        b"content-length: 2\r\ncontent-type: application/json\r\n\r\n{}"
    ]
    assert cycle.response_started and cycle.response_complete
    assert cycle.message_event.is_set()
    assert answered == ["done"]
    assert not wire.closed


def test_a_closing_connection_says_so_and_closes() -> None:
    wire = Wire()
    cycle, answered = _cycle(wire, keep_alive=False)
    asyncio.run(direct.respond(cycle, 404, ANSWER, b"{}"))
    assert wire.writes[0].startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert b"\r\nconnection: close\r\n\r\n{}" in wire.writes[0]
    assert wire.closed
    assert answered == ["done"]


def test_head_carries_no_body() -> None:
    wire = Wire()
    cycle, _ = _cycle(wire, method="HEAD")
    asyncio.run(direct.respond(cycle, 200, ANSWER, b"{}"))
    assert wire.writes[0].endswith(b"content-type: application/json\r\n\r\n")


@pytest.mark.parametrize(
    ("header", "words"),
    [
        ((b"x-bad name", b"1"), "name"),
        ((b"x-injected", b"1\r\nset-cookie: a=b"), "value"),
    ],
)
def test_a_header_that_would_break_the_framing_is_refused(
    header: tuple[bytes, bytes], words: str
) -> None:
    wire = Wire()
    cycle, answered = _cycle(wire)
    with pytest.raises(RuntimeError, match=words):
        asyncio.run(direct.respond(cycle, 200, [*ANSWER, header], b"{}"))
    assert wire.writes == [] and answered == []
    assert not cycle.response_started


def test_header_names_are_checked_once_and_a_bad_one_every_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A valid name is remembered (a bounded few); an invalid one never is."""
    monkeypatch.setattr(direct, "_VALID_NAMES", set())
    monkeypatch.setattr(direct, "MAX_VALID_NAMES", 3)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="name"):
            asyncio.run(direct.respond(_cycle(Wire())[0], 200, [(b"x bad", b"1")], b""))
    names = [(f"x-name-{n}".encode(), b"1") for n in range(5)]
    asyncio.run(direct.respond(_cycle(Wire())[0], 200, [*ANSWER, *names], b"{}"))
    assert {b"content-length", b"content-type", b"x-name-0"} == direct._VALID_NAMES
    checked: list[bytes] = []
    monkeypatch.setattr(direct, "HEADER_RE", _Recording(direct.HEADER_RE, checked))
    asyncio.run(direct.respond(_cycle(Wire())[0], 200, [*ANSWER, *names], b"{}"))
    assert checked == [name for name, _ in names[1:]]  # only those not remembered


class _Recording:
    """A compiled expression that records what it searched."""

    def __init__(self, pattern: Any, seen: list[bytes]) -> None:
        self.pattern, self.seen = pattern, seen

    def search(self, text: bytes) -> Any:
        self.seen.append(text)
        return self.pattern.search(text)


def test_a_second_answer_is_refused() -> None:
    wire = Wire()
    cycle, _ = _cycle(wire)

    async def twice() -> None:
        await direct.respond(cycle, 200, ANSWER, b"{}")
        await direct.respond(cycle, 200, ANSWER, b"{}")

    with pytest.raises(RuntimeError, match="already"):
        asyncio.run(twice())
    assert len(wire.writes) == 1


def test_nothing_is_written_to_a_client_that_left() -> None:
    wire = Wire()
    cycle, answered = _cycle(wire)
    cycle.disconnected = True
    asyncio.run(direct.respond(cycle, 200, ANSWER, b"{}"))
    assert wire.writes == [] and answered == []


async def _refusing_entry(scope: Any, receive: Any, respond: Any) -> None:
    raise ValueError("a fault of the application")


async def _silent_entry(scope: Any, receive: Any, respond: Any) -> None:
    return None


async def _answering_then_failing_entry(scope: Any, receive: Any, respond: Any) -> None:
    await respond(200, ANSWER, b"{}")
    raise ValueError("after the answer")


@pytest.mark.parametrize("entry", [_refusing_entry, _silent_entry])
def test_an_entry_that_fails_or_does_not_answer_gets_uvicorn_s_500(
    entry: Any, caplog: pytest.LogCaptureFixture
) -> None:
    wire = Wire()
    cycle, _ = _cycle(wire)
    with caplog.at_level(logging.ERROR, logger="test.direct"):
        asyncio.run(direct.run(cycle, entry, None, forwarded=False))
    written = b"".join(wire.writes)
    assert written.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert written.endswith(b"Internal Server Error")
    assert caplog.records, "the failure is logged"
    assert cycle.on_response is direct._nothing  # no reference back to the protocol


def test_an_entry_that_fails_after_answering_closes_the_connection() -> None:
    wire = Wire()
    cycle, _ = _cycle(wire)
    asyncio.run(direct.run(cycle, _answering_then_failing_entry, None, forwarded=False))
    assert len(wire.writes) == 1 and wire.writes[0].startswith(b"HTTP/1.1 200 OK")
    assert wire.closed


class AsgiApp:
    """An ASGI application that records being called."""

    def __init__(self) -> None:
        self.scopes: list[Any] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def answer_directly(self, scope: Any, receive: Any, respond: Any) -> None:
        await respond(200, ANSWER, b"{}")


@pytest.mark.parametrize("name", [b"x-forwarded-for", b"x-forwarded-proto"])
def test_a_request_with_forwarded_headers_takes_the_asgi_path_when_they_are_believed(
    name: bytes,
) -> None:
    app = AsgiApp()
    wrapped = ProxyHeadersMiddleware(app, trusted_hosts="127.0.0.1")
    entry, forwarded = direct.direct_entry(wrapped)
    assert entry is not None and forwarded
    headers = [(b"host", b"x"), (name, b"https" if name.endswith(b"proto") else b"203.0.113.9")]
    wire = Wire()
    cycle, _ = _cycle(wire, headers=headers)
    asyncio.run(direct.run(cycle, entry, wrapped, forwarded))
    assert wire.writes[0].startswith(b"HTTP/1.1 204 ")
    (scope,) = app.scopes
    if name == b"x-forwarded-for":
        assert scope["client"][0] == "203.0.113.9"
    else:
        assert scope["scheme"] == "https"
    # Not believed (no proxy headers middleware): the direct path.
    wire = Wire()
    cycle, _ = _cycle(wire, headers=headers)
    asyncio.run(direct.run(cycle, entry, app, forwarded=False))
    assert wire.writes[0].startswith(b"HTTP/1.1 200 ")
    assert len(app.scopes) == 1


def test_the_entry_is_found_under_uvicorn_s_middleware_and_only_when_offered() -> None:
    app = AsgiApp()
    assert direct.direct_entry(app) == (app.answer_directly, False)

    async def plain(scope: Any, receive: Any, send: Any) -> None:
        pass

    assert direct.direct_entry(plain) == (None, False)
    assert direct.direct_entry(ProxyHeadersMiddleware(plain)) == (None, True)
