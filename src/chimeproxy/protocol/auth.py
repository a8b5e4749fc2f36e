"""Who is calling: account from the access key, region from the SigV4 credential scope, and in
strict mode a verified signature."""

from __future__ import annotations

import csv
import functools
import ipaddress
import logging
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from chimeproxy.protocol.errors import (
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    ServiceError,
    UnrecognizedClientException,
)
from chimeproxy.protocol.http import Request
from chimeproxy.protocol.sigv4 import SignedRequest, SigV4Error, SigV4Verifier, parse_request_auth
from chimeproxy.settings import Settings

log = logging.getLogger("chimeproxy.auth")

MODES = ("open", "strict")
CREDENTIALS_HEADER = ("access_key_id", "secret_access_key", "account_id")

_SIGV4_ERRORS: dict[str, type[ServiceError]] = {
    "MissingAuthenticationTokenException": MissingAuthenticationTokenException,
    "UnrecognizedClientException": UnrecognizedClientException,
    "InvalidSignatureException": InvalidSignatureException,
    "IncompleteSignatureException": IncompleteSignatureException,
}

# Region names as AWS spells them (`us-east-1`, `us-gov-west-1`) and local stand-ins (`local`):
# lower-case letters, digits and inner hyphens. The region names resources and ARNs, so nothing
# else (slashes, colons, spaces, kilobytes of text) may become one.
_REGION = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?\Z")
_ACCOUNT = re.compile(r"[0-9]{12}\Z")


class CredentialsError(ValueError):
    """A credentials file that cannot be used; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Credential:
    """One line of the credentials file, keyed by its access key id."""

    secret_access_key: str
    account_id: str


def load_credentials(path: str) -> dict[str, Credential]:
    """Read a CSV with header `access_key_id,secret_access_key,account_id`; CredentialsError
    names the file and line of anything unusable (the secret itself is never repeated)."""
    credentials: dict[str, Credential] = {}
    try:
        # utf-8-sig: spreadsheets save CSV with a byte-order mark that would hide the header.
        with Path(path).open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not set(CREDENTIALS_HEADER) <= {
                name.strip() for name in reader.fieldnames
            }:
                raise CredentialsError(f"{path}: the header must be {','.join(CREDENTIALS_HEADER)}")
            reader.fieldnames = [name.strip() for name in reader.fieldnames]
            for line, row in enumerate(reader, start=2):
                key, secret, account = (
                    (row.get(name) or "").strip() for name in CREDENTIALS_HEADER
                )
                if not (key or secret or account):
                    continue  # a blank line
                if not key or not secret or not _ACCOUNT.match(account):
                    raise CredentialsError(
                        f"{path}:{line}: needs an access key id, a secret access key and a "
                        "12-digit account id"
                    )
                if key in credentials:
                    raise CredentialsError(f"{path}:{line}: access key id {key} appears twice")
                credentials[key] = Credential(secret, account)
    except OSError as exc:
        raise CredentialsError(f"cannot read the credentials file {path}: {exc.strerror}") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise CredentialsError(f"{path}: not a UTF-8 CSV file ({exc})") from exc
    if not credentials:
        raise CredentialsError(f"{path}: no credentials: add lines after the header")
    return credentials


# Asked on every data-plane request (its client address) and parsed by ipaddress in ~4 µs; a
# server sees a handful of addresses.
@functools.lru_cache(maxsize=1024)
def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def choose_mode(settings: Settings) -> str:
    """Secure by default: open only on loopback unless asked; strict needs credentials.

    Raises ValueError with a message that says what to pass instead.
    """
    mode = settings.auth
    if mode is None:
        mode = "strict" if settings.credentials or not is_loopback(settings.host) else "open"
        if mode == "strict" and not settings.credentials:
            raise ValueError(
                f"refusing to listen on {settings.host} without authentication: pass "
                "--credentials FILE (strict SigV4 verification), or --auth open to accept any "
                "caller on purpose"
            )
    if mode not in MODES:
        raise ValueError(f"--auth must be open or strict, not {mode!r}")
    if mode == "strict" and not settings.credentials:
        raise ValueError(
            "--auth strict needs --credentials FILE (CSV: access_key_id,secret_access_key,"
            "account_id)"
        )
    return mode


def announce_mode(settings: Settings, mode: str, access_keys: int) -> None:
    """The log line that says which authentication mode is active."""
    if mode == "strict":
        log.info(
            "authentication: strict SigV4 verification",
            extra={"auth": mode, "access_keys": access_keys},
        )
    elif is_loopback(settings.host):
        log.info("authentication: open (any caller, loopback only)", extra={"auth": mode})
    else:
        log.warning(
            "authentication: open on a non-loopback address: anyone who can reach "
            f"{settings.host} can act as any account",
            extra={"auth": mode},
        )


class Authenticator:
    """Resolves (account, region) for each request; verifies signatures in strict mode."""

    def __init__(self, settings: Settings, mode: str, credentials: dict[str, Credential]) -> None:
        self.mode = mode
        self.credentials = credentials
        self.default_account = settings.default_account
        self.default_region = settings.default_region
        # One verifier per server: it caches signing keys per (secret, day, region, service).
        self.verifier = SigV4Verifier(service="chime")

    @classmethod
    def from_settings(cls, settings: Settings, *, announce: bool = True) -> Authenticator:
        """Choose the mode and load the credentials file; with `announce`, say in the log which
        mode is active (the command line does it once, first, for all its processes)."""
        mode = choose_mode(settings)
        credentials: dict[str, Credential] = {}
        if settings.credentials:
            credentials = load_credentials(settings.credentials)
        authenticator = cls(settings, mode, credentials)
        if announce:
            authenticator.announce(settings)
        return authenticator

    def announce(self, settings: Settings) -> None:
        """Say in the log which mode is active, then warn of a credentials file others can
        read."""
        announce_mode(settings, self.mode, len(self.credentials))
        if settings.credentials:
            _warn_if_readable_by_others(settings.credentials)

    def account_for(self, access_key_id: str) -> str:
        """The account of an access key: 12 digits are the account, else the file's mapping."""
        if _ACCOUNT.match(access_key_id):
            return access_key_id
        known = self.credentials.get(access_key_id)
        return known.account_id if known else self.default_account

    def authenticate(self, request: Request) -> tuple[str, str]:
        """(account, region) of the caller; raises the AWS error that says what to fix."""
        try:
            signed = parse_request_auth(request.query_string.encode("latin-1"), request.headers)
        except SigV4Error as exc:
            if self.mode == "open":
                return self.default_account, self.default_region
            raise _SIGV4_ERRORS.get(exc.code, InvalidSignatureException)(exc.message) from exc
        if signed is None:
            if self.mode == "open":
                return self.default_account, self.default_region
            raise MissingAuthenticationTokenException(
                "Missing Authentication Token: sign the request with AWS Signature Version 4 "
                "(an Authorization header, or X-Amz-* query parameters of a presigned URL)."
            )
        scope = signed.credential
        _check_region(scope.region)
        if self.mode == "open":
            return self.account_for(scope.access_key_id), scope.region
        return self._verified_account(request, signed), scope.region

    def _verified_account(self, request: Request, signed: SignedRequest) -> str:
        known = self.credentials.get(signed.credential.access_key_id)
        if known is None:
            raise UnrecognizedClientException(
                "The security token included in the request is invalid: this server has no "
                "such access key id. Sign with an access key from its credentials file."
            )
        try:
            self.verifier.verify(
                method=request.method,
                raw_path=request.raw_path.encode("latin-1"),
                query_string=request.query_string.encode("latin-1"),
                headers=request.headers,
                body=request.body,
                signed=signed,
                secret_access_key=known.secret_access_key,
                # The real wall clock, never the --clock-control one: a test that moves the
                # service's clock a day ahead must not make every signature look stale.
                now=time.time(),
            )
        except SigV4Error as exc:
            raise _SIGV4_ERRORS.get(exc.code, InvalidSignatureException)(exc.message) from exc
        return known.account_id


@functools.lru_cache(maxsize=64)  # a client names the same few regions all day
def _check_region(region: str) -> None:
    if not _REGION.match(region):
        raise InvalidSignatureException(
            f"Credential should be scoped to a valid region, not {region[:40]!r}: use a region "
            "name such as us-east-1 (lower-case letters, digits and hyphens)."
        )


def _warn_if_readable_by_others(path: str) -> None:
    try:
        mode = Path(path).stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "the credentials file is readable by other users; chmod 600 it",
            extra={"path": path},
        )
