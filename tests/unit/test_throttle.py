"""The per-account token bucket, driven by an injected clock: no sleeps, no timing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chimeproxy.protocol.errors import ServiceError
from chimeproxy.protocol.http import Response
from chimeproxy.protocol.throttle import RateLimiter


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def limiter(rate: float) -> tuple[RateLimiter, FakeClock]:
    clock = FakeClock()
    return RateLimiter(rate, clock=clock), clock


def test_a_burst_of_rate_requests_then_throttled() -> None:
    bucket, _ = limiter(5)
    assert [bucket.allow("a") for _ in range(7)] == [True] * 5 + [False] * 2


def test_tokens_come_back_at_the_rate() -> None:
    bucket, clock = limiter(5)
    for _ in range(5):
        bucket.allow("a")
    clock.advance(0.1)
    assert not bucket.allow("a")  # half a token
    clock.advance(0.1)
    assert bucket.allow("a")
    assert not bucket.allow("a")
    clock.advance(60)
    assert [bucket.allow("a") for _ in range(6)] == [True] * 5 + [False]  # never above burst


def test_a_rate_below_one_still_admits_one_request() -> None:
    bucket, clock = limiter(0.5)
    assert bucket.burst == 1
    assert bucket.allow("a")
    clock.advance(1)
    assert not bucket.allow("a")
    clock.advance(1)
    assert bucket.allow("a")


def test_accounts_do_not_share_a_bucket() -> None:
    bucket, _ = limiter(2)
    assert [bucket.allow("noisy") for _ in range(10)] == [True, True] + [False] * 8
    assert [bucket.allow("quiet") for _ in range(2)] == [True, True]


def test_a_refused_request_costs_nothing() -> None:
    bucket, clock = limiter(1)
    assert bucket.allow("a")
    for _ in range(100):
        assert not bucket.allow("a")
    clock.advance(1)
    assert bucket.allow("a")


def test_a_clock_stepping_back_gives_no_tokens() -> None:
    bucket, clock = limiter(1)
    assert bucket.allow("a")
    clock.advance(-30)
    assert not bucket.allow("a")


def test_retry_after_says_when_a_token_is_back() -> None:
    bucket, clock = limiter(4)
    assert bucket.retry_after("a") == 0
    for _ in range(4):
        bucket.allow("a")
    assert bucket.retry_after("a") == pytest.approx(0.25)
    clock.advance(0.2)
    assert bucket.retry_after("a") == pytest.approx(0.05)


@pytest.mark.parametrize("rate", [0, -1, float("nan"), float("inf")])
def test_rate_must_be_positive_and_finite(rate: float) -> None:
    with pytest.raises(ValueError, match="--rate-limit"):
        RateLimiter(rate)


def test_the_table_stays_bounded_under_many_accounts() -> None:
    bucket, clock = limiter(10)
    for index in range(100_000):
        bucket.allow(f"account-{index}")
        clock.advance(0.01)
    # Only accounts seen within the last burst/rate = 1 s can still be below a full bucket.
    assert len(bucket) <= 101


def test_the_table_never_exceeds_its_cap() -> None:
    clock = FakeClock()
    bucket = RateLimiter(0.001, clock=clock, max_buckets=50)  # a 1000 s refill window
    for index in range(1000):
        bucket.allow(f"account-{index}")
    assert len(bucket) == 50
    assert not bucket.allow("account-999")  # the most recent ones are kept


def test_a_drained_bucket_is_not_forgotten_while_others_come_and_go() -> None:
    bucket, clock = limiter(1)
    assert bucket.allow("noisy")
    for index in range(1000):
        clock.advance(0.0009)
        bucket.allow(f"other-{index}")
    assert not bucket.allow("noisy")  # 0.9 s later: still less than one token


class Reference:
    """The same buckets, never evicted: what eviction must be indistinguishable from."""

    def __init__(self, rate: float) -> None:
        self.rate, self.burst = rate, max(rate, 1.0)
        self.buckets: dict[str, tuple[float, float]] = {}

    def allow(self, account: str, now: float) -> bool:
        tokens, last = self.buckets.get(account, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
        allowed = tokens >= 1.0
        self.buckets[account] = (tokens - 1.0 if allowed else tokens, now)
        return allowed


@settings(max_examples=300, derandomize=True, deadline=None)
@given(
    rate=st.sampled_from([0.5, 1.0, 3.0, 10.0]),
    steps=st.lists(
        st.tuples(
            st.sampled_from([0.0, 0.0, 0.01, 0.1, 0.3, 1.0, 2.5, 30.0]),
            st.sampled_from(["a", "b", "c", "d", "e"]),
        ),
        max_size=200,
    ),
)
def test_eviction_never_changes_an_answer(rate: float, steps: list[tuple[float, str]]) -> None:
    bucket, clock = limiter(rate)
    reference = Reference(rate)
    for pause, account in steps:
        clock.advance(pause)
        assert bucket.allow(account) == reference.allow(account, clock.now)


def test_a_caller_without_a_token_gets_429_with_retry_headers() -> None:
    bucket, _ = limiter(1)

    def call(caller: str) -> Response | None:
        try:
            bucket.check(caller)
        except ServiceError as error:
            return Response.error(error)
        return None

    assert call("account:a") is None
    throttled = call("account:a")
    assert throttled is not None and throttled.status == 429
    assert throttled.error_type == "ThrottledClientException"
    headers = dict(throttled.headers)
    assert headers[b"x-amzn-errortype"] == b"ThrottledClientException"
    assert headers[b"retry-after"] == b"1"
    assert 0 < int(headers[b"x-amz-retry-after"]) <= 1000
    assert b"1 requests per second" in throttled.body
    assert call("account:b") is None  # another caller has its own bucket
