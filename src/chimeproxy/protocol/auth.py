"""Who is calling: account from the access key, region from the SigV4 credential scope, and in
strict mode a verified signature."""

from __future__ import annotations

import csv
import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from chimeproxy.config import Settings
from chimeproxy.protocol.errors import (
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    ServiceError,
    UnrecognizedClientException,
)
from chimeproxy.protocol.http import Request
from chimeproxy.protocol.sigv4 import SigV4Error, SigV4Verifier, parse_request_auth

_SIGV4_ERRORS: dict[str, type[ServiceError]] = {
    "MissingAuthenticationTokenException": MissingAuthenticationTokenException,
    "UnrecognizedClientException": UnrecognizedClientException,
    "InvalidSignatureException": InvalidSignatureException,
    "IncompleteSignatureException": IncompleteSignatureException,
}


@dataclass(frozen=True, slots=True)
class Credential:
    secret_access_key: str
    account_id: str


def load_credentials(path: str) -> dict[str, Credential]:
    """CSV with header `access_key_id,secret_access_key,account_id`."""
    credentials: dict[str, Credential] = {}
    with Path(path).open(newline="") as handle:
        reader = csv.DictReader(handle)
        expected = {"access_key_id", "secret_access_key", "account_id"}
        if not reader.fieldnames or not expected <= set(reader.fieldnames):
            raise ValueError(
                f"{path}: the header must be access_key_id,secret_access_key,account_id"
            )
        for line, row in enumerate(reader, start=2):
            key, secret, account = (
                row["access_key_id"],
                row["secret_access_key"],
                row["account_id"],
            )
            if not key or not secret or not (account.isdigit() and len(account) == 12):
                raise ValueError(f"{path}:{line}: needs a key id, a secret and a 12-digit account")
            credentials[key.strip()] = Credential(secret.strip(), account.strip())
    return credentials


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def choose_mode(settings: Settings) -> str:
    """Secure by default: open only on loopback unless asked; strict needs credentials."""
    mode = settings.auth
    if mode is None:
        mode = "strict" if settings.credentials or not is_loopback(settings.host) else "open"
    if mode not in ("open", "strict"):
        raise ValueError(f"--auth must be open or strict, not {mode!r}")
    if mode == "strict" and not settings.credentials:
        raise ValueError(
            f"refusing to listen on {settings.host} without authentication: pass --credentials "
            "FILE (strict SigV4 verification), or --auth open to accept any caller on purpose"
        )
    return mode


class Authenticator:
    """Resolves (account, region) for each request; verifies signatures in strict mode."""

    def __init__(self, settings: Settings, mode: str, credentials: dict[str, Credential]) -> None:
        self.mode = mode
        self.credentials = credentials
        self.default_account = settings.default_account
        self.default_region = settings.default_region
        self.verifier = SigV4Verifier(service="chime")

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        mode = choose_mode(settings)
        credentials = load_credentials(settings.credentials) if settings.credentials else {}
        return cls(settings, mode, credentials)

    def account_for(self, access_key_id: str) -> str:
        if len(access_key_id) == 12 and access_key_id.isdigit():
            return access_key_id
        known = self.credentials.get(access_key_id)
        return known.account_id if known else self.default_account

    def authenticate(self, request: Request) -> tuple[str, str]:
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
                "Missing Authentication Token: sign the request with AWS Signature Version 4."
            )
        scope = signed.credential
        if self.mode == "open":
            return self.account_for(scope.access_key_id), scope.region
        known = self.credentials.get(scope.access_key_id)
        if known is None:
            raise UnrecognizedClientException(
                "The security token included in the request is invalid: unknown access key id."
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
                now=datetime.now(UTC),
            )
        except SigV4Error as exc:
            raise _SIGV4_ERRORS.get(exc.code, InvalidSignatureException)(exc.message) from exc
        return known.account_id, scope.region
