"""AWS Signature Version 4 verification of incoming requests.

Pure functions over the request as received on the wire (raw path, raw query, headers, body); the
canonical request is rebuilt exactly as botocore and the AWS JS SDK v3 build it when signing.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import quote_from_bytes, unquote_plus, unquote_to_bytes

__all__ = [
    "ALGORITHM",
    "INCOMPLETE_SIGNATURE",
    "INVALID_SIGNATURE",
    "MAX_PRESIGNED_EXPIRES",
    "MISSING_AUTHENTICATION_TOKEN",
    "UNRECOGNIZED_CLIENT",
    "UNSIGNED_PAYLOAD",
    "Credential",
    "SigV4Error",
    "SigV4Verifier",
    "SignedRequest",
    "canonical_query_string",
    "canonical_uri",
    "headers_from_asgi",
    "parse_request_auth",
]

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
MAX_PRESIGNED_EXPIRES = 604800

MISSING_AUTHENTICATION_TOKEN = "MissingAuthenticationTokenException"
INVALID_SIGNATURE = "InvalidSignatureException"
INCOMPLETE_SIGNATURE = "IncompleteSignatureException"
UNRECOGNIZED_CLIENT = "UnrecognizedClientException"

SIGNATURE_MISMATCH_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)

_PRESIGN_ALGORITHM = "X-Amz-Algorithm"
_PRESIGN_CREDENTIAL = "X-Amz-Credential"
_PRESIGN_DATE = "X-Amz-Date"
_PRESIGN_EXPIRES = "X-Amz-Expires"
_PRESIGN_SIGNED_HEADERS = "X-Amz-SignedHeaders"
_PRESIGN_SIGNATURE = "X-Amz-Signature"
_PRESIGN_TOKEN = "X-Amz-Security-Token"
_PRESIGN_REQUIRED = (
    _PRESIGN_ALGORITHM,
    _PRESIGN_CREDENTIAL,
    _PRESIGN_SIGNATURE,
    _PRESIGN_SIGNED_HEADERS,
    _PRESIGN_DATE,
    _PRESIGN_EXPIRES,
)
_PRESIGN_PARAMS = frozenset((*_PRESIGN_REQUIRED, _PRESIGN_TOKEN))
_PRESIGN_SIGNATURE_KEY = _PRESIGN_SIGNATURE.encode()
_PRESIGN_ALGORITHM_MARKER = _PRESIGN_ALGORITHM.encode()

# Same always-safe set as botocore's quote(..., safe='-_.~') and the JS SDK's escapeUri.
_QUERY_SAFE = b"-_.~"
_PATH_SAFE = b"/~"
# What quote_from_bytes(path, _PATH_SAFE) leaves as it is: letters, digits, `_.-~` and `/`.
# The bytes a path may hold that quote leaves as they are (deleted by `translate`, quicker than
# a regex's character class).
_PLAIN_PATH_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.~/-"
_DIGITS = frozenset("0123456789")
# The Authorization header as every AWS SDK writes it: its three components, in this order,
# each value of visible ASCII characters other than the comma (a range, which the regex engine
# tests far faster than `\s`), so that nothing in it would be stripped or split.
_VALUE = r"([!-+\--~]+)"
_COMMON_AUTHORIZATION = re.compile(
    rf"AWS4-HMAC-SHA256 Credential={_VALUE}, ?SignedHeaders={_VALUE}, ?Signature={_VALUE}"
)
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()  # every GET's payload hash


class SigV4Error(Exception):
    """A request whose SigV4 authentication is absent, malformed or wrong, as an AWS error type."""

    code: str
    message: str
    status: int
    canonical_request: str | None
    string_to_sign: str | None

    def __init__(
        self,
        code: str,
        message: str,
        *,
        canonical_request: str | None = None,
        string_to_sign: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = 400 if code == INCOMPLETE_SIGNATURE else 403
        # Kept off the message: meant for server-side debug logs only.
        self.canonical_request = canonical_request
        self.string_to_sign = string_to_sign


@dataclass(frozen=True, slots=True)
class Credential:
    """The credential scope `<access key>/<YYYYMMDD>/<region>/<service>/aws4_request`."""

    access_key_id: str
    date: str
    region: str
    service: str


# Not frozen: one is built per request, and a frozen dataclass sets each field through
# `object.__setattr__`, five times the cost of plain assignments.
@dataclass(slots=True)
class SignedRequest:
    """What a request claims, from its Authorization header or its presigned query parameters."""

    credential: Credential
    amz_date: str
    signed_headers: tuple[str, ...]
    signature: str
    presigned: bool
    expires: int | None
    security_token: str | None = None


def _incomplete(message: str) -> SigV4Error:
    return SigV4Error(INCOMPLETE_SIGNATURE, message)


def _invalid(message: str) -> SigV4Error:
    return SigV4Error(INVALID_SIGNATURE, message)


def headers_from_asgi(raw_headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Build the lower-cased header mapping `verify` expects from ASGI `scope["headers"]`.

    Repeated headers are joined with "," after trimming each value, which is how SigV4 combines
    them, so the result canonicalises exactly like the signer's view of the headers.
    """
    headers: dict[str, str] = {}
    for raw_name, raw_value in raw_headers:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1").strip()
        previous = headers.get(name)
        headers[name] = value if previous is None else f"{previous},{value}"
    return headers


# Days before each month in a common year; a leap year adds one from March on.
_DAYS_BEFORE_MONTH = (0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)
_DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_EPOCH_ORDINAL = 719163  # datetime.date(1970, 1, 1).toordinal()


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


# Every request signed in the same second carries the same date, and each is parsed twice (the
# parse checks it, the time check uses it): cached, and computed with integers, not `datetime`.
@functools.lru_cache(maxsize=256)
def _amz_date_epoch(amz_date: str) -> float:
    """Seconds since the epoch for a `YYYYMMDDTHHMMSSZ` timestamp; ValueError when malformed
    or not a real instant (what `datetime` refuses: month 13, 30 February, hour 24, year 0)."""
    if (
        len(amz_date) != 16
        or amz_date[8] != "T"
        or amz_date[15] != "Z"
        or not _DIGITS.issuperset(amz_date[:8])
        or not _DIGITS.issuperset(amz_date[9:15])
    ):
        raise ValueError(amz_date)
    year, month, day = int(amz_date[0:4]), int(amz_date[4:6]), int(amz_date[6:8])
    hour, minute, second = int(amz_date[9:11]), int(amz_date[11:13]), int(amz_date[13:15])
    leap = _is_leap(year)
    if (
        year < 1
        or not 1 <= month <= 12
        or not 1 <= day <= _DAYS_IN_MONTH[month] + (leap and month == 2)
        or hour > 23
        or minute > 59
        or second > 59
    ):
        raise ValueError(amz_date)
    before = year - 1
    ordinal = (
        before * 365
        + before // 4
        - before // 100
        + before // 400
        + _DAYS_BEFORE_MONTH[month]
        + (leap and month > 2)
        + day
    )
    return float((ordinal - _EPOCH_ORDINAL) * 86400 + hour * 3600 + minute * 60 + second)


def _format_epoch(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y%m%dT%H%M%SZ")


def _checked_amz_date(amz_date: str, source: str) -> str:
    try:
        _amz_date_epoch(amz_date)
    except (ValueError, OverflowError):
        raise _incomplete(
            f"{source} must be an ISO 8601 basic timestamp YYYYMMDD'T'HHMMSS'Z' in UTC, "
            f"e.g. 20240517T123456Z; got {amz_date[:40]!r}."
        ) from None
    return amz_date


def _amz_date_from_http_date(value: str) -> str:
    """botocore signs with the `Date` header, not X-Amz-Date, when a request already has one."""
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        raise _incomplete(
            "The Date header is not a valid HTTP date; send an X-Amz-Date header "
            "(YYYYMMDD'T'HHMMSS'Z') with SigV4."
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


# A client sends the same credential scope and signed-header list on every request of a day:
# each text is parsed once (the results are immutable; a malformed one raises every time).
@functools.lru_cache(maxsize=256)
def _parse_credential(text: str, source: str) -> Credential:
    parts = text.rsplit("/", 4)
    if len(parts) != 5 or not all(parts[:4]):
        raise _incomplete(
            f"{source} must have the form <AccessKeyId>/<YYYYMMDD>/<region>/<service>/aws4_request."
        )
    access_key_id, date, region, service, terminator = parts
    if terminator != TERMINATOR:
        raise _invalid(
            f"Credential should be scoped with a valid terminator: '{TERMINATOR}', "
            f"not '{terminator[:40]}'."
        )
    if len(date) != 8 or not _DIGITS.issuperset(date):
        raise _incomplete(f"The date in the credential scope must be YYYYMMDD; got {date[:40]!r}.")
    return Credential(access_key_id, date, region, service)


@functools.lru_cache(maxsize=256)
def _parse_signed_headers(text: str, source: str) -> tuple[str, ...]:
    names = tuple(text.split(";"))
    if not all(names) or any(name != name.strip() for name in names):
        raise _incomplete(
            f"{source} must be a ';'-separated list of lower-case header names, e.g. "
            "'content-type;host;x-amz-date'."
        )
    if len(set(names)) != len(names):
        raise _incomplete(f"{source} lists a header more than once.")
    return names


def _authorization_components(authorization: str) -> dict[str, str]:
    """The Authorization header's key=value components, by name; raises for a wrong scheme
    or a malformed component."""
    common = _COMMON_AUTHORIZATION.fullmatch(authorization)
    if common is not None:
        # What the general parse below finds for this form, in a third of the work.
        credential, signed_headers, signature = common.groups()
        return {"Credential": credential, "SignedHeaders": signed_headers, "Signature": signature}
    scheme_and_rest = authorization.split(None, 1)
    scheme = scheme_and_rest[0] if scheme_and_rest else ""
    if scheme != ALGORITHM:
        shown = scheme[:32] or "(empty)"
        raise _incomplete(
            f"Unsupported Authorization type {shown!r}: sign requests with AWS Signature "
            f"Version 4 ('{ALGORITHM} Credential=..., SignedHeaders=..., Signature=...')."
        )
    components: dict[str, str] = {}
    rest = scheme_and_rest[1] if len(scheme_and_rest) > 1 else ""
    for part in rest.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not name and not sep:
            continue
        if not sep:
            raise _incomplete(
                f"Authorization header component {name[:32]!r} is not a key=value pair; "
                "expected Credential=..., SignedHeaders=..., Signature=..."
            )
        if name in components:
            raise _incomplete(f"Authorization header has more than one {name[:32]!r} component.")
        components[name] = value.strip()
    return components


def _parse_authorization(authorization: str, headers: Mapping[str, str]) -> SignedRequest:
    components = _authorization_components(authorization)
    amz_date = headers.get("x-amz-date")
    date_header = headers.get("date") if amz_date is None else None
    credential = components.get("Credential")
    signed_headers = components.get("SignedHeaders")
    signature = components.get("Signature")
    if not (credential and signed_headers and signature) or (
        amz_date is None and date_header is None
    ):
        problems = [
            f"Authorization header requires '{name}' parameter."
            for name in ("Credential", "Signature", "SignedHeaders")
            if not components.get(name)
        ]
        if amz_date is None and date_header is None:
            problems.append(
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' "
                "header."
            )
        raise _incomplete(" ".join(problems))

    if amz_date is not None:
        amz_date = _checked_amz_date(amz_date.strip(), "The X-Amz-Date header")
    else:
        assert date_header is not None
        amz_date = _amz_date_from_http_date(date_header)
    # Positional: keyword arguments took four times as long.
    return SignedRequest(
        _parse_credential(credential, "Credential"),
        amz_date,
        _parse_signed_headers(signed_headers, "SignedHeaders"),
        signature,
        False,  # presigned
        None,  # expires
        headers.get("x-amz-security-token"),
    )


def _presign_params(query_string: bytes) -> dict[str, str]:
    params: dict[str, str] = {}
    for segment in query_string.split(b"&"):
        raw_key, _, raw_value = segment.partition(b"=")
        key = unquote_plus(raw_key.decode("latin-1"))
        if key not in _PRESIGN_PARAMS:
            continue
        if key in params:
            raise _incomplete(f"The query string has more than one {key!r} parameter.")
        params[key] = unquote_plus(raw_value.decode("latin-1"))
    return params


def _parse_presigned(params: dict[str, str]) -> SignedRequest:
    missing = [name for name in _PRESIGN_REQUIRED if not params.get(name)]
    if missing:
        raise _incomplete(
            "AWS query-string parameters must include 'X-Amz-Algorithm', 'X-Amz-Credential', "
            "'X-Amz-Signature', 'X-Amz-SignedHeaders', 'X-Amz-Date' and 'X-Amz-Expires'; missing "
            + ", ".join(f"'{name}'" for name in missing)
            + "."
        )
    algorithm = params[_PRESIGN_ALGORITHM]
    if algorithm != ALGORITHM:
        raise _incomplete(
            f"Unsupported X-Amz-Algorithm {algorithm[:32]!r}: presigned URLs must use "
            f"'{ALGORITHM}'."
        )
    expires_text = params[_PRESIGN_EXPIRES]
    if not (expires_text.isascii() and expires_text.isdigit()) or len(expires_text) > 12:
        raise _incomplete(
            f"X-Amz-Expires must be a whole number of seconds (1 to {MAX_PRESIGNED_EXPIRES})."
        )
    return SignedRequest(
        credential=_parse_credential(params[_PRESIGN_CREDENTIAL], "X-Amz-Credential"),
        amz_date=_checked_amz_date(params[_PRESIGN_DATE], "X-Amz-Date"),
        signed_headers=_parse_signed_headers(
            params[_PRESIGN_SIGNED_HEADERS], "X-Amz-SignedHeaders"
        ),
        signature=params[_PRESIGN_SIGNATURE],
        presigned=True,
        expires=int(expires_text),
        security_token=params.get(_PRESIGN_TOKEN),
    )


def parse_request_auth(query_string: bytes, headers: Mapping[str, str]) -> SignedRequest | None:
    """None when the request carries no SigV4 auth at all (no Authorization header and no
    X-Amz-Algorithm query). Raises SigV4Error(InvalidSignature/Incomplete...) when it is present but
    malformed."""
    authorization = headers.get("authorization")
    params: dict[str, str] = {}
    # A substring test first keeps the common header-signed request from parsing its query twice.
    # `find`, not `in`: on bytes, `in` first tries its operand as an integer, raising and
    # clearing a TypeError each time (about 1,800 instructions, docs/performance.md).
    if query_string.find(_PRESIGN_ALGORITHM_MARKER) >= 0:
        params = _presign_params(query_string)
    if authorization is None:
        return _parse_presigned(params) if _PRESIGN_ALGORITHM in params else None
    if _PRESIGN_ALGORITHM in params:
        raise _incomplete(
            "Only one auth mechanism allowed; send either the Authorization header or the "
            "X-Amz-Algorithm presigned query parameters, not both."
        )
    return _parse_authorization(authorization, headers)


def _remove_dot_segments(path: bytes) -> bytes:
    """RFC 3986 5.2.4 plus collapsing of empty segments, byte for byte as botocore does it."""
    output: list[bytes] = []
    for segment in path.split(b"/"):
        if not segment or segment == b".":
            continue
        if segment == b"..":
            if output:
                output.pop()
        else:
            output.append(segment)
    first = b"/" if path.startswith(b"/") else b""
    last = b"/" if path.endswith(b"/") and output else b""
    return first + b"/".join(output) + last


def canonical_uri(raw_path: bytes) -> str:
    """The SigV4 canonical URI for a path as received on the wire (still percent-encoded).

    Clients sign the already-encoded path after dot-segment removal, encoding it once more, so
    `%2B` on the wire is `%252B` here; the raw path must never be decoded first.
    """
    if not raw_path:
        return "/"
    if not raw_path.startswith(b"/") or raw_path.find(b"//") >= 0 or raw_path.find(b"/.") >= 0:
        raw_path = _remove_dot_segments(raw_path)
    if not raw_path.translate(None, _PLAIN_PATH_BYTES):
        return raw_path.decode("ascii")  # nothing to encode (ids, names): as quote would answer
    return quote_from_bytes(raw_path, _PATH_SAFE)


def _reencode(component: bytes) -> str:
    if b"%" in component or b"+" in component:
        component = unquote_to_bytes(component.replace(b"+", b" "))
    return quote_from_bytes(component, _QUERY_SAFE)


def canonical_query_string(query_string: bytes, *, drop_signature: bool = False) -> str:
    """The SigV4 canonical query: each key and value decoded ('+' is a space) and re-encoded with
    only unreserved characters left bare, sorted by encoded key then encoded value."""
    if not query_string:
        return ""
    pairs: list[tuple[str, str]] = []
    for segment in query_string.split(b"&"):
        if not segment:
            continue
        raw_key, _, raw_value = segment.partition(b"=")
        key = _reencode(raw_key)
        if drop_signature and key == _PRESIGN_SIGNATURE:
            continue
        pairs.append((key, _reencode(raw_value)))
    pairs.sort()
    return "&".join([f"{key}={value}" for key, value in pairs])


# Short queries repeat (a page size, a status filter): each is canonicalized once. Long ones
# (a page token) are not kept, so the cache stays small whatever clients send.
_cached_query_string = functools.lru_cache(maxsize=256)(canonical_query_string)
_CACHED_QUERY_BYTES = 256


def _canonical_query(query_string: bytes, drop_signature: bool) -> str:
    if not query_string:
        return ""  # every Get of one resource
    if len(query_string) > _CACHED_QUERY_BYTES:
        return canonical_query_string(query_string, drop_signature=drop_signature)
    return _cached_query_string(query_string, drop_signature=drop_signature)


def _verbatim_query_string(query_string: bytes, *, drop_signature: bool) -> str:
    """botocore's canonical query when it signs a URL that already has a query: pairs sorted but
    left exactly as written, which differs from the re-encoded form only for unusual encodings."""
    if not query_string:
        return ""
    pairs: list[tuple[bytes, bytes]] = []
    for segment in query_string.split(b"&"):
        raw_key, _, raw_value = segment.partition(b"=")
        if drop_signature and raw_key == _PRESIGN_SIGNATURE_KEY:
            continue
        pairs.append((raw_key, raw_value))
    pairs.sort()
    return b"&".join([key + b"=" + value for key, value in pairs]).decode(
        "utf-8", "surrogateescape"
    )


def _derive_signing_key(secret_access_key: str, date: str, region: str, service: str) -> SigningKey:
    key = hmac.digest(f"AWS4{secret_access_key}".encode(), date.encode(), "sha256")
    key = hmac.digest(key, region.encode(), "sha256")
    key = hmac.digest(key, service.encode(), "sha256")
    return SigningKey(hmac.digest(key, TERMINATOR.encode(), "sha256"))


class SigningKey:
    """A derived signing key, with HMAC-SHA256's two padded-key states hashed once (RFC 2104):
    a signature then costs two copies and three small updates. `hmac.digest` starts over
    from the key each call, and through OpenSSL 3 that took three times as long."""

    __slots__ = ("_inner", "_outer", "key")

    def __init__(self, key: bytes) -> None:
        self.key = key
        padded = key.ljust(_SHA256_BLOCK, b"\0")  # a derived key is 32 bytes, never longer
        self._inner = hashlib.sha256(padded.translate(_IPAD))
        self._outer = hashlib.sha256(padded.translate(_OPAD))

    def signature(self, string_to_sign: bytes) -> bytes:
        """The hex HMAC-SHA256 of `string_to_sign`, as ASCII bytes."""
        inner = self._inner.copy()
        inner.update(string_to_sign)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest().encode()


_SHA256_BLOCK = 64
_IPAD = bytes(byte ^ 0x36 for byte in range(256))
_OPAD = bytes(byte ^ 0x5C for byte in range(256))


def _format_skew(seconds: int) -> str:
    return f"{seconds // 60} min." if seconds % 60 == 0 else f"{seconds} s."


def _epoch_of(now: datetime | float) -> float:
    if isinstance(now, float):
        return now
    return (now if now.tzinfo is not None else now.replace(tzinfo=UTC)).timestamp()


class SigV4Verifier:
    """Checks SigV4 signatures, payload hashes, credential scope and request time."""

    __slots__ = ("_signing_key", "max_skew_seconds", "service")

    def __init__(
        self, service: str = "chime", max_skew_seconds: int = 300, key_cache_size: int = 1024
    ) -> None:
        self.service = service
        self.max_skew_seconds = max_skew_seconds
        # Per-instance LRU so key_cache_size is honoured; a key per (secret, day, region, service).
        self._signing_key: Callable[[str, str, str, str], SigningKey] = functools.lru_cache(
            maxsize=key_cache_size
        )(_derive_signing_key)

    def verify(
        self,
        *,
        method: str,
        raw_path: bytes,
        query_string: bytes,
        headers: Mapping[str, str],
        body: bytes,
        signed: SignedRequest,
        secret_access_key: str,
        now: datetime | float,
    ) -> None:
        """Raise SigV4Error when the signature, payload hash, scope or time is wrong; `now` is
        a datetime or seconds since the epoch."""
        credential = signed.credential
        if credential.service != self.service:
            raise _invalid(f"Credential should be scoped to correct service: '{self.service}'.")
        if credential.date != signed.amz_date[:8]:
            raise _invalid(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
                f"from HTTP: '{credential.date}' != '{signed.amz_date[:8]}', "
                f"from '{signed.amz_date}'."
            )
        self._check_time(signed, _epoch_of(now))
        if "host" not in signed.signed_headers:
            raise _invalid(
                "The host header must be signed: include 'host' in "
                + ("X-Amz-SignedHeaders." if signed.presigned else "SignedHeaders.")
            )

        declared = headers.get("x-amz-content-sha256")
        if declared is None:
            payload_hash = _EMPTY_SHA256 if not body else hashlib.sha256(body).hexdigest()
        elif declared == UNSIGNED_PAYLOAD:
            if not signed.presigned:
                raise _invalid(
                    "X-Amz-Content-SHA256: UNSIGNED-PAYLOAD is only accepted on presigned URLs; "
                    "sign the request body or send its SHA-256 hex digest."
                )
            payload_hash = declared
        elif declared.lower() == (_EMPTY_SHA256 if not body else hashlib.sha256(body).hexdigest()):
            payload_hash = declared
        else:
            raise _invalid(
                "The payload hash in the X-Amz-Content-SHA256 header does not match the body: "
                "send the lower-case hex SHA-256 digest of the exact bytes of the request body."
            )

        # The canonical request: method, URI, query, headers (each line ending in a newline),
        # signed header names and payload hash, one per line, joined once.
        parts = [
            method.upper(),
            canonical_uri(raw_path),
            _canonical_query(query_string, signed.presigned),
            self._canonical_headers(signed.signed_headers, headers),
            ";".join(signed.signed_headers),
            payload_hash,
        ]
        query = parts[2]
        scope = f"{credential.date}/{credential.region}/{credential.service}/{TERMINATOR}"
        key = self._signing_key(
            secret_access_key, credential.date, credential.region, credential.service
        )
        provided = signed.signature.encode("utf-8", "surrogatepass")

        first = "\n".join(parts)
        first_sts = self._string_to_sign(signed.amz_date, scope, first)
        expected = key.signature(first_sts.encode())
        if hmac.compare_digest(expected, provided):
            return
        # Rarer ways a real client may have signed the same bytes, tried only after a mismatch.
        queries = [query]
        verbatim = _verbatim_query_string(query_string, drop_signature=signed.presigned)
        if verbatim != query:
            queries.append(verbatim)
        payloads = [payload_hash]
        if signed.presigned and declared is None:
            payloads.append(UNSIGNED_PAYLOAD)
        for candidate_query in queries:
            for candidate_payload in payloads:
                if candidate_query is query and candidate_payload is payload_hash:
                    continue
                parts[2], parts[5] = candidate_query, candidate_payload
                canonical = "\n".join(parts)
                sts = self._string_to_sign(signed.amz_date, scope, canonical)
                expected = key.signature(sts.encode())
                if hmac.compare_digest(expected, provided):
                    return
        raise SigV4Error(
            INVALID_SIGNATURE,
            SIGNATURE_MISMATCH_MESSAGE,
            canonical_request=first,
            string_to_sign=first_sts,
        )

    @staticmethod
    def _string_to_sign(amz_date: str, scope: str, canonical_request: str) -> str:
        digest = hashlib.sha256(canonical_request.encode("utf-8", "surrogateescape")).hexdigest()
        return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"

    @staticmethod
    def _canonical_headers(signed_headers: tuple[str, ...], headers: Mapping[str, str]) -> str:
        lines = []
        for name in signed_headers:
            value = headers.get(name)
            if value is None:
                value = headers.get(name.lower())
                if value is None:
                    raise _invalid(
                        f"The signed header {name[:64]!r} is listed in SignedHeaders but is not "
                        "present in the request."
                    )
            # Trimall: strip and collapse inner whitespace runs to one space.
            lines.append(f"{name}:{' '.join(value.split())}\n")
        return "".join(lines)

    def _check_time(self, signed: SignedRequest, now_epoch: float) -> None:
        try:
            request_epoch = _amz_date_epoch(signed.amz_date)
        except (ValueError, OverflowError):
            raise _incomplete(
                "X-Amz-Date must be an ISO 8601 basic timestamp YYYYMMDD'T'HHMMSS'Z' in UTC."
            ) from None
        skew = self.max_skew_seconds
        if request_epoch > now_epoch + skew:
            raise _invalid(
                f"Signature not yet current: {signed.amz_date} is still later than "
                f"{_format_epoch(now_epoch + skew)} ({_format_epoch(now_epoch)} + "
                f"{_format_skew(skew)}) Check your clock."
            )
        if signed.presigned:
            expires = signed.expires
            if expires is None or not 1 <= expires <= MAX_PRESIGNED_EXPIRES:
                raise _invalid(
                    "X-Amz-Expires must be between 1 and "
                    f"{MAX_PRESIGNED_EXPIRES} seconds (one week)."
                )
            if now_epoch > request_epoch + expires:
                raise _invalid(
                    "Request has expired: the presigned URL expired at "
                    f"{_format_epoch(request_epoch + expires)} (X-Amz-Date {signed.amz_date} + "
                    f"X-Amz-Expires {expires} s); server time is {_format_epoch(now_epoch)}. "
                    "Generate a new presigned URL."
                )
        elif request_epoch < now_epoch - skew:
            raise _invalid(
                f"Signature expired: {signed.amz_date} is now earlier than "
                f"{_format_epoch(now_epoch - skew)} ({_format_epoch(now_epoch)} - "
                f"{_format_skew(skew)}) Check your clock."
            )
