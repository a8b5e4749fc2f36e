"""Nothing sensitive in the logs: a strict server at debug level runs a proxy-session flow with
known participant numbers plus bad requests that carry those numbers in paths, queries and
bodies; its log holds request ids and structured fields, never a number or a secret."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from chimeproxy.logs import REDACTED, JsonFormatter, redact
from chimeproxy.testing import ChimeProxyServer
from tests.conftest import database_url, make_client, start_strict_server
from tests.integration.faults import running
from tests.integration.helpers import (
    assert_refused,
    client_for,
    order_numbers,
    refused,
    wait_until,
)

KEY, SECRET, ACCOUNT = "AKIDLOGS000000000001", "s3cr3t-never-logged/abc+XYZ", "666666666666"
PARTICIPANTS = ("+14155550123", "+16175550124")


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChimeProxyServer]:
    directory = tmp_path_factory.mktemp("logs")
    server = start_strict_server(directory, KEY, SECRET, ACCOUNT, "--log-level", "debug")
    yield server
    server.stop()


def signed(
    server: ChimeProxyServer, method: str, path: str, body: bytes = b"", secret: str = SECRET
) -> httpx.Response:
    """A raw request signed with botocore, for paths and bodies boto3 would never send."""
    request = AWSRequest(
        method=method,
        url=f"{server.url}{path}",
        data=body,
        headers={"Content-Type": "application/json"} if body else {},
    )
    SigV4Auth(Credentials(KEY, secret), "chime", "us-east-1").add_auth(request)
    prepared = request.prepare()
    return httpx.request(method, prepared.url, headers=dict(prepared.headers), content=body)


def test_a_flow_and_bad_requests_leave_no_number_or_secret_in_the_log(
    logged: ChimeProxyServer,
) -> None:
    client = client_for(logged, (KEY, SECRET, ACCOUNT))
    request_ids: list[str] = []
    messages: list[str] = []

    def record(http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
        request_ids.append(http_response.headers["x-amzn-requestid"])
        if "Error" in parsed:
            messages.append(parsed["Error"]["Message"])

    client.meta.events.register("after-call.chime-sdk-voice", record)

    pool = order_numbers(client, 2, AreaCode="510")
    connector = client.create_voice_connector(Name="logs", RequireEncryption=False)[
        "VoiceConnector"
    ]["VoiceConnectorId"]
    client.associate_phone_numbers_with_voice_connector(
        VoiceConnectorId=connector, E164PhoneNumbers=pool
    )
    client.put_voice_connector_proxy(
        VoiceConnectorId=connector,
        DefaultSessionExpiryMinutes=60,
        PhoneNumberPoolCountries=["US"],
        FallBackPhoneNumber="+15105550199",
    )
    session = client.create_proxy_session(
        VoiceConnectorId=connector,
        ParticipantPhoneNumbers=list(PARTICIPANTS),
        Capabilities=["Voice", "SMS"],
        Name="ride 42",
    )["ProxySession"]["ProxySessionId"]
    client.get_proxy_session(VoiceConnectorId=connector, ProxySessionId=session)
    client.list_proxy_sessions(VoiceConnectorId=connector)
    client.get_phone_number(PhoneNumberId=pool[0])
    client.update_phone_number(PhoneNumberId=pool[0], CallingName="Rides Inc")

    # Bad requests through boto3: each carries a number somewhere.
    with refused(404, "NotFoundException"):
        client.get_phone_number(PhoneNumberId=PARTICIPANTS[0])
    with refused(404, "NotFoundException"):
        client.delete_phone_number(PhoneNumberId=PARTICIPANTS[1].lstrip("+"))
    for pair in (
        [PARTICIPANTS[0], PARTICIPANTS[0]],
        [PARTICIPANTS[0], pool[1]],
        [PARTICIPANTS[0], "+1617555012x"],
    ):
        with refused(400, "BadRequestException", "ParticipantPhoneNumbers"):
            client.create_proxy_session(
                VoiceConnectorId=connector, ParticipantPhoneNumbers=pair, Capabilities=["Voice"]
            )
    with refused(404, "NotFoundException", "nosuchconnector0000000"):
        client.disassociate_phone_numbers_from_voice_connector(
            VoiceConnectorId="nosuchconnector0000000", E164PhoneNumbers=list(PARTICIPANTS)
        )

    # Bad requests boto3 would not send.
    number_path = f"/phone-numbers/%2B{PARTICIPANTS[0][1:]}"
    raw = [
        (signed(logged, "GET", number_path + "/extra"), 404, "UnknownOperationException"),
        (signed(logged, "GET", f"/phone-numbers/{PARTICIPANTS[0][1:]}/x/y"), 404,
         "UnknownOperationException"),
        (signed(logged, "GET", number_path, secret="wrong"), 403, "InvalidSignatureException"),
        (signed(logged, "POST", f"/voice-connectors/{connector}/proxy-sessions",
                b'{"ParticipantPhoneNumbers": ["' + PARTICIPANTS[0].encode() + b'", }'),
         400, "BadRequestException"),
        (signed(logged, "POST", f"/voice-connectors/{connector}/proxy-sessions",
                b'{"ParticipantPhoneNumbers": ["' + PARTICIPANTS[0].encode() + b'"], '
                b'"ParticipantPhoneNumbers": []}'),
         400, "BadRequestException"),
        (httpx.get(f"{logged.url}{number_path}"), 403, "MissingAuthenticationTokenException"),
        (httpx.get(f"{logged.url}/_chimeproxy{number_path}"), 404, "UnknownOperationException"),
    ]  # fmt: skip
    for answer, status, error_type in raw:
        messages.append(assert_refused(answer, status, error_type).message)
        request_ids.append(answer.headers["x-amzn-requestid"])

    # Lines are written by a thread of their own, in order: the last request's line is the last.
    wait_until(lambda: request_ids[-1] in logged.log(), "the last request's access line")
    log = logged.log()
    numbers = [*PARTICIPANTS, *pool, "+15105550199"]
    forms = [form for n in numbers for form in (n, n[1:], f"%2B{n[1:]}")]
    leaked = [form for form in forms if form in log]
    assert leaked == [], f"numbers in the server log: {leaked}"
    assert SECRET not in log and "s3cr3t" not in log
    for message in messages:
        assert not [form for form in forms if form in message], message

    # Structured: one JSON object per line, and an access line for every request id.
    lines = [orjson.loads(line) for line in log.splitlines() if line.strip()]
    access = {line["request_id"]: line for line in lines if line["logger"] == "chimeproxy.access"}
    for request_id in request_ids:
        assert uuid.UUID(request_id)
        assert request_id in access
    sample = access[request_ids[0]]
    assert {"operation", "method", "status", "error", "account", "ms"} <= sample.keys()
    assert sample["account"] == ACCOUNT


def test_unknown_path_messages_show_the_path_redacted(logged: ChimeProxyServer) -> None:
    answer = signed(logged, "GET", "/phone-numbers/%2B14155550123/extra")
    refusal = assert_refused(answer, 404, "UnknownOperationException")
    assert refusal.message == f"No operation matches GET /phone-numbers/{REDACTED}/extra."


# The formatter itself, in process.


def format_record(logger: logging.Logger, emit: Any) -> dict[str, Any]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.propagate = False
    try:
        emit()
    finally:
        logger.removeHandler(handler)
    return orjson.loads(stream.getvalue())


def test_formatter_redacts_messages_exceptions_and_extras() -> None:
    logger = logging.getLogger("chimeproxy.test-logs")

    def emit() -> None:
        try:
            raise ValueError("INSERT failed for ('+12065550100', '14255550101')")
        except ValueError:
            logger.exception(
                "lookup of %s failed",
                "/phone-numbers/%2B12065550100",
                extra={"request_id": "r-1", "account": "111111111111", "to": ["+12065550100"]},
            )

    document = format_record(logger, emit)
    text = orjson.dumps(document).decode()
    assert "2065550100" not in text and "4255550101" not in text
    assert document["message"] == f"lookup of /phone-numbers/{REDACTED} failed"
    assert document["account"] == "111111111111"  # account ids stay readable
    assert document["to"] == [REDACTED]
    assert document["request_id"] == "r-1"
    assert document["level"] == "error"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("+12065550100", REDACTED),
        ("%2b12065550100", REDACTED),
        ("/phone-numbers/12065550100/x", f"/phone-numbers/{REDACTED}/x"),
        ("abcdef1ghij2klmno3pqr4", "abcdef1ghij2klmno3pqr4"),
        ("00000000-0000-4000-8000-000000000000", "00000000-0000-4000-8000-000000000000"),
        ("port 8089 took 12.5 ms", "port 8089 took 12.5 ms"),
    ],
)
def test_redact(text: str, shown: str) -> None:
    assert redact(text) == shown


@pytest.mark.parametrize(
    ("workers", "strict"), [(1, False), (3, False), (1, True), (2, True)], ids=str
)
def test_every_line_is_plain_json_and_the_first_names_the_auth_mode(
    tmp_path: Path, workers: int, strict: bool
) -> None:
    """uvicorn's lines carried `color_message` with terminal escapes, and with --workers its
    own lines came before the authentication line the README promises first."""
    extra = ["--workers", str(workers)]
    if strict:
        credentials = tmp_path / "credentials.csv"
        credentials.write_text(f"access_key_id,secret_access_key,account_id\n{KEY},s,{ACCOUNT}\n")
        credentials.chmod(0o644)  # readable by others: a warning, after the mode line
        extra += ["--credentials", str(credentials)]
    server = ChimeProxyServer(
        database=database_url(tmp_path), extra_args=extra, log_path=tmp_path / "server.log"
    )
    with running(server):
        make_client(
            server.url, aws_access_key_id=KEY, aws_secret_access_key="s"
        ).list_voice_connectors()
    lines = [orjson.loads(line) for line in server.log().splitlines() if line.strip()]
    mode = "strict SigV4 verification" if strict else "open (any caller, loopback only)"
    assert lines[0]["message"] == f"authentication: {mode}", lines[:3]
    assert sum(line["message"].startswith("authentication:") for line in lines) == 1
    assert any("Uvicorn running" in line["message"] for line in lines)
    for line in lines:
        assert "color_message" not in line, line
        assert "\x1b" not in orjson.dumps(line).decode(), line
