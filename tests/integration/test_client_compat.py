"""The same proxy-session flow from the AWS CLI and from the older boto3 `chime` client."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from chimeproxy.testing import ChimeProxyServer
from tests.conftest import IN_CI, make_client
from tests.integration.helpers import aws_cli, make_connector, proxy_connector
from tests.reference import SAMPLE_BODY

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def run_cli(server: ChimeProxyServer, *args: str, env: dict[str, str] | None = None) -> Any:
    env = {**os.environ, **CREDENTIALS, "AWS_CONFIG_FILE": os.devnull, **(env or {})}
    result = subprocess.run(
        [aws_cli(), "--endpoint-url", server.url, "--output", "json", "chime-sdk-voice", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else None


def test_aws_cli_create_get_list_update_delete(server: ChimeProxyServer, client: Any) -> None:
    connector, numbers = proxy_connector(client, pool=2)
    created = run_cli(
        server, "create-proxy-session",
        "--voice-connector-id", connector,
        "--participant-phone-numbers", "+12065550150", "+14015550101",
        "--capabilities", "Voice", "SMS",
        "--expiry-minutes", "30",
    )["ProxySession"]  # fmt: skip
    session_id = created["ProxySessionId"]
    assert created["Status"] == "Open"
    assert {p["ProxyPhoneNumber"] for p in created["Participants"]} <= set(numbers)

    got = run_cli(
        server, "get-proxy-session",
        "--voice-connector-id", connector, "--proxy-session-id", session_id,
    )["ProxySession"]  # fmt: skip
    assert got["ExpiryMinutes"] == 30
    assert got["CreatedTimestamp"] == created["CreatedTimestamp"]

    listed = run_cli(server, "list-proxy-sessions", "--voice-connector-id", connector)
    assert [s["ProxySessionId"] for s in listed["ProxySessions"]] == [session_id]

    updated = run_cli(
        server, "update-proxy-session",
        "--voice-connector-id", connector, "--proxy-session-id", session_id,
        "--capabilities", "Voice",
    )["ProxySession"]  # fmt: skip
    assert updated["Capabilities"] == ["Voice"]

    run_cli(
        server, "delete-proxy-session",
        "--voice-connector-id", connector, "--proxy-session-id", session_id,
    )  # fmt: skip
    listed = run_cli(server, "list-proxy-sessions", "--voice-connector-id", connector)
    assert listed["ProxySessions"] == []


def test_the_aws_cli_example_session_answers_as_the_example_and_the_reference_sample(
    server: ChimeProxyServer,
) -> None:
    """The AWS CLI's example of create-proxy-session (participants +14015550101 +12065550100,
    capabilities Voice SMS, no expiry) answers capabilities sorted, participants by number and
    ExpiryMinutes 60; GetProxySession of that session is the reference sample byte for byte but
    for the ids and timestamps, which no server can choose."""
    # An account of its own, so that the example's proxy number is free to order.
    client = make_client(server.url, aws_access_key_id="913913913913")
    connector = make_connector(client)
    order = client.create_phone_number_order(
        ProductType="VoiceConnector", E164PhoneNumbers=["+19135550199"]
    )["PhoneNumberOrder"]
    assert order["Status"] == "Successful"
    client.associate_phone_numbers_with_voice_connector(
        VoiceConnectorId=connector, E164PhoneNumbers=["+19135550199"]
    )
    client.put_voice_connector_proxy(
        VoiceConnectorId=connector, DefaultSessionExpiryMinutes=60, PhoneNumberPoolCountries=["US"]
    )
    env = {"AWS_ACCESS_KEY_ID": "913913913913"}
    created = run_cli(
        server, "create-proxy-session",
        "--voice-connector-id", connector,
        "--participant-phone-numbers", "+14015550101", "+12065550100",
        "--capabilities", "Voice", "SMS",
        env=env,
    )  # fmt: skip
    session = created["ProxySession"]
    stamp = session["CreatedTimestamp"]
    assert created == {
        "ProxySession": {
            "VoiceConnectorId": connector,
            "ProxySessionId": session["ProxySessionId"],
            "Status": "Open",
            "ExpiryMinutes": 60,
            "Capabilities": ["SMS", "Voice"],
            "CreatedTimestamp": stamp,
            "UpdatedTimestamp": stamp,
            "Participants": [
                {"PhoneNumber": "+12065550100", "ProxyPhoneNumber": "+19135550199"},
                {"PhoneNumber": "+14015550101", "ProxyPhoneNumber": "+19135550199"},
            ],
        }
    }
    url = f"{server.url}/voice-connectors/{connector}/proxy-sessions/{session['ProxySessionId']}"
    signed = AWSRequest(method="GET", url=url)
    SigV4Auth(Credentials("913913913913", "secret"), "chime", "us-east-1").add_auth(signed)
    answer = httpx.get(url, headers=dict(signed.headers))
    assert answer.status_code == 200, answer.text
    expected = (
        SAMPLE_BODY.replace("123a4bc5-67d8-901e-2f3g-h4ghjk56789l", session["ProxySessionId"])
        .replace("abcdef1ghij2klmno3pqr4", connector)
        .replace("2020-04-15T16:10:10.288Z", stamp)
    )
    assert answer.content == expected.encode()
    listed = run_cli(server, "list-proxy-sessions", "--voice-connector-id", connector, env=env)
    assert listed["ProxySessions"] == [session]


LEGACY_FLOW = textwrap.dedent(
    """
    import json, sys
    import boto3
    url, connector = sys.argv[1], sys.argv[2]
    chime = boto3.client("chime", endpoint_url=url, region_name="us-east-1",
                         aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret")
    created = chime.create_proxy_session(
        VoiceConnectorId=connector, ParticipantPhoneNumbers=["+12065550160", "+14015550161"],
        Capabilities=["Voice"], NumberSelectionBehavior="AvoidSticky")["ProxySession"]
    got = chime.get_proxy_session(VoiceConnectorId=connector,
                                  ProxySessionId=created["ProxySessionId"])["ProxySession"]
    listed = chime.list_proxy_sessions(VoiceConnectorId=connector, Status="Open")
    proxy = chime.get_voice_connector_proxy(VoiceConnectorId=connector)["Proxy"]
    try:
        chime.get_proxy_session(VoiceConnectorId=connector, ProxySessionId="missing")
        missing = "found"
    except chime.exceptions.NotFoundException:
        missing = "NotFoundException"
    chime.delete_proxy_session(VoiceConnectorId=connector, ProxySessionId=created["ProxySessionId"])
    print(json.dumps({
        "boto3": boto3.__version__,
        "status": got["Status"],
        "behavior": got["NumberSelectionBehavior"],
        "created": got["CreatedTimestamp"].isoformat(),
        "listed": [s["ProxySessionId"] for s in listed["ProxySessions"]],
        "id": created["ProxySessionId"],
        "countries": proxy["PhoneNumberCountries"],
        "missing": missing,
    }))
    """
)


def test_legacy_boto3_chime_client(server: ChimeProxyServer, client: Any) -> None:
    python = os.environ.get("CHIMEPROXY_LEGACY_PYTHON")
    if not python:
        if IN_CI:
            pytest.fail("CHIMEPROXY_LEGACY_PYTHON must point at boto3 1.34's Python in CI")
        pytest.skip(
            "set CHIMEPROXY_LEGACY_PYTHON to a Python with boto3 1.34 (scripts/test.sh does)"
        )
    connector, _ = proxy_connector(client, pool=1)
    result = subprocess.run(
        [python, "-c", LEGACY_FLOW, server.url, connector],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["boto3"].startswith("1.34.")
    assert outcome["status"] == "Open"
    assert outcome["behavior"] == "AvoidSticky"
    assert outcome["listed"] == [outcome["id"]]
    assert outcome["countries"] == ["US"]
    assert outcome["missing"] == "NotFoundException"


JS_DIR = Path(__file__).resolve().parents[1] / "js"


def test_aws_sdk_for_javascript_v3(server: ChimeProxyServer, client: Any) -> None:
    node = shutil.which("node")
    installed = (JS_DIR / "node_modules" / "@aws-sdk" / "client-chime-sdk-voice").exists()
    if node is None or not installed:
        if IN_CI:
            pytest.fail("node and tests/js/node_modules are required in CI (scripts/test.sh)")
        pytest.skip("needs node and `npm install` in tests/js (scripts/test.sh does it)")
    connector, _ = proxy_connector(client, pool=1)
    result = subprocess.run(
        [node, str(JS_DIR / "proxy_flow.mjs"), connector],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=JS_DIR,
        env={**os.environ, "AWS_ENDPOINT_URL_CHIME_SDK_VOICE": server.url},
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["status"] == "Open"
    assert outcome["expiry"] == 15
    assert outcome["participants"] == ["+12065550170", "+14015550171"]
    assert outcome["listed"] == [outcome["id"]]
    assert outcome["missing"] == "NotFoundException"
    assert outcome["badRequest"] == "BadRequestException"
