"""NextToken: signed keyset positions that no command line mistakes for an option."""

from __future__ import annotations

import base64
import hashlib
import hmac

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chimeproxy.domain.pagination import InvalidToken, decode_token, encode_token

KEY = b"k" * 32
SCOPE = "123456789012:us-east-1:proxy-sessions:abc:None"
positions = st.lists(st.one_of(st.integers(0, 2**53), st.text(max_size=40)), max_size=3)


def legacy_token(position: list[object]) -> str:
    """A token as the server wrote it before tokens had a prefix."""
    payload = orjson.dumps(position)
    mac = hmac.new(KEY, SCOPE.encode() + b"\0" + payload, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(mac + payload).decode().rstrip("=")


@given(positions)
def test_a_token_never_starts_with_a_dash_and_round_trips(position: list[object]) -> None:
    token = encode_token(KEY, SCOPE, position)
    assert not token.startswith("-")
    assert decode_token(KEY, SCOPE, token) == position


def test_positions_whose_plain_encoding_starts_with_a_dash_get_a_token_that_does_not() -> None:
    dashed = [
        [1_586_967_010_288 + n, f"id-{n}"]
        for n in range(2000)
        if legacy_token([1_586_967_010_288 + n, f"id-{n}"]).startswith("-")
    ]
    assert len(dashed) > 10  # about 1 in 64
    for position in dashed:
        token = encode_token(KEY, SCOPE, position)
        assert token[0].isalpha()
        assert decode_token(KEY, SCOPE, token) == position


@given(positions)
def test_tokens_issued_before_the_prefix_are_still_accepted(position: list[object]) -> None:
    assert decode_token(KEY, SCOPE, legacy_token(position)) == position


@pytest.mark.parametrize("token", ["", "c", "-abc", "cAAAA", "c" + "A" * 40, "x" * 3000])
def test_anything_else_is_refused(token: str) -> None:
    with pytest.raises(InvalidToken):
        decode_token(KEY, SCOPE, token)


def test_a_token_is_refused_for_another_listing() -> None:
    token = encode_token(KEY, SCOPE, [1, "a"])
    with pytest.raises(InvalidToken):
        decode_token(KEY, SCOPE + "x", token)
