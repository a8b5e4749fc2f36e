"""The console's pure helpers: masked numbers, the session cookie and CSRF tokens, the sign-in
throttle, the hourly chart."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chimeproxy.console import charts, cookies, masking, pages

KEY = b"k" * 32


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+12065550150", "+1 206 ***-0150"),
        ("+18005550100", "+1 800 ***-0100"),
        ("+442079460958", "+44 20 **** 0958"),
        ("+33612345678", "+33 6 ** ** 56 78"),
        ("+97310000000", "+973 1 *** 0000"),
        ("anonymous", "anonymous"),
        ("", ""),
    ],
)
def test_numbers_are_masked_but_for_their_prefix_and_last_four_digits(
    number: str, masked: str
) -> None:
    assert masking.mask(number) == masked


@given(st.from_regex(r"\+[1-9][0-9]{7,14}", fullmatch=True))
def test_a_masked_number_never_shows_more_than_its_prefix_and_last_four(number: str) -> None:
    shown = masking.mask(number)
    digits = "".join(c for c in shown if c.isdigit())
    assert digits.endswith(number[-4:])
    # At most the country code (3 digits), a first group and the last four; the rest starred.
    assert len(digits) <= 3 + 5 + 4
    stars = shown.count("*")
    national = stars + len(digits) - len(shown.split(" ")[0][1:])  # less the country code
    assert stars >= 3 or national < 7


@given(st.from_regex(r"\+1[2-9][0-9]{9}", fullmatch=True))
def test_the_shortcut_for_nanp_numbers_masks_them_as_their_grouping_does(number: str) -> None:
    assert masking.mask(number) == masking.grouped(number)


def test_reveal_shows_the_whole_number() -> None:
    assert masking.shown("+12065550150", reveal=True) == "+12065550150"
    assert masking.shown("+12065550150", reveal=False) == "+1 206 ***-0150"


def test_a_signed_cookie_is_accepted_and_anything_else_refused() -> None:
    token = cookies.new_token()
    value = cookies.signed(KEY, token)
    assert cookies.verified(KEY, value) == token
    assert cookies.verified(b"other key" * 4, value) is None
    assert cookies.verified(KEY, value[:-1] + ("A" if value[-1] != "A" else "B")) is None
    assert cookies.verified(KEY, cookies.new_token() + "." + value.split(".")[1]) is None
    assert cookies.verified(KEY, token) is None
    assert cookies.verified(KEY, None) is None
    # A value signed for another purpose (the sign-in nonce) is not a session cookie.
    assert cookies.verified(KEY, cookies.signed(KEY, token, "signin-cookie")) is None


def test_csrf_tokens_belong_to_one_session() -> None:
    mine, theirs = cookies.new_token(), cookies.new_token()
    token = cookies.csrf_token(KEY, mine)
    assert cookies.csrf_ok(KEY, mine, token)
    assert not cookies.csrf_ok(KEY, theirs, token)
    assert not cookies.csrf_ok(KEY, mine, None)
    assert not cookies.csrf_ok(KEY, mine, "")
    assert not cookies.csrf_ok(KEY, mine, cookies.csrf_token(KEY, mine, "signin"))
    # The store keeps a hash, never the token itself.
    assert cookies.token_hash(mine) != mine and len(cookies.token_hash(mine)) == 64


def test_the_cookie_is_httponly_strict_and_secure_over_https() -> None:
    plain = cookies.set_cookie("c", "v", secure=False, max_age=60)
    assert plain == "c=v; Path=/console/; Max-Age=60; HttpOnly; SameSite=Strict"
    assert cookies.set_cookie("c", "v", secure=True, max_age=60).endswith("; Secure")
    assert "Max-Age=0" in cookies.clear_cookie("c", secure=False)


def test_cookies_are_read_from_the_header() -> None:
    assert cookies.read_cookies("a=1; chimeproxy_console=x.y") == {
        "a": "1",
        "chimeproxy_console": "x.y",
    }
    assert cookies.read_cookies(None) == {}
    assert cookies.read_cookies('bad="') == {}


def test_the_sign_in_throttle_holds_an_address_back_after_repeated_failures() -> None:
    now = [0.0]
    throttle = cookies.SignInThrottle(limit=3, window=60, clock=lambda: now[0])
    for _ in range(3):
        assert not throttle.blocked("10.0.0.1")
        throttle.failed("10.0.0.1")
    assert throttle.blocked("10.0.0.1")
    assert not throttle.blocked("10.0.0.2")
    now[0] = 61
    assert not throttle.blocked("10.0.0.1")
    throttle.failed("10.0.0.1")
    throttle.succeeded("10.0.0.1")
    assert not throttle.blocked("10.0.0.1")


def test_chart_buckets_end_with_the_current_hour() -> None:
    now = 10 * charts.HOUR_MS + 1234
    start = charts.window_start(now, hours=24)
    assert charts.bucket_of(start, now) == 23
    assert charts.bucket_of(start, start) == 0
    chart = charts.hourly({23: 4, 0: 2}, {23: 1}, start)
    assert len(chart.bars) == 24
    assert (chart.created, chart.refused, chart.peak) == (6, 1, 4)
    last = chart.bars[-1]
    assert last.created_height == charts.HEIGHT
    assert last.refused_height == charts.HEIGHT / 4
    assert last.label == "10:00 UTC: 4 created, 1 refused"
    assert chart.bars[1].created_height == 0


def test_an_empty_chart_has_flat_bars() -> None:
    chart = charts.hourly({}, {}, 0)
    assert chart.peak == 1 and all(bar.created_height == 0 for bar in chart.bars)


def test_the_live_view_asks_about_a_page_of_well_formed_interaction_ids_at_most() -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    assert pages.interaction_ids(None) == pages.interaction_ids("") == []
    # Malformed ones (an injection attempt, an upper-case id, a cut one) are dropped, not
    # looked up; repeats are asked about once.
    asked = f"{first},' OR 1=1 --,{first.upper()},{second[:-1]},{second},{first}"
    assert pages.interaction_ids(asked) == [first, second]
    many = ",".join(str(uuid.uuid4()) for _ in range(pages.PAGE * 3))
    assert len(pages.interaction_ids(many)) == pages.PAGE
