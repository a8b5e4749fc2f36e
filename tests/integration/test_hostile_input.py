"""Hostile input on the wire: oversized bodies, headers and URLs, bytes that are not UTF-8,
deep or huge or duplicated JSON, odd media types and percent-encodings. Each answer is a clean
4xx, never a 5xx, a hang or a dropped connection."""

from __future__ import annotations

import contextlib
import re
import socket
from typing import Any

import httpx
import pytest

from chimeproxy.testing import ChimeProxyServer
from tests.integration.helpers import assert_refused, error_answer, make_connector

CONNECTOR = "abcdef1ghij2klmno3pqr4"
SESSION = "00000000-0000-4000-8000-000000000000"
JSON = {"content-type": "application/json"}


def raw_exchange(server: ChimeProxyServer, data: bytes, timeout: float = 20) -> bytes:
    """Send bytes as they are; the whole answer (the server closes the connection)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        # The server may answer and close before reading everything: then read the answer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                pytest.fail("the server did not answer: a hung worker")
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def raw_request(
    method: bytes, target: bytes, headers: list[tuple[bytes, bytes]] = (), body: bytes = b""
) -> bytes:
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: chimeproxy", b"Connection: close"]
    lines += [name + b": " + value for name, value in headers]
    lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def status_of(answer: bytes) -> int:
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", answer)
    assert match, answer[:200]
    return int(match.group(1))


def parsed(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a raw answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")[1:]
    headers = dict(line.split(": ", 1) for line in lines)
    return status_of(answer), headers, body


def create_connector(http: httpx.Client, body: Any, **headers: str) -> httpx.Response:
    return http.post("/voice-connectors", content=body, headers=headers or JSON)


def refused_create(
    http: httpx.Client, body: Any, status: int, error_type: str, *fragments: str, **headers: str
) -> None:
    """CreateVoiceConnector with this body is refused with this error and creates nothing."""
    before = http.get("/voice-connectors").json()
    assert_refused(create_connector(http, body, **headers), status, error_type, *fragments)
    assert http.get("/voice-connectors").json() == before


# Sizes.


def test_body_over_one_mebibyte_is_413(http: httpx.Client) -> None:
    body = b'{"Name": "' + b"a" * (1024 * 1024) + b'"}'
    refused_create(http, body, 413, "RequestEntityTooLargeException", "1048576")


def test_chunked_body_over_the_limit_is_413(http: httpx.Client) -> None:
    def chunks() -> Any:
        for _ in range(17):
            yield b" " * 65536

    refused_create(http, chunks(), 413, "RequestEntityTooLargeException", "1048576")


def test_body_just_under_the_limit_is_read(http: httpx.Client) -> None:
    body = b'{"Name": "x", "RequireEncryption": false, "Pad": "' + b"a" * 1_000_000 + b'"}'
    assert create_connector(http, body).status_code == 201


@pytest.mark.parametrize(
    "headers",
    [
        [(b"X-Big", b"a" * 40_000)],
        [(b"X-Huge", b"a" * 2_000_000)],
        [(b"X-H%d" % index, b"v") for index in range(5000)],
    ],
    ids=["40KB", "2MB", "5000-headers"],
)
def test_oversized_headers_are_431(
    server: ChimeProxyServer, headers: list[tuple[bytes, bytes]]
) -> None:
    answer = raw_exchange(server, raw_request(b"GET", b"/voice-connectors", headers))
    refusal = error_answer(*parsed(answer))
    assert (refusal.status, refusal.error_type) == (431, "RequestHeaderFieldsTooLargeException")
    assert "larger than 32768 bytes" in refusal.message


@pytest.mark.parametrize(
    "target",
    [
        b"/voice-connectors?" + b"max-results=1&" * 6000,  # 84 KB
        b"/voice-connectors/" + b"a" * 100_000,
    ],
    ids=["long-query", "long-path"],
)
def test_oversized_urls_are_a_clean_400(server: ChimeProxyServer, target: bytes) -> None:
    assert status_of(raw_exchange(server, raw_request(b"GET", target))) == 400


def test_a_long_query_within_limits_is_answered(http: httpx.Client) -> None:
    answer = http.get("/voice-connectors", params=[("next-token", "x" * 50_000)])
    assert_refused(answer, 400, "BadRequestException", "NextToken")


# Bytes that are not UTF-8.


@pytest.mark.parametrize(
    "body",
    [b'{"Name": "\xff", "RequireEncryption": false}', b'{"Name": "\xc0\xaf"}', b"\xfe\xff{}"],
)
def test_invalid_utf8_body_is_400(http: httpx.Client, body: bytes) -> None:
    refused_create(http, body, 400, "BadRequestException", "not valid JSON")


def test_lone_surrogate_escape_is_400(http: httpx.Client) -> None:
    body = b'{"Name": "\\ud800", "RequireEncryption": false}'
    refused_create(http, body, 400, "BadRequestException", "not valid JSON")


@pytest.mark.parametrize(
    "target",
    [b"/voice-connectors/\xff\xfe", b"/search?type=phone-numbers&city=\xff&state=WA"],
    ids=["path", "query"],
)
def test_raw_non_ascii_bytes_in_the_url_are_400(server: ChimeProxyServer, target: bytes) -> None:
    assert status_of(raw_exchange(server, raw_request(b"GET", target))) == 400


def test_percent_encoded_invalid_utf8_in_a_query_is_400(http: httpx.Client) -> None:
    answer = http.get("/search?type=phone-numbers&city=%FF%FE&state=WA")
    assert_refused(answer, 400, "BadRequestException", "City", "percent-encoded UTF-8")
    answer = http.get("/voice-connectors?next-token=%C0%AF")
    assert_refused(answer, 400, "BadRequestException", "NextToken")


# JSON that is deep, huge, duplicated or not JSON at all.


def nested(depth: int) -> bytes:
    return (
        b'{"Name": "x", "RequireEncryption": false, "Tags": ' + b"[" * depth + b"]" * depth + b"}"
    )


@pytest.mark.parametrize(
    ("depth", "fragment"),
    [(40, "nested deeper than 32 levels"), (1000, "nested deeper than 32 levels"),
     (200_000, "not valid JSON")],
)  # fmt: skip
def test_deeply_nested_json_is_400(http: httpx.Client, depth: int, fragment: str) -> None:
    refused_create(http, nested(depth), 400, "BadRequestException", fragment)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (b"1e400", "not valid JSON"),
        (b"-1e400", "not valid JSON"),
        (b"1" + b"0" * 400, "not valid JSON"),
        (b"1" + b"0" * 5000, "not valid JSON"),
        (b"1e20", "must be an integer"),
        (b"1.5", "must be an integer"),
        (b"2147483648", "must be from -2147483648 to 2147483647 (a 32-bit integer)"),
        (b"-2147483649", "(a 32-bit integer)"),
        (b"9223372036854775808", "(a 32-bit integer)"),
        (b"-9223372036854775809", "must be an integer"),  # beyond int64: orjson reads a float
        (b"NaN", "not valid JSON"),
        (b"Infinity", "not valid JSON"),
    ],
)
def test_huge_and_odd_numbers_are_400(
    http: httpx.Client, client: Any, value: bytes, fragment: str
) -> None:
    connector = make_connector(client)
    body = b'{"DefaultSessionExpiryMinutes": ' + value + b', "PhoneNumberPoolCountries": ["US"]}'
    answer = http.put(
        f"/voice-connectors/{connector}/programmable-numbers/proxy", content=body, headers=JSON
    )
    assert_refused(answer, 400, "BadRequestException", fragment)
    # No proxy configuration was made.
    answer = http.get(f"/voice-connectors/{connector}/programmable-numbers/proxy")
    assert_refused(answer, 404, "NotFoundException")


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b'{"Name": "a", "Name": "b", "RequireEncryption": false}', "'Name'"),
        (b'{"Name": "a", "RequireEncryption": false, "RequireEncryption": true}', "'Requi"),
        (b'{"Name": "a", "RequireEncryption": false, "Tags": [{"Key": "k", "Key": "j"}]}', "'Key'"),
        (b'{"Name": "a", "RequireEncryption": false, "x": 1, "x": 2}', "'x'"),
    ],
)
def test_duplicate_keys_are_400_naming_the_key(http: httpx.Client, body: bytes, key: str) -> None:
    refused_create(http, body, 400, "BadRequestException", "more than once", key)


def test_colons_inside_strings_are_not_mistaken_for_keys(http: httpx.Client) -> None:
    body = b'{"Name": "a", "RequireEncryption": false, "Pad": "::\\":\\\\:", "Q": [":", {"k:": 1}]}'
    assert create_connector(http, body).status_code == 201


def test_nul_characters_are_400(http: httpx.Client, client: Any) -> None:
    body = b'{"Name": "x", "RequireEncryption": false, "Tags": [{"Key": "k\\u0000", "Value": "v"}]}'
    refused_create(http, body, 400, "BadRequestException", "NUL")
    answer = http.get("/search", params={"type": "phone-numbers", "city": "a\x00", "state": "WA"})
    assert_refused(answer, 400, "BadRequestException", "City", "NUL")
    assert_refused(http.get("/phone-numbers/%2B1206%00"), 400, "BadRequestException", "NUL")


# Media types.


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/x-amz-json-1.1",
        "application/x-amz-json-1.0",
        "application/vnd.example+json",
    ],
)
def test_json_media_types_are_accepted(http: httpx.Client, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    request = http.build_request(
        "POST", "/voice-connectors", content=b'{"Name": "x", "RequireEncryption": false}'
    )
    request.headers.pop("content-type", None)
    request.headers.update(headers)
    assert http.send(request).status_code == 201


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/xml", "application/x-www-form-urlencoded", "multipart/form-data"],
)
def test_other_media_types_with_a_body_are_415(http: httpx.Client, content_type: str) -> None:
    body = b'{"Name": "x", "RequireEncryption": false}'
    refused_create(http, body, 415, "UnsupportedMediaTypeException", content_type,
                   "application/json", **{"content-type": content_type})  # fmt: skip


def test_media_type_of_a_bodiless_request_is_ignored(http: httpx.Client) -> None:
    assert http.get("/voice-connectors", headers={"content-type": "text/plain"}).status_code == 200


# Percent-encodings in ids.

ODD_IDS = ["%ZZ", "%", "%2", "%00", "%2F", "a%2Fb", "%2E%2E", "%C0%AF", "%E0%80%AF", "%ED%A0%80",
           "%FF", "%2B%2B1", "%E2%80%8B", "%20", "+", "%2B"]  # fmt: skip
ID_ROUTES = [
    ("GET", "/voice-connectors/{}"),
    ("DELETE", "/voice-connectors/{}"),
    ("GET", "/phone-numbers/{}"),
    ("POST", "/phone-numbers/{}?operation=restore"),
    ("GET", "/phone-number-orders/{}"),
    ("GET", f"/voice-connectors/{CONNECTOR}/proxy-sessions/{{}}"),
    ("DELETE", f"/voice-connectors/{CONNECTOR}/proxy-sessions/{{}}"),
    ("GET", f"/voice-connectors/{{}}/proxy-sessions/{SESSION}"),
]


@pytest.mark.parametrize("odd", ODD_IDS)
@pytest.mark.parametrize(("method", "route"), ID_ROUTES)
def test_odd_percent_encodings_in_ids_are_a_clear_4xx(
    server: ChimeProxyServer, method: str, route: str, odd: str
) -> None:
    target = route.format(odd).encode()
    answer = raw_exchange(server, raw_request(method.encode(), target))
    refusal = error_answer(*parsed(answer))
    assert (refusal.status, refusal.error_type) in {
        (400, "BadRequestException"),
        (404, "NotFoundException"),
    }, answer[:300]


# The server stays responsive.


def test_an_unfinished_request_does_not_block_others(
    server: ChimeProxyServer, http: httpx.Client
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as stalled:
        stalled.sendall(b"POST /voice-connectors HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")
        assert http.get("/voice-connectors").status_code == 200
        stalled.sendall(b"\r\n{")  # headers done, body never completes
        assert http.get("/voice-connectors").status_code == 200


def test_request_smuggling_shapes_are_refused(server: ChimeProxyServer) -> None:
    data = (
        b"POST /voice-connectors HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n"
    )
    assert status_of(raw_exchange(server, data)) == 400


def test_unknown_methods_are_refused(http: httpx.Client) -> None:
    answer = http.request("PATCH", "/voice-connectors")
    assert_refused(answer, 404, "UnknownOperationException", "PATCH /voice-connectors")
    # Not an HTTP method at all: the HTTP parser refuses it before the application sees it.
    assert http.request("FOO", "/voice-connectors").status_code == 400


def test_no_5xx_was_logged(server: ChimeProxyServer, http: httpx.Client) -> None:
    assert http.get("/_chimeproxy/health").status_code == 200
    assert '"status":5' not in server.log()
    assert "unhandled error" not in server.log()
