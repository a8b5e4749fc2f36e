"""Raw HTTP/1.1 requests signed as boto3 signs them, for wrk to replay.

Each request is signed with botocore's own `SigV4Auth` (service `chime`, as the
`chime-sdk-voice` model's signingName) over the same headers boto3 signs (host, x-amz-date, and
content-type when there is a body); the unsigned headers boto3 adds afterwards (User-Agent,
amz-sdk-*) are added too, so the server parses what it parses in production. A signature stays
valid for the server's 5-minute clock-skew window, so requests are signed just before each run.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

# What boto3 1.44 sends; the exact version string does not matter to the server.
USER_AGENT = (
    "Boto3/1.44.8 md/Botocore#1.44.8 ua/2.1 os/linux md/arch#x86_64 lang/python#3.11 "
    "md/pyimpl#CPython cfg/retry-mode#standard Botocore/1.44.8"
)


@dataclass(frozen=True, slots=True)
class Call:
    """One API call before signing: method, path with query, JSON body or None."""

    method: str
    path: str
    body: dict[str, object] | None = None


class Signer:
    """Signs calls for one server with one access key, as boto3 would."""

    def __init__(self, host: str, access_key: str, secret_key: str, region: str) -> None:
        self.host = host
        self.auth = SigV4Auth(Credentials(access_key, secret_key), "chime", region)

    def raw(self, call: Call) -> bytes:
        """The request as bytes on the wire, with a fresh signature."""
        body = b"" if call.body is None else json.dumps(call.body).encode()
        headers = {"Content-Type": "application/json"} if call.body is not None else {}
        request = AWSRequest(
            call.method, f"http://{self.host}{call.path}", data=body, headers=headers
        )
        self.auth.add_auth(request)
        lines = [f"{call.method} {call.path} HTTP/1.1", f"Host: {self.host}"]
        if call.body is not None:
            lines.append("Content-Type: application/json")
        lines += [
            f"User-Agent: {USER_AGENT}",
            f"X-Amz-Date: {request.headers['X-Amz-Date']}",
            f"Authorization: {request.headers['Authorization']}",
            f"amz-sdk-invocation-id: {uuid.uuid4()}",
            "amz-sdk-request: attempt=1; max=1",
        ]
        if call.body is not None:
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def write(self, calls: Iterable[Call], path: Path) -> int:
        """Sign every call and write them length-prefixed for bench/replay.lua; returns count."""
        count = 0
        with path.open("wb") as out:
            for call in calls:
                raw = self.raw(call)
                out.write(f"{len(raw)}\n".encode() + raw)
                count += 1
        return count


def unsigned_route(host: str, caller: str, called: str) -> bytes:
    """A data-plane route request: loopback callers need no signature when no secret is set."""
    body = json.dumps({"caller": caller, "called": called, "kind": "voice"}).encode()
    head = (
        f"POST /_chimeproxy/route HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def write_raw(requests: Iterable[bytes], path: Path) -> int:
    """Write pre-built raw requests in the length-prefixed format of bench/replay.lua."""
    count = 0
    with path.open("wb") as out:
        for raw in requests:
            out.write(f"{len(raw)}\n".encode() + raw)
            count += 1
    return count
