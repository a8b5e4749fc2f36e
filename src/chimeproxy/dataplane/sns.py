"""Amazon SNS HTTP(S) notifications, as AWS End User Messaging delivers inbound SMS: message
signature verification (SignatureVersion 1, SHA1withRSA, and 2, SHA256withRSA), the topic
allow-list, and subscription confirmation.

Only https URLs on `sns.<region>.amazonaws.com` are trusted for the signing certificate and the
subscription URL, plus, for tests and private set-ups, URLs under `--sns-trusted-url-prefix`.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from chimeproxy.httpclient import HttpError, fetch

if TYPE_CHECKING:
    from chimeproxy.settings import Settings

NOTIFICATION = "Notification"
SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"

# The members each message type signs, in the order SNS signs them.
SIGNED_MEMBERS = {
    NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    SUBSCRIPTION_CONFIRMATION: (
        "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
    ),
    UNSUBSCRIBE_CONFIRMATION: (
        "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
    ),
}  # fmt: skip
HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
AWS_SNS_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")
FETCH_TIMEOUT_SECONDS = 5.0
CERTIFICATE_CACHE = 32
SEEN_MESSAGES = 10_000


class SnsError(Exception):
    """A message refused; `status` is the HTTP answer (4xx: SNS does not retry it)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def canonical_string(message: dict[str, Any]) -> bytes:
    """The string SNS signs: `Name\\nValue\\n` for each signed member present, in order."""
    members = SIGNED_MEMBERS.get(message.get("Type", ""))
    if members is None:
        raise SnsError(400, "unknown SNS message Type")
    parts = []
    for name in members:
        value = message.get(name)
        if value is None:
            if name == "Subject":  # the only optional signed member
                continue
            raise SnsError(400, f"the SNS message has no {name}")
        parts.append(f"{name}\n{value}\n")
    return "".join(parts).encode()


def parse(body: bytes) -> dict[str, Any]:
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise SnsError(400, "the body is not an SNS message (JSON)") from exc
    if not isinstance(message, dict) or not isinstance(message.get("Type"), str):
        raise SnsError(400, "the body is not an SNS message (no Type)")
    return message


class SnsVerifier:
    """Checks that a message comes from SNS, for an allowed topic; confirms subscriptions."""

    def __init__(self, topics: frozenset[str], trusted_url_prefix: str | None) -> None:
        self.topics = topics
        self.trusted_url_prefix = trusted_url_prefix
        self._keys: OrderedDict[str, rsa.RSAPublicKey] = OrderedDict()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> SnsVerifier:
        topics = frozenset(
            t.strip() for t in (settings.sns_topic_arns or "").split(",") if t.strip()
        )
        return cls(topics, settings.sns_trusted_url_prefix or None)

    def trusted_url(self, url: object) -> bool:
        """https on sns.<region>.amazonaws.com, or under the configured trusted prefix."""
        if not isinstance(url, str):
            return False
        if self.trusted_url_prefix and url.startswith(self.trusted_url_prefix):
            return True
        parts = urlsplit(url)
        return (
            parts.scheme == "https"
            and parts.port in (None, 443)
            and parts.username is None
            and AWS_SNS_HOST.fullmatch(parts.hostname or "") is not None
        )

    def verify(self, message: dict[str, Any]) -> None:
        """Raise SnsError unless the message is signed by SNS for an allowed topic (blocking:
        the first message of a certificate fetches it)."""
        if not self.topics:
            raise SnsError(403, "no SNS topic is allowed: set --sns-topic-arns")
        if message.get("TopicArn") not in self.topics:
            raise SnsError(403, "the SNS topic is not allowed (--sns-topic-arns)")
        algorithm = HASHES.get(str(message.get("SignatureVersion")))
        if algorithm is None:
            raise SnsError(403, "unsupported SNS SignatureVersion")
        certificate_url = message.get("SigningCertURL") or message.get("SigningCertUrl")
        if not self.trusted_url(certificate_url):
            raise SnsError(403, "the SNS SigningCertURL is not an SNS certificate URL")
        try:
            signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SnsError(403, "the SNS Signature is not base64") from exc
        key = self._public_key(str(certificate_url))
        try:
            key.verify(signature, canonical_string(message), padding.PKCS1v15(), algorithm())
        except InvalidSignature as exc:
            raise SnsError(403, "the SNS message signature is not valid") from exc

    def _public_key(self, url: str) -> rsa.RSAPublicKey:
        with self._lock:
            key = self._keys.get(url)
            if key is not None:
                self._keys.move_to_end(url)
                return key
        try:
            pem = fetch(url, timeout=FETCH_TIMEOUT_SECONDS)
            key = x509.load_pem_x509_certificate(pem).public_key()
        except (HttpError, ValueError) as exc:
            # 5xx: the certificate may be reachable when SNS retries.
            raise SnsError(503, "the SNS signing certificate could not be loaded") from exc
        if not isinstance(key, rsa.RSAPublicKey):
            raise SnsError(403, "the SNS signing certificate has no RSA key")
        with self._lock:
            self._keys[url] = key
            while len(self._keys) > CERTIFICATE_CACHE:
                self._keys.popitem(last=False)
        return key

    def confirm_subscription(self, message: dict[str, Any]) -> None:
        """Visit the SubscribeURL of a verified SubscriptionConfirmation (blocking)."""
        url = message.get("SubscribeURL")
        if not self.trusted_url(url):
            raise SnsError(403, "the SubscribeURL is not an SNS URL")
        try:
            fetch(str(url), timeout=FETCH_TIMEOUT_SECONDS)
        except HttpError as exc:
            raise SnsError(503, "the subscription could not be confirmed") from exc

    # SNS delivers at least once: a message it retries after we handled it must not be
    # relayed twice. Remembered per process (a retry normally reaches the same process soon).

    def seen(self, message_id: str) -> bool:
        with self._lock:
            return message_id in self._seen

    def remember(self, message_id: str) -> None:
        with self._lock:
            self._seen[message_id] = None
            while len(self._seen) > SEEN_MESSAGES:
                self._seen.popitem(last=False)


def inbound_sms(message: dict[str, Any]) -> tuple[str, str, str]:
    """(origination, destination, body) of an End User Messaging inbound-SMS notification."""
    try:
        document = orjson.loads(message.get("Message", ""))
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise SnsError(400, "the notification's Message is not inbound-SMS JSON") from exc
    if not isinstance(document, dict):
        raise SnsError(400, "the notification's Message is not inbound-SMS JSON")
    fields = [document.get(k) for k in ("originationNumber", "destinationNumber", "messageBody")]
    if not all(isinstance(v, str) for v in fields):
        raise SnsError(
            400, "inbound SMS needs originationNumber, destinationNumber and messageBody"
        )
    return fields[0], fields[1], fields[2]  # type: ignore[return-value]
