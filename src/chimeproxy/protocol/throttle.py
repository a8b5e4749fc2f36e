"""Per-account token buckets: R requests per second with a burst of R."""

from __future__ import annotations

import time

from chimeproxy.protocol.errors import ThrottledClientException
from chimeproxy.protocol.http import Handler, Request, Response


class RateLimiter:
    """Each account has its own bucket, so one noisy account never throttles another."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.burst = max(rate, 1.0)
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, account: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(account, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[account] = (tokens, now)
            return False
        self._buckets[account] = (tokens - 1.0, now)
        return True

    async def middleware(self, request: Request, call_next: Handler) -> Response:
        if not self.allow(request.account):
            raise ThrottledClientException("Rate exceeded for this account; retry with back-off.")
        return await call_next(request)
