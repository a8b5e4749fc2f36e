"""Opaque, tamper-evident pagination tokens: a keyset position signed with the server's key."""

from __future__ import annotations

import base64
import hashlib
import hmac

import orjson

MAX_TOKEN_LENGTH = 2048
# Every token starts with this letter: base64url's alphabet has '-', and a token starting with
# it is read as an option by command lines (the AWS CLI: "argument --next-token: expected one
# argument"), which happened to 1 token in 64.
PREFIX = "c"


class InvalidToken(ValueError):
    """The token was not issued by this service (or not for this listing)."""


def encode_token(key: bytes, scope: str, position: list[object]) -> str:
    """Sign `position` (the last item's sort key) for the listing named by `scope`."""
    payload = orjson.dumps(position)
    mac = hmac.new(key, scope.encode() + b"\0" + payload, hashlib.sha256).digest()[:16]
    return PREFIX + base64.urlsafe_b64encode(mac + payload).decode().rstrip("=")


def decode_token(key: bytes, scope: str, token: str) -> list[object]:
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("NextToken is too long to be one this service issued.")
    if token.startswith(PREFIX):
        try:
            return _decode(key, scope, token[len(PREFIX) :])
        except InvalidToken:
            pass  # maybe a token from before the prefix, whose text began with the letter
    return _decode(key, scope, token)


def _decode(key: bytes, scope: str, token: str) -> list[object]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, TypeError) as exc:
        raise InvalidToken("NextToken is not a token this service issued.") from exc
    mac, payload = raw[:16], raw[16:]
    expected = hmac.new(key, scope.encode() + b"\0" + payload, hashlib.sha256).digest()[:16]
    if len(mac) != 16 or not hmac.compare_digest(mac, expected):
        raise InvalidToken("NextToken is not a token this service issued for this listing.")
    position = orjson.loads(payload)
    if not isinstance(position, list):
        raise InvalidToken("NextToken is not a token this service issued.")
    return position
