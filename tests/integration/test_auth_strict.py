"""Strict mode end to end: a real server verifying SigV4 against a credentials file, boto3 and
raw HTTP as callers. Every refusal the contract lists, every operation with the right keys, and
the start-up rules of both modes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import patch

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import httpx
import pytest

from chimeproxy.operations import load_operations
from chimeproxy.operations.registry import OPERATIONS
from chimeproxy.testing import ChimeProxyServer, free_port
from tests.conftest import IN_CI, database_url, make_client, write_credentials
from tests.integration.helpers import assert_refused, client_for, refused

ALICE = ("AKIDALICE00000000001", "alice-secret-key/+=", "111111111111")
BOB = ("AKIDBOB0000000000002", "bob-secret-key", "222222222222")
AMZ = "%Y%m%dT%H%M%SZ"


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChimeProxyServer]:
    directory = tmp_path_factory.mktemp("strict")
    credentials = write_credentials(directory, ALICE, BOB)
    server = ChimeProxyServer(
        database=database_url(directory),
        extra_args=["--auth", "strict", "--credentials", str(credentials), "--clock-control"],
        log_path=directory / "server.log",
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def alice(strict: ChimeProxyServer) -> Any:
    return client_for(strict, ALICE)


@contextmanager
def signing_clock(shift: timedelta) -> Iterator[None]:
    """botocore signs as if its clock were `shift` away from the real one."""
    real = botocore.auth.get_current_datetime
    with patch("botocore.auth.get_current_datetime", lambda: real() + shift):
        yield


def tamper(client: Any, change: Callable[[Any], None]) -> None:
    """Change each request after it was signed, just before it is sent."""

    def before_send(request: Any, **_: Any) -> None:
        change(request)

    client.meta.events.register("before-send.chime-sdk-voice", before_send)


# Start-up: which mode, and refusing to start.


def run_serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chimeproxy.cli", "serve", "--port", str(free_port()),
         "--database", database_url(tmp_path), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_refuses_to_listen_beyond_loopback_without_credentials(tmp_path: Path) -> None:
    result = run_serve(tmp_path, "--host", "0.0.0.0")
    assert result.returncode != 0
    assert "refusing to listen on 0.0.0.0 without authentication" in result.stderr
    assert "--credentials" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--auth", "strict"], "--auth strict needs --credentials FILE"),
        (["--credentials", "/nonexistent/credentials.csv"], "cannot read the credentials file"),
        (["--credentials", "{bad_header}"], "the header must be access_key_id"),
        (["--credentials", "{bad_account}"], ":2: needs an access key id"),
        (["--credentials", "{header_only}"], "no credentials"),
        (["--rate-limit", "-1"], "--rate-limit must be a positive number"),
    ],
)
def test_refuses_to_start_with_unusable_settings(
    tmp_path: Path, args: list[str], message: str
) -> None:
    files = {
        "bad_header": "key,secret,account\nAKID,s,111111111111\n",
        "bad_account": "access_key_id,secret_access_key,account_id\nAKID,secret,12345\n",
        "header_only": "access_key_id,secret_access_key,account_id\n",
    }
    for name, text in files.items():
        (tmp_path / f"{name}.csv").write_text(text)
    args = [arg.format(**{n: tmp_path / f"{n}.csv" for n in files}) for arg in args]
    result = run_serve(tmp_path, *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def health(server: ChimeProxyServer) -> dict[str, Any]:
    return httpx.get(f"{server.url}/_chimeproxy/health", timeout=10).json()


def test_loopback_without_flags_is_open(server: ChimeProxyServer) -> None:
    assert health(server)["auth"] == "open"
    assert '"authentication: open (any caller, loopback only)"' in server.log()


def test_any_address_with_credentials_is_strict(tmp_path: Path) -> None:
    credentials = write_credentials(tmp_path, ALICE)
    server = ChimeProxyServer(
        database=database_url(tmp_path),
        extra_args=["--host", "0.0.0.0", "--credentials", str(credentials)],
        log_path=tmp_path / "server.log",
    ).start()
    try:
        assert health(server)["auth"] == "strict"
        assert '"authentication: strict SigV4 verification"' in server.log()
        with refused(403, "UnrecognizedClientException"):
            make_client(server.url).list_voice_connectors()
        assert client_for(server, ALICE).list_voice_connectors()["VoiceConnectors"] == []
    finally:
        server.stop()


def test_open_on_any_address_must_be_asked_for_and_is_logged(tmp_path: Path) -> None:
    server = ChimeProxyServer(
        database=database_url(tmp_path),
        extra_args=["--host", "0.0.0.0", "--auth", "open"],
        log_path=tmp_path / "server.log",
    ).start()
    try:
        assert health(server)["auth"] == "open"
        assert "open on a non-loopback address" in server.log()
    finally:
        server.stop()


def test_strict_startup_is_logged(strict: ChimeProxyServer) -> None:
    assert health(strict)["auth"] == "strict"
    line = next(x for x in strict.log().splitlines() if "authentication: strict" in x)
    assert '"access_keys":2' in line
    assert ALICE[1] not in strict.log() and BOB[1] not in strict.log()


# The right credentials: every operation, ids that need percent-encoding.


def test_every_operation_works_with_the_right_credentials(strict: ChimeProxyServer) -> None:
    client = client_for(strict, ALICE)
    answered: list[str] = []

    def record(model: Any, http_response: Any, **_: Any) -> None:
        if http_response.status_code < 300:
            answered.append(model.name)

    client.meta.events.register("after-call.chime-sdk-voice", record)

    assert client.list_supported_phone_number_countries(ProductType="VoiceConnector")[
        "PhoneNumberCountries"
    ]
    # A query value with spaces: signed as `city=New%20York`.
    numbers = client.search_available_phone_numbers(
        Country="US", City="New York", State="NY", MaxResults=4
    )["E164PhoneNumbers"]
    assert len(numbers) == 4
    order = client.create_phone_number_order(
        ProductType="VoiceConnector", E164PhoneNumbers=numbers, Name="strict order"
    )["PhoneNumberOrder"]
    assert order["Status"] == "Successful"
    client.get_phone_number_order(PhoneNumberOrderId=order["PhoneNumberOrderId"])
    client.list_phone_number_orders(MaxResults=10)

    connector = client.create_voice_connector(Name="strict connector", RequireEncryption=False)[
        "VoiceConnector"
    ]["VoiceConnectorId"]
    client.get_voice_connector(VoiceConnectorId=connector)
    client.list_voice_connectors(MaxResults=5)
    client.update_voice_connector(
        VoiceConnectorId=connector, Name="strict connector renamed", RequireEncryption=True
    )
    pool, spare = numbers[:3], numbers[3]
    assert (
        client.associate_phone_numbers_with_voice_connector(
            VoiceConnectorId=connector, E164PhoneNumbers=pool
        )["PhoneNumberErrors"]
        == []
    )
    listed = client.list_phone_numbers(FilterName="VoiceConnectorId", FilterValue=connector)
    assert {n["E164PhoneNumber"] for n in listed["PhoneNumbers"]} == set(pool)
    # Phone number ids start with '+': the path carries %2B, signed as %252B.
    assert (
        client.get_phone_number(PhoneNumberId=pool[0])["PhoneNumber"]["E164PhoneNumber"]
        == (pool[0])
    )
    client.update_phone_number(PhoneNumberId=pool[0], CallingName="Alice Rides")

    client.put_voice_connector_proxy(
        VoiceConnectorId=connector, DefaultSessionExpiryMinutes=30, PhoneNumberPoolCountries=["US"]
    )
    client.get_voice_connector_proxy(VoiceConnectorId=connector)
    session = client.create_proxy_session(
        VoiceConnectorId=connector,
        ParticipantPhoneNumbers=["+14255550177", "+14255550178"],
        Capabilities=["Voice"],
        Name="strict session",
    )["ProxySession"]["ProxySessionId"]
    client.get_proxy_session(VoiceConnectorId=connector, ProxySessionId=session)
    client.list_proxy_sessions(VoiceConnectorId=connector, Status="Open", MaxResults=1)
    client.update_proxy_session(
        VoiceConnectorId=connector, ProxySessionId=session, Capabilities=["Voice"], ExpiryMinutes=5
    )
    client.delete_proxy_session(VoiceConnectorId=connector, ProxySessionId=session)
    client.delete_voice_connector_proxy(VoiceConnectorId=connector)
    assert (
        client.disassociate_phone_numbers_from_voice_connector(
            VoiceConnectorId=connector, E164PhoneNumbers=pool
        )["PhoneNumberErrors"]
        == []
    )
    client.delete_phone_number(PhoneNumberId=spare)
    client.restore_phone_number(PhoneNumberId=spare)
    client.delete_voice_connector(VoiceConnectorId=connector)

    load_operations()
    assert set(OPERATIONS) - set(answered) == set(), "operations not exercised in strict mode"


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda c: c.get_voice_connector(VoiceConnectorId="a/b c"), "BadRequestException"),
        (lambda c: c.get_phone_number(PhoneNumberId="+1 206 555 0100"), "NotFoundException"),
        (lambda c: c.get_phone_number(PhoneNumberId="%2B1206/..;é"), "NotFoundException"),
        (lambda c: c.get_phone_number_order(PhoneNumberOrderId="x?y=z&a"), "BadRequestException"),
        (lambda c: c.list_phone_numbers(FilterName="VoiceConnectorId", FilterValue="a b/c+d"),
         "NotFoundException"),
    ],
)  # fmt: skip
def test_ids_that_need_percent_encoding_pass_verification(
    alice: Any, call: Callable[[Any], Any], code: str
) -> None:
    """The signature is checked first: these get the operation's own answer, never a 403."""
    with refused(404 if code == "NotFoundException" else 400, code):
        call(alice)


JS_DIR = Path(__file__).resolve().parents[1] / "js"
JS_FLOW = """
import { ChimeSDKVoiceClient, GetPhoneNumberCommand, SearchAvailablePhoneNumbersCommand,
         CreateVoiceConnectorCommand } from "@aws-sdk/client-chime-sdk-voice";
const [endpoint, key, secret, wrong, number] = process.argv.slice(1);
const make = (s) => new ChimeSDKVoiceClient({ region: "us-east-1", endpoint,
  credentials: { accessKeyId: key, secretAccessKey: s } });
const client = make(secret);
const got = await client.send(new GetPhoneNumberCommand({ PhoneNumberId: number }));
const found = await client.send(new SearchAvailablePhoneNumbersCommand(
  { Country: "US", City: "Salt Lake City", State: "UT", MaxResults: 2 }));
const made = await client.send(new CreateVoiceConnectorCommand(
  { Name: "js strict", RequireEncryption: false }));
let refused = "accepted";
try { await make(wrong).send(new GetPhoneNumberCommand({ PhoneNumberId: number })); }
catch (error) { refused = error.name; }
console.log(JSON.stringify({ number: got.PhoneNumber.E164PhoneNumber,
  found: found.E164PhoneNumbers.length, connector: made.VoiceConnector.Name, refused }));
"""


def test_aws_sdk_for_javascript_v3_in_strict_mode(strict: ChimeProxyServer, alice: Any) -> None:
    node = shutil.which("node")
    if (
        node is None
        or not (JS_DIR / "node_modules" / "@aws-sdk" / "client-chime-sdk-voice").exists()
    ):
        if IN_CI:
            pytest.fail("node and tests/js/node_modules are required in CI (scripts/test.sh)")
        pytest.skip("needs node and `npm install` in tests/js (scripts/test.sh does it)")
    number = alice.search_available_phone_numbers(Country="US", AreaCode="702", MaxResults=1)[
        "E164PhoneNumbers"
    ][0]
    alice.create_phone_number_order(ProductType="VoiceConnector", E164PhoneNumbers=[number])
    result = subprocess.run(
        [node, "--input-type=module", "-e", JS_FLOW, strict.url, ALICE[0], ALICE[1], "wrong", number],
        capture_output=True, text=True, timeout=120, check=False, cwd=JS_DIR,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "number": number,
        "found": 2,
        "connector": "js strict",
        "refused": "InvalidSignatureException",
    }


def test_accounts_come_from_the_credentials_file(strict: ChimeProxyServer) -> None:
    alice, bob = client_for(strict, ALICE), client_for(strict, BOB)
    connector = alice.create_voice_connector(Name="alice only", RequireEncryption=False)[
        "VoiceConnector"
    ]
    assert f":{ALICE[2]}:" in connector["VoiceConnectorArn"]
    with refused(404, "NotFoundException", connector["VoiceConnectorId"]):
        bob.get_voice_connector(VoiceConnectorId=connector["VoiceConnectorId"])
    # Still alice's, and only hers.
    assert (
        alice.get_voice_connector(VoiceConnectorId=connector["VoiceConnectorId"])["VoiceConnector"]
        == connector
    )
    assert bob.list_voice_connectors()["VoiceConnectors"] == []


def test_presigned_urls_work(strict: ChimeProxyServer, alice: Any) -> None:
    number = alice.search_available_phone_numbers(Country="US", AreaCode="801", MaxResults=1)[
        "E164PhoneNumbers"
    ][0]
    alice.create_phone_number_order(ProductType="VoiceConnector", E164PhoneNumbers=[number])
    url = alice.generate_presigned_url(
        "get_phone_number", Params={"PhoneNumberId": number}, ExpiresIn=300
    )
    assert "%2B" in url
    answer = httpx.get(url, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["PhoneNumber"]["E164PhoneNumber"] == number
    url = alice.generate_presigned_url(
        "search_available_phone_numbers",
        Params={"Country": "US", "City": "Salt Lake City", "State": "UT", "MaxResults": 2},
        ExpiresIn=60,
    )
    answer = httpx.get(url, timeout=10)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["E164PhoneNumbers"]) == 2


def test_signature_time_uses_the_real_clock_not_clock_control(
    strict: ChimeProxyServer, alice: Any
) -> None:
    strict.advance(2 * 86400)
    alice.list_voice_connectors()
    with (
        signing_clock(timedelta(days=2)),
        refused(403, "InvalidSignatureException", "not yet current"),
    ):
        alice.list_voice_connectors()


# Every refusal.


def js_v2_error_code(response: httpx.Response) -> str:
    """The error code the AWS SDK for JavaScript v2 reports (its rest_json extractError: the
    body's __type, code or Code, else x-amzn-ErrorType)."""
    body = response.json()
    code = body.get("__type") or body.get("code") or body.get("Code")
    return (code or response.headers["x-amzn-errortype"]).split("#")[-1]


def signed_get(url: str, key: str, secret: str) -> httpx.Response:
    request = botocore.awsrequest.AWSRequest(method="GET", url=url)
    credentials = botocore.credentials.Credentials(key, secret)
    botocore.auth.SigV4Auth(credentials, "chime", "us-east-1").add_auth(request)
    return httpx.get(url, headers=dict(request.headers), timeout=10)


def test_authentication_errors_carry_their_type_as_code_for_every_sdk(
    strict: ChimeProxyServer,
) -> None:
    url = f"{strict.url}/voice-connectors"
    answers = {
        "MissingAuthenticationTokenException": httpx.get(url, timeout=10),
        "UnrecognizedClientException": signed_get(url, "AKIDNOBODY", "x"),
        "InvalidSignatureException": signed_get(url, ALICE[0], "not-alice-secret"),
        "IncompleteSignatureException": httpx.get(
            url, headers={"Authorization": "AWS4-HMAC-SHA256 Credential=AKIDALICE0"}, timeout=10
        ),
    }
    for error_type, answer in answers.items():
        assert answer.headers["x-amzn-errortype"] == error_type
        assert answer.json()["Code"] == error_type
        assert js_v2_error_code(answer) == error_type


def test_missing_authentication(strict: ChimeProxyServer) -> None:
    answer = httpx.get(f"{strict.url}/voice-connectors", timeout=10)
    assert_refused(answer, 403, "MissingAuthenticationTokenException", "Signature Version 4")


def test_unknown_access_key(strict: ChimeProxyServer) -> None:
    stranger = make_client(strict.url, aws_access_key_id="AKIDNOBODY", aws_secret_access_key="x")
    with refused(403, "UnrecognizedClientException", "access key id"):
        stranger.list_voice_connectors()


def test_wrong_secret(strict: ChimeProxyServer) -> None:
    impostor = client_for(strict, (ALICE[0], "not-alice-secret", ALICE[2]))
    with refused(
        403, "InvalidSignatureException", "Check your AWS Secret Access Key and signing method"
    ):
        impostor.list_voice_connectors()


def test_body_changed_after_signing(strict: ChimeProxyServer) -> None:
    client = client_for(strict, ALICE)
    # Same length, so only the signature can tell.
    tamper(
        client, lambda request: setattr(request, "body", request.body.replace(b"alpha", b"omega"))
    )
    before = client_for(strict, ALICE).list_voice_connectors()["VoiceConnectors"]
    with refused(403, "InvalidSignatureException"):
        client.create_voice_connector(Name="alpha", RequireEncryption=False)
    assert client_for(strict, ALICE).list_voice_connectors()["VoiceConnectors"] == before
    assert "omega" not in [c["Name"] for c in before]


def test_query_changed_after_signing(strict: ChimeProxyServer) -> None:
    client = client_for(strict, ALICE)
    tamper(client, lambda request: setattr(request, "url", request.url.replace("=2", "=3")))
    with refused(403, "InvalidSignatureException"):
        client.list_voice_connectors(MaxResults=2)


@pytest.mark.parametrize(
    ("shift", "fragment"),
    [(timedelta(minutes=-6), "Signature expired"), (timedelta(minutes=6), "not yet current")],
)
def test_request_time_more_than_five_minutes_off(
    alice: Any, shift: timedelta, fragment: str
) -> None:
    with signing_clock(shift), refused(403, "InvalidSignatureException", fragment, "clock"):
        alice.list_voice_connectors()


def test_request_time_within_five_minutes_is_accepted(alice: Any) -> None:
    for shift in (timedelta(minutes=-4), timedelta(minutes=4)):
        with signing_clock(shift):
            alice.list_voice_connectors()


def rewrite_authorization(request: Any, change: Callable[[str], str]) -> None:
    value = request.headers["Authorization"]
    text = value.decode() if isinstance(value, bytes) else value
    request.headers["Authorization"] = change(text)


def scope_rewrite(old: str, new: str) -> Callable[[Any], None]:
    return lambda request: rewrite_authorization(request, lambda text: text.replace(old, new))


def test_signature_for_another_region_is_refused(strict: ChimeProxyServer, alice: Any) -> None:
    west = client_for(strict, ALICE, region_name="us-west-2")
    west.create_voice_connector(Name="west", RequireEncryption=False)
    # A us-east-1 signature replayed under a us-west-2 scope does not open us-west-2.
    client = client_for(strict, ALICE)
    tamper(client, scope_rewrite("/us-east-1/chime/", "/us-west-2/chime/"))
    with refused(403, "InvalidSignatureException", "does not match"):
        client.list_voice_connectors()


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        ("/chime/aws4_request", "/s3/aws4_request", "scoped to correct service: 'chime'"),
        ("/us-east-1/", "/US_EAST/", "scoped to a valid region"),
        ("/aws4_request", "/aws5_request", "valid terminator"),
    ],
)
def test_wrong_credential_scope(
    strict: ChimeProxyServer, old: str, new: str, fragment: str
) -> None:
    client = client_for(strict, ALICE)
    tamper(client, scope_rewrite(old, new))
    with refused(403, "InvalidSignatureException", fragment):
        client.list_voice_connectors()


def test_scope_date_must_be_the_request_date(strict: ChimeProxyServer) -> None:
    client = client_for(strict, ALICE)

    tamper(
        client,
        lambda request: rewrite_authorization(
            request, lambda text: re.sub(r"/(\d{8})/", "/19990101/", text)
        ),
    )
    with refused(403, "InvalidSignatureException", "Date in Credential"):
        client.list_voice_connectors()


def test_signed_header_changed_after_signing(strict: ChimeProxyServer) -> None:
    client = client_for(strict, ALICE)

    def one_second_later(request: Any) -> None:
        value = request.headers["X-Amz-Date"]
        signed = datetime.strptime(value.decode() if isinstance(value, bytes) else value, AMZ)
        request.headers["X-Amz-Date"] = (signed + timedelta(seconds=1)).strftime(AMZ)

    tamper(client, one_second_later)
    with refused(403, "InvalidSignatureException"):
        client.list_voice_connectors()


def test_presigned_url_past_its_expiry(alice: Any) -> None:
    with signing_clock(timedelta(minutes=-20)):
        url = alice.generate_presigned_url("list_voice_connectors", ExpiresIn=600)
    answer = httpx.get(url, timeout=10)
    assert_refused(answer, 403, "InvalidSignatureException", "Request has expired",
                   "Generate a new presigned URL")  # fmt: skip


def test_presigned_url_with_a_changed_query(alice: Any) -> None:
    url = alice.generate_presigned_url("list_voice_connectors", Params={"MaxResults": 2})
    assert "max-results=2" in url
    answer = httpx.get(url.replace("max-results=2", "max-results=3"), timeout=10)
    assert_refused(answer, 403, "InvalidSignatureException")


def test_presigned_url_with_a_wrong_secret(strict: ChimeProxyServer) -> None:
    impostor = client_for(strict, (ALICE[0], "guess", ALICE[2]))
    url = impostor.generate_presigned_url("list_voice_connectors")
    assert_refused(httpx.get(url, timeout=10), 403, "InvalidSignatureException")


def test_malformed_authorization_is_incomplete_signature(strict: ChimeProxyServer) -> None:
    answer = httpx.get(
        f"{strict.url}/voice-connectors",
        headers={"Authorization": "AWS4-HMAC-SHA256 Credential=AKIDALICE00000000001"},
        timeout=10,
    )
    assert_refused(answer, 400, "IncompleteSignatureException", "Signature")


def test_refusals_leave_no_secret_in_the_log(strict: ChimeProxyServer) -> None:
    log = strict.log()
    assert ALICE[1] not in log and BOB[1] not in log
