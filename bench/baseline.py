"""The baseline: a bare ASGI app answering a fixed ~500-byte JSON body, on the same uvicorn
options `chimeproxy serve` uses (one worker, uvloop + httptools, no access log, no server
header). It is the ceiling for any Python ASGI app on this machine: chimeproxy's figures are
read as ratios to it.

Run: `python -m bench.baseline --port 8090`.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

# Shaped like a GetProxySession answer, so the bytes on the wire are alike.
BODY = orjson.dumps(
    {
        "ProxySession": {
            "Capabilities": ["Voice", "SMS"],
            "CreatedTimestamp": "2026-11-26T22:00:00.000Z",
            "EndedTimestamp": None,
            "ExpiryMinutes": None,
            "GeoMatchLevel": None,
            "GeoMatchParams": None,
            "Name": None,
            "NumberSelectionBehavior": None,
            "Participants": [
                {"PhoneNumber": "+12062000001", "ProxyPhoneNumber": "+12015550100"},
                {"PhoneNumber": "+12532000001", "ProxyPhoneNumber": "+12015550100"},
            ],
            "ProxySessionId": "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b",
            "Status": "Open",
            "UpdatedTimestamp": "2026-11-26T22:00:00.000Z",
            "VoiceConnectorId": "abcdef1ghij2klmno3pqr4",
        }
    }
)
HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(BODY)).encode()),
]

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Drain the request body (as any real app must), answer BODY."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # The options of chimeproxy.cli.serve, so only the app differs.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
        server_header=False,
    )


if __name__ == "__main__":
    main()
