"""The wire protocol seen from raw HTTP: what boto3 would refuse to send, unknown routes,
unimplemented operations, error format and headers."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.parsers import RestJSONParser

from chimeproxy.protocol.model import operation_model
from chimeproxy.testing import ChimeProxyServer
from tests.conftest import BACKEND, database_url
from tests.integration.helpers import make_connector


@pytest.fixture(scope="module")
def http(server: ChimeProxyServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=10)


def assert_error(response: httpx.Response, status: int, error_type: str, *fragments: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["x-amzn-errortype"] == error_type
    assert uuid.UUID(response.headers["x-amzn-requestid"])
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"Code", "Message"}
    assert body["Code"] == error_type.removesuffix("Exception") or error_type in (
        "ThrottledClientException",
        "UnprocessableEntityException",
        # authentication errors carry their type as Code (protocol/errors.py)
        "MissingAuthenticationTokenException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "IncompleteSignatureException",
    )
    for fragment in fragments:
        assert fragment in body["Message"]
    return body


def test_health_reports_version_and_database(http: httpx.Client) -> None:
    answer = http.get("/_chimeproxy/health")
    assert answer.status_code == 200
    document = answer.json()
    assert document["status"] == "ok"
    assert document["database"] == BACKEND
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", document["version"])


def test_unknown_path_is_unknown_operation(http: httpx.Client) -> None:
    assert_error(http.get("/no-such-thing"), 404, "UnknownOperationException", "/no-such-thing")
    assert_error(http.delete("/voice-connectors"), 404, "UnknownOperationException")


def test_modelled_but_unimplemented_operation_is_501_naming_it(http: httpx.Client) -> None:
    answer = http.get("/sip-rules")
    assert answer.status_code == 501
    assert answer.headers["x-amzn-errortype"] == "NotImplementedException"
    assert "ListSipRules" in answer.json()["Message"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"42", "must be a JSON object"),
        (b"", "body is empty"),
        (b"   ", "body is empty"),
        (b'{"Name": "x"}', "Missing required member RequireEncryption"),
        (b'{"Name": 5, "RequireEncryption": false}', "Name: must be a string"),
        (b'{"Name": "", "RequireEncryption": false}', "Name: must have at least 1 characters"),
        (b'{"Name": "' + b"a" * 257 + b'", "RequireEncryption": false}', "at most 256"),
        (b'{"Name": "bad/name", "RequireEncryption": false}', "Name: must match the pattern"),
        (b'{"Name": "x", "RequireEncryption": "yes"}', "RequireEncryption: must be a boolean"),
        (b'{"Name": "x", "RequireEncryption": false, "AwsRegion": "mars-1"}', "must be one of"),
        (b'{"Name": "x", "RequireEncryption": false, "Tags": {}}', "Tags: must be a list"),
    ],
)
def test_bad_bodies_are_400_naming_member_and_rule(
    http: httpx.Client, body: bytes, fragment: str
) -> None:
    answer = http.post(
        "/voice-connectors", content=body, headers={"content-type": "application/json"}
    )
    assert_error(answer, 400, "BadRequestException", fragment)


def test_querystring_constraints(http: httpx.Client, client: Any) -> None:
    connector = make_connector(client)
    path = f"/voice-connectors/{connector}/proxy-sessions"
    assert_error(http.get(path, params={"max-results": "0"}), 400, "BadRequestException",
                 "MaxResults", "at least 1")  # fmt: skip
    assert_error(http.get(path, params={"max-results": "x"}), 400, "BadRequestException",
                 "MaxResults", "integer")  # fmt: skip
    assert_error(http.get(path, params={"status": "Gone"}), 400, "BadRequestException", "Status")
    assert_error(http.get(path, params={"next-token": "forged"}), 400, "BadRequestException",
                 "NextToken")  # fmt: skip


def test_uri_label_constraints(http: httpx.Client) -> None:
    answer = http.get("/voice-connectors/%20")
    assert_error(answer, 400, "BadRequestException", "VoiceConnectorId", "pattern")
    answer = http.get("/phone-numbers/%FF%FE")
    assert answer.status_code in (400, 404)
    assert answer.headers["x-amzn-errortype"] in ("BadRequestException", "NotFoundException")


def test_errors_parse_with_botocore(http: httpx.Client) -> None:
    answer = http.get("/voice-connectors/abcdef1ghij2klmno3pqr4")
    parsed = RestJSONParser().parse(
        {
            "status_code": answer.status_code,
            "headers": dict(answer.headers),
            "body": answer.content,
        },
        operation_model("GetVoiceConnector").output_shape,
    )
    assert parsed["Error"]["Code"] == "NotFoundException"
    assert parsed["ResponseMetadata"]["RequestId"] == answer.headers["x-amzn-requestid"]


def test_success_headers_and_content_length(http: httpx.Client) -> None:
    answer = http.get("/voice-connectors")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert int(answer.headers["content-length"]) == len(answer.content)
    assert uuid.UUID(answer.headers["x-amzn-requestid"])


def test_body_over_the_limit_is_413(http: httpx.Client) -> None:
    answer = http.post("/voice-connectors", content=b"{" + b" " * (1024 * 1024 + 10) + b"}")
    assert_error(answer, 413, "RequestEntityTooLargeException", "larger than")


def test_delete_answers_204_with_no_body(http: httpx.Client, client: Any) -> None:
    connector = make_connector(client)
    answer = http.delete(f"/voice-connectors/{connector}")
    assert answer.status_code == 204
    assert answer.content == b""
    assert "content-type" not in answer.headers


def test_clock_endpoint_exists_only_with_clock_control(tmp_path: Path) -> None:
    plain = ChimeProxyServer(database=database_url(tmp_path)).start()
    try:
        answer = httpx.post(f"{plain.url}/_chimeproxy/clock", json={"advance_seconds": 5})
        assert answer.status_code == 404
        assert answer.headers["x-amzn-errortype"] == "UnknownOperationException"
        assert "--clock-control" in answer.json()["Message"]  # names the flag that enables it
    finally:
        plain.stop()


def test_clock_control_rejects_bad_input(http: httpx.Client) -> None:
    for body in ({"advance_seconds": -1}, {"advance_seconds": "soon"}, {}, [1]):
        answer = http.post("/_chimeproxy/clock", json=body)
        assert_error(answer, 400, "BadRequestException", "advance_seconds")
