"""The SMS relay against a real server: inbound webhooks (generic JSON and Amazon SNS, with
signature checks) relayed through the session to a stub outbound provider (a local HTTP server
standing in for an SMS webhook or AWS End User Messaging)."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from chimeproxy.dataplane.sms import keyword
from chimeproxy.testing import ChimeProxyServer
from tests.conftest import database_url, make_client
from tests.integration.certificates import self_signed
from tests.integration.helpers import assert_refused, interactions, new_session, person
from tests.integration.stubs import Recorder

TOPIC = "arn:aws:sns:us-east-1:123456789012:chimeproxy-inbound-sms"


# SNS messages signed the way SNS signs them, with a local key and certificate.


@dataclass
class Signer:
    key: rsa.RSAPrivateKey
    certificate_url: str

    def message(self, kind: str, *, version: str = "1", **members: str) -> dict[str, str]:
        message = {
            "Type": kind,
            "MessageId": str(uuid.uuid4()),
            "TopicArn": TOPIC,
            "Timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "SignatureVersion": version,
            "SigningCertURL": self.certificate_url,
            **members,
        }
        return self.sign(message)

    def sign(self, message: dict[str, str]) -> dict[str, str]:
        if message["Type"] == "Notification":
            names = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
        else:
            names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn",
                     "Type"]  # fmt: skip
        text = "".join(f"{name}\n{message[name]}\n" for name in names if name in message)
        digest = hashes.SHA1() if message["SignatureVersion"] == "1" else hashes.SHA256()
        signature = self.key.sign(text.encode(), padding.PKCS1v15(), digest)
        return {**message, "Signature": base64.b64encode(signature).decode()}

    def inbound_sms(self, sender: str, to: str, body: str, **extra: str) -> dict[str, str]:
        """An End User Messaging inbound-SMS notification."""
        document = {
            "originationNumber": sender,
            "destinationNumber": to,
            "messageKeyword": "KEYWORD_123456789012",
            "messageBody": body,
            "inboundMessageId": str(uuid.uuid4()),
            "previousPublishedMessageId": str(uuid.uuid4()),
        }
        return self.message(
            "Notification",
            Message=orjson.dumps(document).decode(),
            UnsubscribeURL=f"{self.certificate_url}?Action=Unsubscribe",
            **extra,
        )


def make_key_and_certificate() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    certificate = self_signed(key, "sns.amazonaws.com", days=1)
    return key, certificate.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def signer(recorder: Recorder) -> Signer:
    key, pem = make_key_and_certificate()
    recorder.files["/SimpleNotificationService-test.pem"] = pem
    recorder.files["/confirm"] = b"<ConfirmSubscriptionResponse/>"
    return Signer(key, f"{recorder.url}/SimpleNotificationService-test.pem")


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, recorder: Recorder
) -> Iterator[ChimeProxyServer]:
    """The module's server relays SMS to the recorder's /sms and trusts its SNS certificate."""
    directory = tmp_path_factory.mktemp("sms")
    running = ChimeProxyServer(
        database=database_url(directory),
        extra_args=[
            "--sms-provider",
            "webhook",
            "--sms-webhook-url",
            f"{recorder.url}/sms",
            "--sns-topic-arns",
            f"{TOPIC},arn:aws:sns:us-east-1:123456789012:other",
            "--sns-trusted-url-prefix",
            f"{recorder.url}/",
        ],
        log_path=directory / "server.log",
    ).start()
    yield running
    running.stop()


def inbound(server: ChimeProxyServer, sender: str, to: str, body: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/_chimeproxy/sms/inbound",
        json={"from": sender, "to": to, "body": body},
        timeout=20,
    )


def sns(server: ChimeProxyServer, message: dict[str, str]) -> httpx.Response:
    return httpx.post(
        f"{server.url}/_chimeproxy/sms/sns",
        content=orjson.dumps(message),
        headers={
            "Content-Type": "text/plain; charset=UTF-8",
            "x-amz-sns-message-type": message["Type"],
        },
        timeout=20,
    )


def sent_to(recorder: Recorder, number: str, path: str = "/sms") -> list[dict[str, Any]]:
    return [r.json() for r in recorder.received(path) if r.json().get("to") == number]


def assert_sns_refused(answer: httpx.Response, status: int, fragment: str) -> None:
    """The SNS webhook's refusal: `{"error": ...}` (SNS reads only the status; 4xx: no retry)."""
    assert answer.status_code == status, answer.text
    problem = answer.json()["error"]
    assert answer.json() == {"error": problem} and fragment in problem, problem


# The generic webhook.


def test_a_message_from_a_reaches_b_from_p_and_back(
    server: ChimeProxyServer, client: Any, recorder: Recorder
) -> None:
    connector_id, session_id, a, b, p = new_session(client, ("SMS",))
    answer = inbound(server, a, p, "Your driver is outside")
    assert answer.status_code == 200, answer.text
    assert answer.json()["action"] == "connect"
    assert answer.json()["outcome"] == "sent"
    assert sent_to(recorder, b) == [{"from": p, "to": b, "body": "Your driver is outside"}]

    assert inbound(server, b, p, "Coming").json()["outcome"] == "sent"
    assert sent_to(recorder, a) == [{"from": p, "to": a, "body": "Coming"}]
    status = client.get_proxy_session(VoiceConnectorId=connector_id, ProxySessionId=session_id)
    assert status["ProxySession"]["Status"] == "InProgress"
    recorded = interactions(server.url, connector_id, session_id)
    assert [(i["Kind"], i["Direction"], i["Outcome"]) for i in recorded] == [
        ("sms", "a-to-b", "sent"),
        ("sms", "b-to-a", "sent"),
    ]
    # Bodies are not kept unless --store-message-bodies.
    assert [i["MessageBody"] for i in recorded] == [None, None]
    assert "Your driver" not in server.log()


def test_a_stranger_or_a_voice_only_session_is_not_relayed(
    server: ChimeProxyServer, client: Any, recorder: Recorder
) -> None:
    _, _, a, b, p = new_session(client, ("Voice",))
    stranger = inbound(server, person(), p, "hello?")
    assert stranger.status_code == 200
    assert stranger.json() == {
        "action": "reject",
        "interaction_id": stranger.json()["interaction_id"],
        "outcome": "rejected",
        "status": 403,
        "reason": stranger.json()["reason"],
    }
    voice_only = inbound(server, a, p, "hello")
    assert (voice_only.json()["action"], voice_only.json()["status"]) == ("reject", 488)
    assert sent_to(recorder, b) == []


def test_a_provider_failure_answers_502_so_the_sender_retries(
    server: ChimeProxyServer, client: Any, recorder: Recorder
) -> None:
    _, _, a, b, p = new_session(client, ("SMS",))
    recorder.failures["/sms"] = 1
    failed = inbound(server, a, p, "one")
    assert failed.status_code == 502
    assert failed.json()["outcome"] == "failed"
    assert inbound(server, a, p, "one").json()["outcome"] == "sent"
    assert [m["body"] for m in sent_to(recorder, b)] == ["one", "one"]  # the refused one, then


def test_the_generic_webhook_refuses_a_malformed_body(server: ChimeProxyServer) -> None:
    for body in (
        {"from": "+12065550100", "to": "+12065550101"},
        {"from": 1, "to": "x", "body": ""},
    ):
        answer = httpx.post(f"{server.url}/_chimeproxy/sms/inbound", json=body, timeout=10)
        assert_refused(answer, 400, "BadRequestException", "from, to and body must be strings")


# Keywords.


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("STOP", "opted-out"),
        (" stop. ", "opted-out"),
        ("Unsubscribe", "opted-out"),
        ("opt-out", "opted-out"),
        ("STOPALL", "opted-out"),
        ("cancel", "opted-out"),
        ("END", "opted-out"),
        ("quit!", "opted-out"),
        ("start", "opted-in"),
        ("UNSTOP", "opted-in"),
        ("help", "help"),
        ("INFO", "help"),
        ("stop it", None),
        ("please cancel my ride", None),
        ("", None),
        ("STOP" * 10, None),
    ],
)
def test_keywords_are_whole_messages(body: str, expected: str | None) -> None:
    found = keyword(body)
    assert (found.value if found else None) == expected


def test_stop_is_not_relayed_and_holds_back_messages_until_start(
    server: ChimeProxyServer, client: Any, recorder: Recorder
) -> None:
    connector_id, session_id, a, b, p = new_session(client, ("SMS",))
    stop = inbound(server, a, p, "STOP")
    assert (stop.status_code, stop.json()["outcome"]) == (200, "opted-out")
    assert sent_to(recorder, b) == []

    held = inbound(server, b, p, "are you there?")
    assert held.json()["outcome"] == "recipient-opted-out"
    assert sent_to(recorder, a) == []

    assert inbound(server, a, p, "help").json()["outcome"] == "help"
    assert inbound(server, a, p, "Start").json()["outcome"] == "opted-in"
    assert inbound(server, b, p, "hello again").json()["outcome"] == "sent"
    assert [m["body"] for m in sent_to(recorder, a)] == ["hello again"]
    assert sent_to(recorder, b) == []

    outcomes = [i["Outcome"] for i in interactions(server.url, connector_id, session_id)]
    assert outcomes == ["opted-out", "recipient-opted-out", "help", "opted-in", "sent"]


def test_keywords_do_not_start_the_session(server: ChimeProxyServer, client: Any) -> None:
    connector_id, session_id, a, _, p = new_session(client, ("SMS",))
    inbound(server, a, p, "HELP")
    status = client.get_proxy_session(VoiceConnectorId=connector_id, ProxySessionId=session_id)
    assert status["ProxySession"]["Status"] == "Open"


# Amazon SNS.


@pytest.mark.parametrize("version", ["1", "2"])
def test_an_sns_notification_is_relayed(
    server: ChimeProxyServer, client: Any, recorder: Recorder, signer: Signer, version: str
) -> None:
    _, _, a, b, p = new_session(client, ("SMS",))
    message = signer.inbound_sms(a, p, f"via SNS v{version}")
    message = signer.sign({**message, "SignatureVersion": version})
    answer = sns(server, message)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outcome"] == "sent"
    assert sent_to(recorder, b) == [{"from": p, "to": b, "body": f"via SNS v{version}"}]


def test_an_sns_notification_with_a_subject_is_relayed(
    server: ChimeProxyServer, client: Any, recorder: Recorder, signer: Signer
) -> None:
    _, _, a, b, p = new_session(client, ("SMS",))
    answer = sns(server, signer.inbound_sms(a, p, "subject too", Subject="Inbound SMS"))
    assert answer.status_code == 200, answer.text
    assert [m["body"] for m in sent_to(recorder, b)] == ["subject too"]


def test_a_redelivered_sns_message_is_relayed_once(
    server: ChimeProxyServer, client: Any, recorder: Recorder, signer: Signer
) -> None:
    _, _, a, b, p = new_session(client, ("SMS",))
    message = signer.inbound_sms(a, p, "only once")
    assert sns(server, message).json()["outcome"] == "sent"
    assert sns(server, message).json() == {"duplicate": True}
    assert len(sent_to(recorder, b)) == 1


def test_forged_sns_messages_are_refused(
    server: ChimeProxyServer, client: Any, recorder: Recorder, signer: Signer
) -> None:
    _, _, a, b, p = new_session(client, ("SMS",))
    genuine = signer.inbound_sms(a, p, "genuine")
    tampered = {**genuine, "Message": genuine["Message"].replace("genuine", "forged!")}
    other_key = Signer(make_key_and_certificate()[0], signer.certificate_url)
    not_valid = "signature is not valid"
    not_sns_certificate = "SigningCertURL is not an SNS certificate URL"
    forgeries = {
        "tampered": (tampered, not_valid),
        "other key": (other_key.inbound_sms(a, p, "forged"), not_valid),
        "no signature": ({k: v for k, v in genuine.items() if k != "Signature"}, not_valid),
        "garbage signature": ({**genuine, "Signature": "not base64!"}, "not base64"),
        "unknown version": (
            signer.sign({**genuine, "SignatureVersion": "3"}),
            "unsupported SNS SignatureVersion",
        ),
        "other topic": (
            signer.sign({**genuine, "TopicArn": TOPIC + "-nope"}),
            "topic is not allowed",
        ),
        "untrusted cert host": (
            signer.sign(
                {
                    **genuine,
                    "SigningCertURL": "https://sns.us-east-1.amazonaws.com.example.net/c.pem",
                }
            ),
            not_sns_certificate,
        ),
        "cert over http": (
            signer.sign({**genuine, "SigningCertURL": "http://sns.us-east-1.amazonaws.com/c.pem"}),
            not_sns_certificate,
        ),
    }
    for message, fragment in forgeries.values():
        assert_sns_refused(sns(server, message), 403, fragment)
    assert sent_to(recorder, b) == []
    for body, status, fragment in (
        (b"not json", 400, "not an SNS message (JSON)"),
        (b"[]", 400, "not an SNS message"),
        (b'{"Type": "Notification"}', 403, "topic is not allowed"),
    ):
        answer = httpx.post(f"{server.url}/_chimeproxy/sms/sns", content=body, timeout=10)
        assert_sns_refused(answer, status, fragment)


def test_an_sns_subscription_is_confirmed(
    server: ChimeProxyServer, recorder: Recorder, signer: Signer
) -> None:
    token = uuid.uuid4().hex
    message = signer.message(
        "SubscriptionConfirmation",
        Message="You have chosen to subscribe to the topic.",
        Token=token,
        SubscribeURL=f"{recorder.url}/confirm?Action=ConfirmSubscription&Token={token}",
    )
    answer = sns(server, message)
    assert answer.status_code == 200, answer.text
    visits = [r.path for r in recorder.received("/confirm", "GET")]
    assert f"/confirm?Action=ConfirmSubscription&Token={token}" in visits


def test_an_sns_subscription_elsewhere_is_not_followed(
    server: ChimeProxyServer, recorder: Recorder, signer: Signer
) -> None:
    message = signer.message(
        "SubscriptionConfirmation",
        Message="You have chosen to subscribe to the topic.",
        Token="t",
        SubscribeURL="http://169.254.169.254/latest/meta-data/",
    )
    assert_sns_refused(sns(server, message), 403, "SubscribeURL is not an SNS URL")


def test_an_sns_unsubscribe_confirmation_is_acknowledged(
    server: ChimeProxyServer, recorder: Recorder, signer: Signer
) -> None:
    message = signer.message(
        "UnsubscribeConfirmation",
        Message="You have unsubscribed.",
        Token="t",
        SubscribeURL=f"{recorder.url}/confirm?Token=t",
    )
    assert sns(server, message).status_code == 200


# AWS End User Messaging as the outbound provider (a stub endpoint records the API call).


@pytest.fixture(scope="module")
def aws_server(
    tmp_path_factory: pytest.TempPathFactory, recorder: Recorder
) -> Iterator[ChimeProxyServer]:
    directory = tmp_path_factory.mktemp("sms-aws")
    recorder.replies["/"] = b'{"MessageId": "stub-message-1"}'
    running = ChimeProxyServer(
        database=database_url(directory),
        extra_args=[
            "--sms-provider",
            "aws",
            "--sms-aws-endpoint-url",
            recorder.url,
            "--sms-aws-region",
            "eu-west-1",
            "--store-message-bodies",
        ],
        env={
            "AWS_ACCESS_KEY_ID": "AKIDSTUB",
            "AWS_SECRET_ACCESS_KEY": "stub",
            "AWS_EC2_METADATA_DISABLED": "true",
        },
        log_path=directory / "server.log",
    ).start()
    yield running
    running.stop()


def test_aws_end_user_messaging_sends_from_p_to_b(
    aws_server: ChimeProxyServer, recorder: Recorder
) -> None:
    client = make_client(aws_server.url)
    connector_id, session_id, a, b, p = new_session(client, ("SMS",))
    answer = inbound(aws_server, a, p, "On my way")
    assert answer.status_code == 200, answer.text
    assert answer.json()["outcome"] == "sent"
    calls = [
        r
        for r in recorder.received("/")
        if r.headers.get("x-amz-target") == "PinpointSMSVoiceV2.SendTextMessage"
        and r.json().get("DestinationPhoneNumber") == b
    ]
    assert len(calls) == 1
    call = calls[0].json()
    assert call["OriginationIdentity"] == p
    assert call["MessageBody"] == "On my way"
    assert call["MessageType"] == "TRANSACTIONAL"
    assert "eu-west-1" in calls[0].headers["authorization"]
    # --store-message-bodies keeps them.
    recorded = interactions(aws_server.url, connector_id, session_id)
    assert [i["MessageBody"] for i in recorded] == ["On my way"]


def test_an_aws_refusal_is_a_failed_message(
    aws_server: ChimeProxyServer, recorder: Recorder
) -> None:
    client = make_client(aws_server.url)
    _, _, a, _, p = new_session(client, ("SMS",))
    recorder.failures["/"] = 10  # more than boto3's retries
    try:
        answer = inbound(aws_server, a, p, "lost")
    finally:
        recorder.failures["/"] = 0
    assert answer.status_code == 502
    assert answer.json()["outcome"] == "failed"
