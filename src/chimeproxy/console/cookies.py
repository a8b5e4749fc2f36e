"""The console's session cookie, CSRF tokens and sign-in throttle. Pure: the key comes from the
caller (a server setting), the session rows from the store.

- The cookie's value is `<token>.<mac>`: a random token and its HMAC-SHA256 under the server's
  console key, so a forged or altered cookie is refused before any database look-up. The store
  keeps only the token's SHA-256 (`token_hash`): signing out deletes that row, and the cookie is
  then worthless on every process.
- The CSRF token of a session is an HMAC of its token under the same key (with a different
  label): every form carries it, every POST must return it.
- Before sign-in, a short-lived signed nonce cookie plays the same part for the sign-in form.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable
from http.cookies import CookieError, SimpleCookie

COOKIE = "chimeproxy_console"
SIGNIN_COOKIE = "chimeproxy_console_signin"
PATH = "/console/"
SESSION_SECONDS = 12 * 3600
SIGNIN_SECONDS = 1800


def _mac(key: bytes, label: str, token: str) -> str:
    digest = hmac.new(key, f"{label}|{token}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the store keeps of a session token."""
    return hashlib.sha256(token.encode()).hexdigest()


def signed(key: bytes, token: str, label: str = "cookie") -> str:
    """The cookie value for `token`."""
    return f"{token}.{_mac(key, label, token)}"


def verified(key: bytes, value: str | None, label: str = "cookie") -> str | None:
    """The token of a cookie value whose signature holds, else None."""
    if not value or value.count(".") != 1:
        return None
    token, mac = value.split(".")
    if not token or not hmac.compare_digest(mac.encode(), _mac(key, label, token).encode()):
        return None
    return token


def csrf_token(key: bytes, token: str, label: str = "csrf") -> str:
    """The CSRF token of the session (or sign-in nonce) `token`."""
    return _mac(key, label, token)


def csrf_ok(key: bytes, token: str, given: str | None, label: str = "csrf") -> bool:
    if not given:
        return False
    return hmac.compare_digest(given.encode(), csrf_token(key, token, label).encode())


def read_cookies(header: str | None) -> dict[str, str]:
    """Cookie header -> {name: value}; an unreadable header is no cookie at all."""
    if not header:
        return {}
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


def set_cookie(name: str, value: str, *, secure: bool, max_age: int) -> str:
    """A Set-Cookie value: HttpOnly (no script reads it), SameSite=Strict (no other site's page
    sends it), Secure over HTTPS, and only for the console's paths."""
    parts = [
        f"{name}={value}",
        f"Path={PATH}",
        f"Max-Age={max_age}",
        "HttpOnly",
        "SameSite=Strict",
    ]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def clear_cookie(name: str, *, secure: bool) -> str:
    return set_cookie(name, "", secure=secure, max_age=0)


class SignInThrottle:
    """At most `limit` failed sign-ins per client address within `window` seconds; beyond that
    the address must wait (a guessing brake, per process)."""

    def __init__(
        self,
        limit: int = 10,
        window: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, address: str) -> deque[float]:
        now = self.clock()
        failures = self._failures.setdefault(address, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures

    def blocked(self, address: str) -> bool:
        return len(self._recent(address)) >= self.limit

    def failed(self, address: str) -> None:
        self._recent(address).append(self.clock())
        if len(self._failures) > 10_000:  # forget the quietest addresses, bounding memory
            for quiet in [a for a, f in self._failures.items() if not f][:5_000]:
                del self._failures[quiet]

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)
