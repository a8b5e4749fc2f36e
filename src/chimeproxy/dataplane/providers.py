"""Outbound SMS providers: where the relay hands a message to be sent from proxy number P.

- `webhook`: POST {"from": P, "to": B, "body": ...} to `--sms-webhook-url` (signed with
  HMAC-SHA256 in `X-Chimeproxy-Signature` when `--sms-webhook-secret` is set).
- `aws`: AWS End User Messaging SMS `SendTextMessage` (boto3 client `pinpoint-sms-voice-v2`),
  credentials from the usual AWS chain, endpoint overridable with `--sms-aws-endpoint-url`.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from chimeproxy.events import SIGNATURE_HEADER, sign
from chimeproxy.httpclient import HttpError, post_blocking
from chimeproxy.settings import SMS_PROVIDERS

if TYPE_CHECKING:
    from chimeproxy.settings import Settings

SEND_TIMEOUT_SECONDS = 10.0


class SendError(Exception):
    """The provider did not take the message; the message names no number and no body."""


class SmsProvider(Protocol):
    name: str

    def send(self, origination: str, destination: str, body: str) -> None:
        """Hand the message to the provider (blocking); raise SendError when it refuses."""


class WebhookProvider:
    name = "webhook"

    def __init__(self, url: str, secret: str | None) -> None:
        self.url = url
        self.secret = secret

    def send(self, origination: str, destination: str, body: str) -> None:
        payload = orjson.dumps({"from": origination, "to": destination, "body": body})
        headers = {"Content-Type": "application/json"}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, payload)
        try:
            status = post_blocking(self.url, payload, headers, timeout=SEND_TIMEOUT_SECONDS)
        except HttpError as exc:
            raise SendError(f"SMS webhook unreachable: {exc}") from exc
        if not 200 <= status < 300:
            raise SendError(f"SMS webhook answered {status}")


class AwsProvider:
    """AWS End User Messaging SMS (the `pinpoint-sms-voice-v2` API)."""

    name = "aws"

    def __init__(self, region: str, endpoint_url: str | None) -> None:
        self.region = region
        self.endpoint_url = endpoint_url
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        # boto3 is imported (and the client built) on first use: it is slow to load and only
        # this provider needs it. Clients are thread-safe, so one serves every worker thread.
        with self._lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                self._client = boto3.session.Session().client(
                    "pinpoint-sms-voice-v2",
                    region_name=self.region,
                    endpoint_url=self.endpoint_url,
                    config=Config(
                        connect_timeout=5,
                        read_timeout=SEND_TIMEOUT_SECONDS,
                        retries={"max_attempts": 2, "mode": "standard"},
                    ),
                )
            return self._client

    def send(self, origination: str, destination: str, body: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client().send_text_message(
                DestinationPhoneNumber=destination,
                OriginationIdentity=origination,
                MessageBody=body,
                MessageType="TRANSACTIONAL",
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            raise SendError(f"SendTextMessage failed: {code}") from exc
        except BotoCoreError as exc:
            raise SendError(f"SendTextMessage failed: {exc.__class__.__name__}") from exc


def from_settings(settings: Settings) -> SmsProvider | None:
    """The configured provider, or None for `--sms-provider none`; ValueError when the
    provider's settings are missing."""
    name = settings.sms_provider
    if name == "none":
        return None
    if name == "webhook":
        if not settings.sms_webhook_url:
            raise ValueError("--sms-provider webhook needs --sms-webhook-url")
        return WebhookProvider(settings.sms_webhook_url, settings.sms_webhook_secret)
    if name == "aws":
        region = settings.sms_aws_region or settings.default_region
        return AwsProvider(region, settings.sms_aws_endpoint_url)
    raise ValueError(f"--sms-provider must be one of {', '.join(SMS_PROVIDERS)}, not {name!r}")
