"""Access rules of endpoints (protocol/endpoints.py): who the caller is, or the error that says
what to fix. The answer is also the caller's key for rate limiting."""

from __future__ import annotations

import base64
import binascii
import hmac

from chimeproxy.protocol.auth import Authenticator, is_loopback
from chimeproxy.protocol.endpoints import Access
from chimeproxy.protocol.errors import ForbiddenException
from chimeproxy.protocol.http import Request

ROUTE_SECRET_HEADER = "x-chimeproxy-route-secret"
DATA_PLANE = "data-plane"  # the one caller of the route-secret endpoints


class AccessControl:
    def __init__(self, authenticator: Authenticator, route_secret: str | None) -> None:
        self.authenticator = authenticator
        self.route_secret = route_secret

    def check(self, request: Request, access: Access) -> str:
        """Check the request against `access`; answer the caller's identity: an account (SigV4
        endpoints, which also set the request's account and region), the data plane, or the
        client's address (open endpoints)."""
        if access is Access.SIGV4:
            request.account, request.region = self.authenticator.authenticate(request)
            return f"account:{request.account}"
        if access is Access.ROUTE_SECRET:
            self._require_route_secret(request)
            return DATA_PLANE
        if access is Access.CONSOLE and self.authenticator.mode == "open":
            self._require_loopback_for_console(request)
        return f"address:{request.client_host}"

    @staticmethod
    def _require_loopback_for_console(request: Request) -> None:
        """Open mode signs every console visitor in as the default account: only the
        machine's own users may be that trusted."""
        if request.client_host is None or not is_loopback(request.client_host):
            raise ForbiddenException(
                "In open mode the console answers loopback callers only; start the server "
                "with --credentials to sign in to it from other hosts."
            )

    def _require_route_secret(self, request: Request) -> None:
        """The route secret when the server has one (header, or the password of HTTP Basic
        auth, for SMS providers that can only put credentials in the URL); else loopback."""
        secret = self.route_secret
        if secret:
            given = request.headers.get(ROUTE_SECRET_HEADER) or _basic_password(request)
            if given is None or not hmac.compare_digest(given.encode(), secret.encode()):
                raise ForbiddenException("A valid X-Chimeproxy-Route-Secret header is required.")
            return
        if request.client_host is None or not is_loopback(request.client_host):
            raise ForbiddenException(
                "This endpoint answers loopback callers only; set CHIMEPROXY_ROUTE_SECRET to "
                "serve other hosts."
            )


def _basic_password(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[2]
