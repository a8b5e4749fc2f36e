"""SigV4 verifier tests; botocore (and a real boto3 client on a socket) is the signing oracle."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import socketserver
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from unittest.mock import patch
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.client import BaseClient
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.utils import percent_encode, percent_encode_sequence
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chimeproxy.protocol.sigv4 import (
    INCOMPLETE_SIGNATURE,
    INVALID_SIGNATURE,
    SIGNATURE_MISMATCH_MESSAGE,
    Credential,
    SignedRequest,
    SigningKey,
    SigV4Error,
    SigV4Verifier,
    _amz_date_epoch,
    _authorization_components,
    _cached_query_string,
    _canonical_query,
    canonical_query_string,
    canonical_uri,
    headers_from_asgi,
    parse_request_auth,
)

WHEN = datetime(2024, 5, 17, 12, 34, 56)  # naive UTC, as botocore's clock returns it
NOW = WHEN.replace(tzinfo=UTC)
AMZ_DATE = "20240517T123456Z"
AK = "AKIAIOSFODNN7EXAMPLE"
SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
HOST = "voice-chime.us-east-1.amazonaws.com"
VERIFIER = SigV4Verifier()

PROPERTY_SETTINGS = settings(
    max_examples=200,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclasses.dataclass(frozen=True)
class Wire:
    """A request as the ASGI server sees it."""

    method: str
    path: bytes
    query: bytes
    headers: dict[str, str]
    body: bytes


def _wire_from_url(method: str, url: str, headers: dict[str, str], body: bytes) -> Wire:
    parts = urlsplit(url)
    # http.client sends the URL's netloc as Host (no default ports are used in these tests).
    raw = [(b"host", parts.netloc.encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    return Wire(method, parts.path.encode(), parts.query.encode(), headers_from_asgi(raw), body)


def _prepared_wire(request: AWSRequest) -> Wire:
    prepared = request.prepare()
    body = prepared.body or b""
    if isinstance(body, str):
        body = body.encode()
    return _wire_from_url(prepared.method, prepared.url, dict(prepared.headers.items()), body)


def sign(
    method: str = "GET",
    url: str = f"https://{HOST}/phone-numbers/%2B12065550100",
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    params: Sequence[tuple[str, str]] | None = None,
    region: str = "us-east-1",
    service: str = "chime",
    access_key: str = AK,
    secret: str = SK,
    token: str | None = None,
    when: datetime = WHEN,
) -> Wire:
    """Sign with botocore's SigV4Auth at a fixed time and return what goes on the wire."""
    request = AWSRequest(
        method=method, url=url, headers=headers or {}, data=body, params=list(params or [])
    )
    with patch("botocore.auth.get_current_datetime", return_value=when):
        SigV4Auth(Credentials(access_key, secret, token), service, region).add_auth(request)
    return _prepared_wire(request)


def presign(
    method: str = "GET",
    url: str = f"https://{HOST}/phone-numbers/%2B12065550100",
    *,
    headers: dict[str, str] | None = None,
    params: Sequence[tuple[str, str]] | None = None,
    expires: int = 3600,
    region: str = "us-east-1",
    service: str = "chime",
    secret: str = SK,
    token: str | None = None,
    when: datetime = WHEN,
) -> Wire:
    """Presign with botocore's SigV4QueryAuth at a fixed time."""
    request = AWSRequest(method=method, url=url, headers=headers or {}, params=list(params or []))
    with patch("botocore.auth.get_current_datetime", return_value=when):
        SigV4QueryAuth(Credentials(AK, secret, token), service, region, expires).add_auth(request)
    return _prepared_wire(request)


def check(
    wire: Wire,
    *,
    secret: str = SK,
    now: datetime = NOW,
    signed: SignedRequest | None = None,
    verifier: SigV4Verifier = VERIFIER,
) -> SignedRequest:
    """Parse and verify like the server does; returns the parsed claim."""
    if signed is None:
        parsed = parse_request_auth(wire.query, wire.headers)
        assert parsed is not None
        signed = parsed
    verifier.verify(
        method=wire.method,
        raw_path=wire.path,
        query_string=wire.query,
        headers=wire.headers,
        body=wire.body,
        signed=signed,
        secret_access_key=secret,
        now=now,
    )
    return signed


def rejected(wire: Wire, code: str = INVALID_SIGNATURE, **kwargs: object) -> SigV4Error:
    with pytest.raises(SigV4Error) as info:
        check(wire, **kwargs)  # type: ignore[arg-type]
    assert info.value.code == code, info.value.message
    return info.value


def with_header(wire: Wire, name: str, value: str | None) -> Wire:
    headers = dict(wire.headers)
    if value is None:
        headers.pop(name, None)
    else:
        headers[name] = value
    return dataclasses.replace(wire, headers=headers)


# ---------------------------------------------------------------- strategies

_TRICKY = [*" %+/~.?&=#;:@!*'()[]$,\"<>\\^`{|}\t", "é", "€", "日本", "😀", "%2F", "%20"]
_text = st.lists(
    st.one_of(st.characters(codec="utf-8", exclude_categories=("Cs",)), st.sampled_from(_TRICKY)),
    max_size=8,
).map("".join)
_segment = st.one_of(
    st.sampled_from(["phone-numbers", "voice-connectors", "sip-media-applications", "search"]),
    _text.map(percent_encode),  # how the rest-json serializer encodes a label
)
_path = st.lists(_segment, min_size=0, max_size=4).map(lambda parts: "/" + "/".join(parts))
_query_key = _text.filter(lambda k: not k.lower().startswith("x-amz-"))
_pairs = st.lists(st.tuples(_query_key, _text), max_size=5)
_discriminator = st.sampled_from(
    ["", "operation=associate-phone-numbers", "operation=batch-update", "type=phone-numbers"]
)
_header_name = st.from_regex(r"x-c-[a-z0-9-]{1,8}", fullmatch=True)
_header_value = st.text(alphabet=st.sampled_from(list("abcXYZ019 \t;,=/:-_.é\"'()")), max_size=16)
_headers = st.dictionaries(_header_name, _header_value, max_size=4)
_methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"])
_regions = st.sampled_from(["us-east-1", "us-west-2", "eu-central-1", "ap-southeast-2", "local"])
_hosts = st.sampled_from(
    ["https://" + HOST, "http://127.0.0.1:8080", "http://localhost:4566", "http://[::1]:9000"]
)
_secrets = st.from_regex(r"[A-Za-z0-9/+]{40}", fullmatch=True)
_tokens = st.none() | st.from_regex(r"[A-Za-z0-9/+=]{16,64}", fullmatch=True)


@st.composite
def _target(draw: st.DrawFn) -> tuple[str, list[tuple[str, str]]]:
    """A URL and params as a real client has them (query in the URL) or as AWSRequest(params=)."""
    base = draw(_hosts) + draw(_path)
    pairs = draw(_pairs)
    discriminator = draw(_discriminator)
    if draw(st.booleans()):
        query = "&".join(p for p in (discriminator, percent_encode_sequence(pairs)) if p)
        return (f"{base}?{query}" if query else base), []
    # botocore ignores a URL query when params are given, so the two never mix here.
    return base, pairs


_HEADER_MUTATIONS = [
    "body",
    "header",
    "path",
    "query",
    "secret",
    "region",
    "date",
    "scope_date",
    "method",
]


def _mutate(
    wire: Wire, signed: SignedRequest, secret: str, kind: str
) -> tuple[Wire, SignedRequest, str]:
    if kind == "body":
        return dataclasses.replace(wire, body=wire.body + b"!"), signed, secret
    if kind == "header":
        name = next(n for n in reversed(signed.signed_headers) if n != "x-amz-date")
        return with_header(wire, name, wire.headers[name] + "x"), signed, secret
    if kind == "path":
        return dataclasses.replace(wire, path=wire.path + b"x"), signed, secret
    if kind == "query":
        return dataclasses.replace(wire, query=b"a=1&" + wire.query), signed, secret
    if kind == "secret":
        return wire, signed, secret + "x"
    if kind == "region":
        credential = dataclasses.replace(signed.credential, region=signed.credential.region + "x")
        return wire, dataclasses.replace(signed, credential=credential), secret
    if kind == "date":
        return wire, dataclasses.replace(signed, amz_date=AMZ_DATE[:-3] + "57Z"), secret
    if kind == "scope_date":
        credential = dataclasses.replace(signed.credential, date="20240518")
        return wire, dataclasses.replace(signed, credential=credential), secret
    if kind == "method":
        other = "PUT" if wire.method != "PUT" else "POST"
        return dataclasses.replace(wire, method=other), signed, secret
    raise AssertionError(kind)


# ---------------------------------------------------------------- properties


@PROPERTY_SETTINGS
@given(
    method=_methods,
    target=_target(),
    headers=_headers,
    body=st.binary(max_size=48),
    content_sha=st.booleans(),
    region=_regions,
    secret=_secrets,
    token=_tokens,
    mutation=st.sampled_from(_HEADER_MUTATIONS),
)
def test_header_auth_matches_botocore_and_rejects_any_change(
    method: str,
    target: tuple[str, list[tuple[str, str]]],
    headers: dict[str, str],
    body: bytes,
    content_sha: bool,
    region: str,
    secret: str,
    token: str | None,
    mutation: str,
) -> None:
    url, params = target
    headers = {"Content-Type": "application/json", **headers}
    if content_sha:
        headers["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()
    wire = sign(
        method,
        url,
        headers=headers,
        body=body,
        params=params,
        region=region,
        secret=secret,
        token=token,
    )
    signed = check(wire, secret=secret)
    assert signed.credential == Credential(AK, "20240517", region, "chime")
    assert signed.amz_date == AMZ_DATE and not signed.presigned and signed.expires is None
    assert signed.security_token == token
    assert "host" in signed.signed_headers

    bad_wire, bad_signed, bad_secret = _mutate(wire, signed, secret, mutation)
    error = rejected(bad_wire, secret=bad_secret, signed=bad_signed)
    assert signed.signature not in error.message and secret not in error.message


@PROPERTY_SETTINGS
@given(
    method=_methods,
    target=_target(),
    headers=_headers,
    expires=st.integers(1, 604800),
    elapsed=st.floats(0, 1),
    region=_regions,
    secret=_secrets,
    token=_tokens,
    mutation=st.sampled_from(
        ["header", "path", "query", "secret", "region", "date", "scope_date", "method", "expired"]
    ),
)
def test_presigned_matches_botocore_and_rejects_any_change(
    method: str,
    target: tuple[str, list[tuple[str, str]]],
    headers: dict[str, str],
    expires: int,
    elapsed: float,
    region: str,
    secret: str,
    token: str | None,
    mutation: str,
) -> None:
    url, params = target
    wire = presign(
        method,
        url,
        headers=headers,
        params=params,
        expires=expires,
        region=region,
        secret=secret,
        token=token,
    )
    now = NOW + timedelta(seconds=int(expires * elapsed))
    signed = check(wire, secret=secret, now=now)
    assert signed.presigned and signed.expires == expires and signed.security_token == token
    assert signed.credential.region == region

    if mutation == "expired":
        error = rejected(wire, secret=secret, now=NOW + timedelta(seconds=expires + 1))
        assert "expired" in error.message
        return
    bad_wire, bad_signed, bad_secret = _mutate(wire, signed, secret, mutation)
    rejected(bad_wire, secret=bad_secret, signed=bad_signed, now=now)


@PROPERTY_SETTINGS
@given(path=st.one_of(_path, _text.map(lambda t: "/" + t), st.from_regex(r"[/.a%2F]{0,12}")))
def test_canonical_uri_matches_botocore(path: str) -> None:
    signer = SigV4Auth(Credentials(AK, SK), "chime", "us-east-1")
    expected = signer._normalize_url_path(path)
    assert canonical_uri(path.encode()) == expected


@PROPERTY_SETTINGS
@given(pairs=_pairs)
def test_canonical_query_matches_botocore_url_and_params_forms(
    pairs: list[tuple[str, str]],
) -> None:
    signer = SigV4Auth(Credentials(AK, SK), "chime", "us-east-1")
    on_wire = percent_encode_sequence(pairs).encode()
    from_url = signer._canonical_query_string_url(urlsplit("http://h/?" + on_wire.decode()))
    from_params = signer._canonical_query_string_params(pairs)
    assert canonical_query_string(on_wire) == from_url == from_params


# ---------------------------------------------------------------- canonical forms


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"/phone-numbers/%2B12065550100", "/phone-numbers/%252B12065550100"),
        (b"/voice-connectors/a%2Fb", "/voice-connectors/a%252Fb"),
        (b"/voice-connectors/a%20b~c", "/voice-connectors/a%2520b~c"),
        (b"/x/%C3%A9", "/x/%25C3%25A9"),
        (b"/x/\xc3\xa9", "/x/%C3%A9"),  # raw UTF-8 on the wire: encoded once, as botocore would
        (b"/a/./b/../c//d/", "/a/c/d/"),
        (b"/a/..", "/"),
        (b"", "/"),
        (b"/", "/"),
        (b"/%2E%2E/x", "/%252E%252E/x"),
    ],
)
def test_canonical_uri_cases(raw: bytes, expected: str) -> None:
    assert canonical_uri(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", ""),
        (b"operation=associate-phone-numbers", "operation=associate-phone-numbers"),
        (b"b=2&a=&a=1&c", "a=&a=1&b=2&c="),
        (b"q=a+b%2Bc", "q=a%20b%2Bc"),
        (b"k%7E=%7e&%C3%A9=x*y", "%C3%A9=x%2Ay&k~=~"),
        (b"a-b=1&a=2", "a=2&a-b=1"),  # sorted as (key, value), not as "key=value" strings
    ],
)
def test_canonical_query_cases(raw: bytes, expected: str) -> None:
    assert canonical_query_string(raw) == expected


def test_encoded_slash_is_not_a_path_separator() -> None:
    wire = sign(url=f"https://{HOST}/voice-connectors/a%2Fb")
    check(wire)
    rejected(dataclasses.replace(wire, path=b"/voice-connectors/a/b"))
    rejected(dataclasses.replace(wire, path=b"/voice-connectors/a%2fb"))


def test_query_signed_verbatim_by_botocore_is_accepted() -> None:
    # A hand-built URL keeps '*' and lower-case escapes; botocore signs that query as written.
    wire = sign(url=f"https://{HOST}/phone-numbers?operation=batch-update&f=a*b&g=%2b")
    check(wire)
    rejected(dataclasses.replace(wire, query=b"operation=batch-update&f=a*c&g=%2b"))


def test_date_header_instead_of_x_amz_date() -> None:
    wire = sign(headers={"Date": "Fri, 17 May 2024 12:34:56 GMT"})
    assert "x-amz-date" not in wire.headers
    signed = check(wire)
    assert signed.amz_date == AMZ_DATE
    rejected(with_header(wire, "date", "Fri, 17 May 2024 12:34:57 GMT"))


def test_repeated_headers_join_like_the_signer() -> None:
    request = AWSRequest(method="GET", url=f"https://{HOST}/phone-numbers")
    request.headers["X-C-Multi"] = "  a   b "
    request.headers["X-C-Multi"] = "c"  # HTTPHeaders appends, so the header is sent twice
    with patch("botocore.auth.get_current_datetime", return_value=WHEN):
        SigV4Auth(Credentials(AK, SK), "chime", "us-east-1").add_auth(request)
    raw = [(b"host", HOST.encode())]
    raw += [(k.lower().encode(), v.strip().encode()) for k, v in request.headers.items()]
    headers = headers_from_asgi(raw)
    assert headers["x-c-multi"] == "a   b,c"
    check(Wire("GET", b"/phone-numbers", b"", headers, b""))


# ---------------------------------------------------------------- time


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_clock_skew_within_five_minutes_is_accepted(offset: int) -> None:
    check(sign(), now=NOW + timedelta(seconds=offset))


def test_request_older_than_five_minutes_is_refused() -> None:
    error = rejected(sign(), now=NOW + timedelta(seconds=301))
    assert error.message.startswith("Signature expired: 20240517T123456Z is now earlier than")
    assert "20240517T123957Z" in error.message  # server time


def test_request_from_the_future_is_refused() -> None:
    error = rejected(sign(), now=NOW - timedelta(seconds=301))
    assert error.message.startswith("Signature not yet current: 20240517T123456Z")


def test_naive_now_is_taken_as_utc() -> None:
    check(sign(), now=WHEN)
    rejected(sign(), now=WHEN + timedelta(minutes=6))


def test_custom_skew() -> None:
    strict = SigV4Verifier(max_skew_seconds=10)
    check(sign(), now=NOW + timedelta(seconds=10), verifier=strict)
    error = rejected(sign(), now=NOW + timedelta(seconds=11), verifier=strict)
    assert "10 s." in error.message


# ---------------------------------------------------------------- scope


def test_wrong_service_in_scope() -> None:
    error = rejected(sign(service="s3"))
    assert error.message == "Credential should be scoped to correct service: 'chime'."


def test_other_service_name_can_be_configured() -> None:
    check(sign(service="voice-chime"), verifier=SigV4Verifier(service="voice-chime"))


def test_scope_date_must_match_request_date() -> None:
    wire = sign()
    authorization = wire.headers["authorization"].replace("/20240517/", "/20240516/")
    error = rejected(with_header(wire, "authorization", authorization))
    assert "Date in Credential scope does not match" in error.message
    assert "'20240516' != '20240517'" in error.message


def test_region_comes_from_the_scope() -> None:
    assert check(sign(region="eu-west-3")).credential.region == "eu-west-3"


def test_wrong_terminator() -> None:
    wire = sign()
    authorization = wire.headers["authorization"].replace("/aws4_request", "/aws4_requesx")
    with pytest.raises(SigV4Error) as info:
        parse_request_auth(wire.query, with_header(wire, "authorization", authorization).headers)
    assert info.value.code == INVALID_SIGNATURE
    assert "'aws4_request'" in info.value.message


def test_parsed_scopes_are_kept_but_a_malformed_one_is_refused_every_time() -> None:
    """The credential scope and the signed-header list are parsed once per text (the same on
    every request of a client's day); what is kept is what a fresh parse gives, and a text
    that fails is not kept."""
    wire = sign()
    first = parse_request_auth(wire.query, wire.headers)
    again = parse_request_auth(wire.query, wire.headers)
    assert first is not None and again is not None
    assert again.credential == first.credential and again.signed_headers == first.signed_headers
    bad = wire.headers["authorization"].replace("/aws4_request", "/aws4_requesx")
    for _ in range(2):
        with pytest.raises(SigV4Error, match="'aws4_request'"):
            parse_request_auth(wire.query, with_header(wire, "authorization", bad).headers)
    repeated = wire.headers["authorization"].replace(
        "SignedHeaders=host;", "SignedHeaders=host;host;"
    )
    for _ in range(2):
        with pytest.raises(SigV4Error, match="more than once"):
            parse_request_auth(wire.query, with_header(wire, "authorization", repeated).headers)


# ---------------------------------------------------------------- signed headers and payload


def test_host_must_be_signed() -> None:
    wire = sign()
    authorization = wire.headers["authorization"].replace("SignedHeaders=host;", "SignedHeaders=")
    error = rejected(with_header(wire, "authorization", authorization))
    assert "host" in error.message


def test_signed_header_missing_from_request() -> None:
    error = rejected(with_header(sign(headers={"X-C-Trace": "1"}), "x-c-trace", None))
    assert "'x-c-trace'" in error.message


def test_unsigned_headers_are_ignored() -> None:
    wire = with_header(sign(), "x-c-added-by-proxy", "whatever")
    check(with_header(wire, "user-agent", "something else"))


def test_header_whitespace_is_trimmed_and_collapsed() -> None:
    wire = sign(headers={"X-C-Spaced": "  a \t  b   c  "})
    check(with_header(wire, "x-c-spaced", "a b\t\tc"))


def test_content_sha256_not_matching_body() -> None:
    wire = sign("POST", body=b'{"a":1}', headers={"X-Amz-Content-SHA256": "0" * 64})
    error = rejected(wire)
    assert "payload hash" in error.message and "does not match the body" in error.message


def test_content_sha256_checked_against_tampered_body() -> None:
    body = b'{"CallingName":"Alice"}'
    wire = sign(
        "POST", body=body, headers={"X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest()}
    )
    check(wire)
    error = rejected(dataclasses.replace(wire, body=b'{"CallingName":"Mallory"}'))
    assert "does not match the body" in error.message


def test_unsigned_payload_refused_for_header_auth() -> None:
    error = rejected(sign("POST", body=b"{}", headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}))
    assert "UNSIGNED-PAYLOAD" in error.message


def test_unsigned_payload_accepted_for_presigned() -> None:
    wire = presign(headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    check(dataclasses.replace(wire, body=b"anything"))


def test_presigned_signed_without_header_over_unsigned_payload() -> None:
    # S3-style presigners put UNSIGNED-PAYLOAD in the canonical request without sending a header.
    class UnsignedPayloadQueryAuth(SigV4QueryAuth):
        def payload(self, request: AWSRequest) -> str:
            return "UNSIGNED-PAYLOAD"

    request = AWSRequest(method="GET", url=f"https://{HOST}/phone-numbers")
    with patch("botocore.auth.get_current_datetime", return_value=WHEN):
        UnsignedPayloadQueryAuth(Credentials(AK, SK), "chime", "us-east-1").add_auth(request)
    check(_prepared_wire(request))


def test_header_auth_body_is_signed() -> None:
    wire = sign("PUT", body=b'{"ProductType":"VoiceConnector"}')
    check(wire)
    rejected(dataclasses.replace(wire, body=b'{"ProductType":"SipMediaApplicationDialIn"}'))


# ---------------------------------------------------------------- presigned


def test_presigned_ok_within_window_and_at_its_end() -> None:
    wire = presign(expires=600)
    check(wire, now=NOW)
    check(wire, now=NOW + timedelta(seconds=600))


def test_presigned_past_expiry() -> None:
    error = rejected(presign(expires=600), now=NOW + timedelta(seconds=601))
    assert "presigned URL expired" in error.message
    assert "20240517T124456Z" in error.message


def test_presigned_from_the_future() -> None:
    error = rejected(presign(), now=NOW - timedelta(minutes=6))
    assert "not yet current" in error.message


def test_presigned_expires_over_a_week() -> None:
    error = rejected(presign(expires=604801))
    assert "604800" in error.message


def test_presigned_signature_param_position_does_not_matter() -> None:
    wire = presign(params=[("MaxResults", "5")])
    pairs = wire.query.split(b"&")
    check(dataclasses.replace(wire, query=b"&".join([pairs[-1], *pairs[:-1]])))


def test_presigned_missing_parameter() -> None:
    wire = presign()
    query = b"&".join(p for p in wire.query.split(b"&") if not p.startswith(b"X-Amz-Expires="))
    with pytest.raises(SigV4Error) as info:
        parse_request_auth(query, wire.headers)
    assert info.value.code == INCOMPLETE_SIGNATURE
    assert "'X-Amz-Expires'" in info.value.message


def test_presigned_and_authorization_header_together() -> None:
    wire = presign()
    with pytest.raises(SigV4Error) as info:
        parse_request_auth(
            wire.query, {**wire.headers, "authorization": sign().headers["authorization"]}
        )
    assert info.value.code == INCOMPLETE_SIGNATURE
    assert "Only one auth mechanism" in info.value.message


# ---------------------------------------------------------------- parsing


def test_no_auth_at_all() -> None:
    assert parse_request_auth(b"", {"host": HOST}) is None
    assert parse_request_auth(b"NextToken=X-Amz-Algorithm", {"host": HOST}) is None


_AUTH = (
    f"AWS4-HMAC-SHA256 Credential={AK}/20240517/us-east-1/chime/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=" + "ab" * 32
)


@pytest.mark.parametrize(
    ("authorization", "fragment"),
    [
        (_AUTH.replace("Credential=", "Cred="), "requires 'Credential' parameter"),
        (_AUTH.replace("Signature=", "Sig="), "requires 'Signature' parameter"),
        (_AUTH.replace("SignedHeaders=", "Headers="), "requires 'SignedHeaders' parameter"),
        (_AUTH.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512"), "Unsupported Authorization type"),
        (f"AWS {AK}:c2lnbmF0dXJl", "Signature Version 4"),
        ("Bearer abc.def", "'Bearer'"),
        ("", "Unsupported Authorization type '(empty)'"),
        ("AWS4-HMAC-SHA256", "requires 'Credential' parameter"),
        (_AUTH.replace("/us-east-1/chime", "/chime"), "<AccessKeyId>/<YYYYMMDD>/<region>"),
        (_AUTH.replace("/20240517/", "/2024-05-17/"), "YYYYMMDD"),
        (_AUTH.replace("host;x-amz-date", "host;;x-amz-date"), "';'-separated"),
        (_AUTH.replace("host;x-amz-date", "host;host"), "more than once"),
        (_AUTH + ", Signature=00", "more than one 'Signature'"),
        (_AUTH.replace(", Signature=", ", Signature "), "not a key=value pair"),
    ],
)
def test_malformed_authorization_header(authorization: str, fragment: str) -> None:
    with pytest.raises(SigV4Error) as info:
        parse_request_auth(b"", {"authorization": authorization, "x-amz-date": AMZ_DATE})
    assert info.value.code == INCOMPLETE_SIGNATURE
    assert info.value.status == 400
    assert fragment in info.value.message
    assert "ab" * 32 not in info.value.message


def test_authorization_without_any_date_header() -> None:
    with pytest.raises(SigV4Error) as info:
        parse_request_auth(b"", {"authorization": _AUTH})
    assert "'X-Amz-Date' or a 'Date' header" in info.value.message


@pytest.mark.parametrize(
    "amz_date", ["2024-05-17T12:34:56Z", "20240517T123456", "20241317T123456Z"]
)
def test_malformed_x_amz_date(amz_date: str) -> None:
    with pytest.raises(SigV4Error) as info:
        parse_request_auth(b"", {"authorization": _AUTH, "x-amz-date": amz_date})
    assert info.value.code == INCOMPLETE_SIGNATURE
    assert "YYYYMMDD'T'HHMMSS'Z'" in info.value.message


def test_parsed_header_auth() -> None:
    signed = parse_request_auth(b"", {"authorization": _AUTH, "x-amz-date": AMZ_DATE})
    assert signed == SignedRequest(
        Credential(AK, "20240517", "us-east-1", "chime"),
        AMZ_DATE,
        ("host", "x-amz-date"),
        "ab" * 32,
        presigned=False,
        expires=None,
    )


@PROPERTY_SETTINGS
@given(key=st.binary(min_size=32, max_size=32), message=st.binary(max_size=300))
def test_a_signing_key_signs_as_hmac_does(key: bytes, message: bytes) -> None:
    """The padded-key states hashed once give the HMAC-SHA256 the standard library gives."""
    signing_key = SigningKey(key)
    expected = hmac.digest(key, message, "sha256").hex().encode()
    assert signing_key.signature(message) == expected
    assert signing_key.signature(message) == expected  # its states are copied, never spent


@pytest.mark.parametrize(
    "authorization",
    [
        _AUTH,
        _AUTH.replace(", ", ","),
        _AUTH.replace("Credential=", "Credential=a=b"),
        _AUTH.replace(", SignedHeaders", ",  SignedHeaders"),  # two spaces: the general parse
        _AUTH.replace("AWS4-HMAC-SHA256 ", "AWS4-HMAC-SHA256  "),
        _AUTH + " ",
        _AUTH.replace("Credential=", "Credential=\t"),
        _AUTH.replace("Signature=", "Signature=\xa0"),
        _AUTH.replace(", Signature", " , Signature"),
        "AWS4-HMAC-SHA256 Signature=01, Credential=AK/20240517/us-east-1/chime/aws4_request, "
        "SignedHeaders=host",
    ],
)
def test_the_common_authorization_form_reads_as_the_general_parse(authorization: str) -> None:
    """The fast path for SDKs' own form and the general parse agree component for component
    (the general one, written out here as the oracle, splits on commas and the first '=')."""
    general = {}
    for part in authorization.split(None, 1)[1].split(","):
        name, _, value = part.partition("=")
        general[name.strip()] = value.strip()
    assert _authorization_components(authorization) == general


def test_a_malformed_date_is_refused_every_time_it_is_sent() -> None:
    """The date's parse is cached for good texts only: a bad one raises on every request."""
    for _ in range(3):
        with pytest.raises(SigV4Error):
            parse_request_auth(b"", {"authorization": _AUTH, "x-amz-date": "20241317T123456Z"})


# ---------------------------------------------------------------- secrecy


def test_mismatch_message_never_reveals_expected_signature_or_secret() -> None:
    wire = sign("POST", body=b"{}", headers={"Content-Type": "application/json"})
    other_secret = "an0therS3cretKeyThatTheServerHolds000000"
    expected = parse_request_auth(
        b"",
        sign(
            "POST", body=b"{}", headers={"Content-Type": "application/json"}, secret=other_secret
        ).headers,
    )
    assert expected is not None
    error = rejected(wire, secret=other_secret)
    assert error.message == SIGNATURE_MISMATCH_MESSAGE
    assert error.status == 403
    for text in (str(error), error.message, error.canonical_request, error.string_to_sign):
        assert text is not None
        assert expected.signature not in text
        assert other_secret not in text and SK not in text
    assert error.canonical_request is not None and error.canonical_request.startswith("POST\n")


def test_signing_keys_are_cached_per_scope() -> None:
    verifier = SigV4Verifier(key_cache_size=2)
    for _ in range(3):
        check(sign(), verifier=verifier)
    check(sign(region="us-west-2"), verifier=verifier)
    info = verifier._signing_key.cache_info()  # type: ignore[attr-defined]
    assert (info.hits, info.misses, info.maxsize) == (2, 2, 2)


def test_signing_keys_are_derived_once_per_secret_date_region_and_service() -> None:
    verifier = SigV4Verifier()
    for _ in range(3):
        check(sign(), verifier=verifier)
    check(sign(secret=SK[::-1]), secret=SK[::-1], verifier=verifier)
    later = WHEN + timedelta(days=1)
    check(sign(when=later), now=later.replace(tzinfo=UTC), verifier=verifier)
    info = verifier._signing_key.cache_info()  # type: ignore[attr-defined]
    assert (info.hits, info.misses) == (2, 3)


@PROPERTY_SETTINGS
@given(
    instant=st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59))
)
def test_amz_date_epoch_agrees_with_datetime(instant: datetime) -> None:
    amz_date = instant.strftime("%Y%m%dT%H%M%SZ").rjust(16, "0")
    expected = instant.replace(microsecond=0, tzinfo=UTC).timestamp()
    assert _amz_date_epoch(amz_date) == expected


@PROPERTY_SETTINGS
@given(digits=st.from_regex(r"\A[0-9]{8}T[0-9]{6}Z\Z"))
def test_amz_date_epoch_refuses_what_datetime_refuses(digits: str) -> None:
    fields = (digits[0:4], digits[4:6], digits[6:8], digits[9:11], digits[11:13], digits[13:15])
    try:
        expected: float | None = datetime(*map(int, fields), tzinfo=UTC).timestamp()  # type: ignore[misc]
    except ValueError:
        expected = None
    if expected is None:
        with pytest.raises(ValueError):
            _amz_date_epoch(digits)
    else:
        assert _amz_date_epoch(digits) == expected


@pytest.mark.parametrize(
    "amz_date",
    ["20230229T000000Z", "20240230T000000Z", "00001231T000000Z", "20240517T240000Z",
     "20240517T126000Z", "20240517T123460Z", "20240500T000000Z"],
)  # fmt: skip
def test_impossible_instants_are_malformed_dates(amz_date: str) -> None:
    with pytest.raises(SigV4Error) as info:
        parse_request_auth(b"", {"authorization": _AUTH, "x-amz-date": amz_date})
    assert info.value.code == INCOMPLETE_SIGNATURE


def test_only_short_queries_are_kept_canonicalized() -> None:
    short, long = b"max-results=100&status=Open", b"next-token=" + b"A%2Bb" * 200
    before = _cached_query_string.cache_info().currsize
    assert _canonical_query(long, False) == canonical_query_string(long)
    assert _cached_query_string.cache_info().currsize == before
    assert _canonical_query(short, False) == canonical_query_string(short)
    assert _canonical_query(short, False) == "max-results=100&status=Open"


# ---------------------------------------------------------------- real boto3 client on a socket


class _CaptureHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.request.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        request_line, *header_lines = head.split(b"\r\n")
        method, target, _ = request_line.split(b" ", 2)
        raw_headers = []
        for line in header_lines:
            name, _, value = line.partition(b":")
            raw_headers.append((name.strip().lower(), value.strip()))
        length = int(dict(raw_headers).get(b"content-length", b"0"))
        while len(body) < length:
            body += self.request.recv(65536)
        path, _, query = target.partition(b"?")
        headers = headers_from_asgi(raw_headers)
        self.server.captured.append(Wire(method.decode(), path, query, headers, body))  # type: ignore[attr-defined]
        self.request.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2\r\nConnection: close\r\n\r\n{}"
        )


@pytest.fixture(scope="module")
def capture_server() -> Iterator[socketserver.ThreadingTCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _CaptureHandler)
    server.daemon_threads = True
    server.captured = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _client(server: socketserver.ThreadingTCPServer, token: str | None = None) -> BaseClient:
    host, port = server.server_address[:2]
    return boto3.client(
        "chime-sdk-voice",
        endpoint_url=f"http://{host}:{port}",
        region_name="us-east-1",
        aws_access_key_id=AK,
        aws_secret_access_key=SK,
        aws_session_token=token,
        config=Config(retries={"max_attempts": 1}),
    )


_CALLS = [
    ("get_phone_number", {"PhoneNumberId": "+12065550100"}, b"/phone-numbers/%2B12065550100"),
    (
        "list_phone_numbers",
        {
            "Status": "Assigned",
            "FilterName": "VoiceConnectorId",
            "FilterValue": "a b/c~é+",
            "MaxResults": 5,
        },
        b"/phone-numbers",
    ),
    (
        "associate_phone_numbers_with_voice_connector",
        {
            "VoiceConnectorId": "vc 1/2",
            "E164PhoneNumbers": ["+12065550100"],
            "ForceAssociate": True,
        },
        b"/voice-connectors/vc%201%2F2",
    ),
    ("search_available_phone_numbers", {"AreaCode": "206", "Country": "US"}, b"/search"),
    (
        "update_phone_number",
        {"PhoneNumberId": "+1 206~x", "CallingName": "Zoë"},
        b"/phone-numbers/%2B1%20206~x",
    ),
    (
        "put_voice_connector_termination_credentials",
        {"VoiceConnectorId": "vc", "Credentials": [{"Username": "u", "Password": "p w"}]},
        b"/voice-connectors/vc/termination/credentials",
    ),
]


@pytest.mark.parametrize(("operation", "params", "path"), _CALLS, ids=[c[0] for c in _CALLS])
@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEJr//////////wEaDExampleToken=="])
def test_real_boto3_client_requests_verify(
    capture_server: socketserver.ThreadingTCPServer,
    operation: str,
    params: dict[str, object],
    path: bytes,
    token: str | None,
) -> None:
    client = _client(capture_server, token)
    capture_server.captured.clear()  # type: ignore[attr-defined]
    with patch("botocore.auth.get_current_datetime", return_value=WHEN):
        getattr(client, operation)(**params)
    (wire,) = capture_server.captured  # type: ignore[attr-defined]
    assert wire.path == path
    signed = check(wire)
    assert signed.security_token == token
    assert signed.credential.region == "us-east-1"
    if wire.body:
        rejected(dataclasses.replace(wire, body=wire.body.replace(b"}", b" }", 1)))
    rejected(dataclasses.replace(wire, path=wire.path + b"x"))


def test_real_boto3_discriminator_query_on_the_wire(
    capture_server: socketserver.ThreadingTCPServer,
) -> None:
    client = _client(capture_server)
    capture_server.captured.clear()  # type: ignore[attr-defined]
    with patch("botocore.auth.get_current_datetime", return_value=WHEN):
        client.associate_phone_numbers_with_voice_connector(
            VoiceConnectorId="vc", E164PhoneNumbers=["+12065550100"]
        )
        client.search_available_phone_numbers(AreaCode="206", MaxResults=3)
    first, second = capture_server.captured  # type: ignore[attr-defined]
    assert first.query == b"operation=associate-phone-numbers"
    assert second.query == b"type=phone-numbers&area-code=206&max-results=3"
    check(first)
    check(second)


@pytest.mark.parametrize(
    ("operation", "params"),
    [
        ("get_phone_number", {"PhoneNumberId": "+12065550100"}),
        ("list_phone_numbers", {"FilterName": "VoiceConnectorId", "FilterValue": "a b+é"}),
        ("search_available_phone_numbers", {"AreaCode": "206"}),
    ],
)
def test_boto3_generate_presigned_url_verifies(operation: str, params: dict[str, object]) -> None:
    client = boto3.client(
        "chime-sdk-voice",
        endpoint_url="https://chime.example.test:8443",
        region_name="eu-central-1",
        aws_access_key_id=AK,
        aws_secret_access_key=SK,
    )
    with patch("botocore.auth.get_current_datetime", return_value=WHEN):
        url = client.generate_presigned_url(operation, Params=params, ExpiresIn=900)
    wire = _wire_from_url("GET", url, {}, b"")
    signed = check(wire, now=NOW + timedelta(seconds=900))
    assert signed.presigned and signed.credential.region == "eu-central-1"
    assert rejected(wire, now=NOW + timedelta(seconds=901)).message.startswith(
        "Request has expired"
    )
