"""Per-caller token buckets: R requests per second with a burst of R."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from chimeproxy.protocol.errors import ThrottledClientException


class RateLimiter:
    """One token bucket per caller, so one noisy account never throttles another.

    Buckets are kept in least-recently-used order; a bucket idle long enough to have refilled
    completely is indistinguishable from a new one and is dropped, so the table holds only the
    accounts seen in the last `burst / rate` seconds (and never more than `max_buckets`),
    however many accounts call over time.
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = 100_000,
    ) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"--rate-limit must be a positive number of requests/s, not {rate}")
        self.rate = float(rate)
        # At least one token, or a rate below 1/s could never admit a single request.
        self.burst = max(self.rate, 1.0)
        self._clock = clock
        self._refill_seconds = self.burst / self.rate
        # A hard cap for very low rates (long refill windows) under a flood of accounts; past
        # it the least recently used bucket goes even if not yet full, erring towards leniency.
        self.max_buckets = max_buckets
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, account: str) -> bool:
        """Take one token from the account's bucket; False when it is empty."""
        now = self._clock()
        self._evict_idle(now)
        entry = self._buckets.pop(account, None)
        if entry is None:
            tokens = self.burst
        else:
            tokens, last = entry
            # max(): a clock that steps back (a wall clock injected in tests) must not drain.
            tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        # Re-inserted at the end: the table stays ordered by last use.
        self._buckets[account] = (tokens, now)
        if len(self._buckets) > self.max_buckets:
            self._buckets.popitem(last=False)
        return allowed

    def retry_after(self, account: str) -> float:
        """Seconds until the account's bucket holds a whole token again (0 when it does)."""
        entry = self._buckets.get(account)
        if entry is None:
            return 0.0
        tokens, last = entry
        tokens = min(self.burst, tokens + max(0.0, self._clock() - last) * self.rate)
        return max(0.0, (1.0 - tokens) / self.rate)

    def _evict_idle(self, now: float) -> None:
        # Oldest first; every bucket after the first recent one is more recent still.
        buckets = self._buckets
        while buckets:
            _, last = next(iter(buckets.values()))
            if now - last < self._refill_seconds:
                return
            buckets.popitem(last=False)

    def check(self, caller: str) -> None:
        """Raise 429 ThrottledClientException when the caller (an account, the data plane, an
        address: protocol/access.py) has no token left.

        The answer says when a token is back: `Retry-After` (whole seconds, RFC 9110) and
        `x-amz-retry-after` (milliseconds), which botocore's retry modes use as a minimum delay.
        """
        if self.allow(caller):
            return
        wait = self.retry_after(caller)
        raise ThrottledClientException(
            f"Rate exceeded: each caller may make {self.rate:g} requests per second "
            f"(bursts of {self.burst:g}); retry with back-off.",
            headers=[
                (b"retry-after", str(max(1, math.ceil(wait))).encode()),
                (b"x-amz-retry-after", str(math.ceil(wait * 1000)).encode()),
            ],
        )
