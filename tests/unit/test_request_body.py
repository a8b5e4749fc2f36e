"""A request's body is read only when its headers frame one (RFC 9112 6.3): a Get, which has
neither Content-Length nor Transfer-Encoding, is answered without asking the server for a body
(one receive and its event less per request); a request that frames one is read whole."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from chimeproxy.app import ChimeProxyApp
from tests.conftest import in_process_settings

CONNECTOR = {"Name": "body", "AwsRegion": "us-east-1", "RequireEncryption": False}


async def _ask(
    app: ChimeProxyApp,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    chunks: list[bytes],
) -> tuple[int, dict[str, Any], int]:
    """(status, JSON body, receive calls) of one request whose body arrives as `chunks`."""
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8089"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8089),
    }
    calls = 0
    answer: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        body = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": body, "more_body": bool(chunks)}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        else:
            answer["body"] = message.get("body", b"")

    await app(scope, receive, send)
    return answer["status"], orjson.loads(answer["body"] or b"{}"), calls


@pytest.fixture
def app(tmp_path: Path) -> ChimeProxyApp:
    settings = in_process_settings(tmp_path)
    return ChimeProxyApp(settings, announce=False)


def test_a_body_is_read_only_when_the_headers_frame_one(app: ChimeProxyApp) -> None:
    body = orjson.dumps(CONNECTOR)

    async def main() -> None:
        await app.startup()
        try:
            status, _, calls = await _ask(app, "GET", "/voice-connectors", [], [])
            assert (status, calls) == (200, 0)
            status, _, calls = await _ask(
                app, "GET", "/voice-connectors", [(b"content-length", b"0")], []
            )
            assert (status, calls) == (200, 0)
            # Framed by its length, in two pieces: read whole.
            length = [(b"content-length", str(len(body)).encode())]
            status, created, calls = await _ask(
                app, "POST", "/voice-connectors", length, [body[:10], body[10:]]
            )
            assert (status, calls) == (201, 2)
            assert created["VoiceConnector"]["Name"] == "body"
            # Chunked: framed too, though no length is declared.
            chunked = [(b"transfer-encoding", b"chunked")]
            status, _, calls = await _ask(app, "POST", "/voice-connectors", chunked, [body])
            assert (status, calls) == (201, 1)
            # Neither header: no body, whatever the method; the operation says what is missing.
            status, refusal, calls = await _ask(app, "POST", "/voice-connectors", [], [body])
            assert (status, calls) == (400, 0)
            assert (
                refusal["Message"] == "The request body is empty, but this operation requires one."
            )
        finally:
            await app.shutdown()

    asyncio.run(main())
