"""Unit tests for the data plane's routing decisions (chimeproxy.domain.routing)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chimeproxy.domain.routing import (
    A_TO_B,
    B_TO_A,
    ENCRYPTION_REASON,
    ENCRYPTION_REQUIRED,
    KIND_NOT_ALLOWED,
    KINDS,
    NOT_PARTICIPANT,
    NOT_PROXY_NUMBER,
    SESSION_CLOSED,
    SMS,
    VOICE,
    Action,
    Decision,
    Media,
    OutOfSession,
    ProxyNumber,
    RouteFacts,
    SessionFacts,
    decide,
)

A = "+12065550100"
B = "+14155550101"
P = "+19135550150"
F = "+18005550199"
STRANGER = "+13125550177"
NOW = 1_704_067_200_000
LATER = NOW + 60 * 60_000

PROXY = ProxyNumber(connector_pk=7, connector_id="abcdef1ghij2klmno3pqr4", fallback_number=None)
PROXY_F = ProxyNumber(connector_pk=7, connector_id="abcdef1ghij2klmno3pqr4", fallback_number=F)


def session(
    *,
    capabilities: tuple[str, ...] = ("Voice", "SMS"),
    status: str = "Open",
    expires_at: int = LATER,
) -> SessionFacts:
    return SessionFacts(
        pk=1,
        id="3d092e55-0122-4dfb-9af2-d4bdd320e12c",
        participant_1=A,
        participant_2=B,
        capabilities=frozenset(capabilities),
        status=status,
        expires_at=expires_at,
    )


def facts(proxy: ProxyNumber | None = PROXY, **kwargs: object) -> RouteFacts:
    return RouteFacts(proxy=proxy, **kwargs)  # type: ignore[arg-type]


# In session.


@pytest.mark.parametrize("kind", KINDS)
def test_a_reaches_b_shown_as_the_proxy_number(kind: str) -> None:
    decision = decide(A, P, kind, facts(session=session()), NOW)
    assert decision.action is Action.CONNECT
    assert (decision.target, decision.caller_id, decision.direction) == (B, P, A_TO_B)
    assert decision.session == session()
    assert decision.status is None and decision.reason is None
    assert decision.out_of_session is None


@pytest.mark.parametrize("kind", KINDS)
def test_b_reaches_a_shown_as_the_proxy_number(kind: str) -> None:
    decision = decide(B, P, kind, facts(session=session()), NOW)
    assert decision.action is Action.CONNECT
    assert (decision.target, decision.caller_id, decision.direction) == (A, P, B_TO_A)


def test_first_contact_starts_an_open_session_only() -> None:
    assert decide(A, P, VOICE, facts(session=session()), NOW).starts_session
    in_progress = session(status="InProgress")
    assert not decide(A, P, VOICE, facts(session=in_progress), NOW).starts_session


def test_the_fallback_number_does_not_matter_in_session() -> None:
    decision = decide(A, P, VOICE, facts(PROXY_F, session=session()), NOW)
    assert decision.action is Action.CONNECT and decision.target == B


# Out of session: refusals.


def test_a_number_that_is_no_proxy_number_is_404() -> None:
    decision = decide(A, "+19135550999", VOICE, facts(proxy=None), NOW)
    assert decision.action is Action.REJECT
    assert decision.status == NOT_PROXY_NUMBER == 404
    assert decision.out_of_session is OutOfSession.NOT_A_PROXY_NUMBER
    assert decision.target is None and decision.caller_id is None


def test_no_proxy_number_is_404_even_with_a_fallback_elsewhere() -> None:
    # There is no configuration to take a fallback number from.
    assert decide(STRANGER, P, SMS, facts(proxy=None), NOW).status == 404


def test_a_stranger_is_403() -> None:
    decision = decide(STRANGER, P, VOICE, facts(), NOW)
    assert (decision.action, decision.status) == (Action.REJECT, NOT_PARTICIPANT)
    assert NOT_PARTICIPANT == 403
    assert decision.out_of_session is OutOfSession.NOT_A_PARTICIPANT


def test_an_unknown_caller_is_a_stranger() -> None:
    assert decide(None, P, VOICE, facts(), NOW).status == 403


def test_a_caller_whose_session_closed_is_480() -> None:
    decision = decide(A, P, VOICE, facts(had_closed_session=True), NOW)
    assert (decision.action, decision.status) == (Action.REJECT, SESSION_CLOSED)
    assert SESSION_CLOSED == 480
    assert decision.out_of_session is OutOfSession.SESSION_CLOSED


@pytest.mark.parametrize("late", [0, 1, 86_400_000])
def test_an_expired_session_is_never_routed(late: int) -> None:
    """A route that outlived its session (no sweep yet) reads as closed, from the expiry on."""
    expired = session(expires_at=NOW - late)
    decision = decide(A, P, VOICE, facts(session=expired), NOW)
    assert (decision.action, decision.status) == (Action.REJECT, 480)
    assert not decision.starts_session


def test_a_closed_session_is_never_routed() -> None:
    closed = session(status="Closed")
    assert decide(B, P, SMS, facts(session=closed), NOW).status == 480


def test_the_last_millisecond_still_routes() -> None:
    assert decide(A, P, VOICE, facts(session=session(expires_at=NOW + 1)), NOW).action is (
        Action.CONNECT
    )


@pytest.mark.parametrize(
    ("capabilities", "kind", "missing"),
    [(("Voice",), SMS, "SMS"), (("SMS",), VOICE, "Voice")],
)
def test_the_session_capabilities_decide_the_kind(
    capabilities: tuple[str, ...], kind: str, missing: str
) -> None:
    decision = decide(A, P, kind, facts(session=session(capabilities=capabilities)), NOW)
    assert (decision.action, decision.status) == (Action.REJECT, KIND_NOT_ALLOWED)
    assert KIND_NOT_ALLOWED == 488
    assert decision.out_of_session is OutOfSession.KIND_NOT_ALLOWED
    assert missing in (decision.reason or "")
    assert not decision.starts_session


# Out of session: the fallback number.


@pytest.mark.parametrize(
    ("caller", "route_facts"),
    [
        (STRANGER, facts(PROXY_F)),
        (A, facts(PROXY_F, had_closed_session=True)),
        (A, facts(PROXY_F, session=session(expires_at=NOW))),
        (A, facts(PROXY_F, session=session(capabilities=("Voice",)))),
    ],
    ids=["stranger", "closed", "expired", "kind"],
)
def test_out_of_session_goes_to_the_fallback_shown_as_the_proxy_number(
    caller: str, route_facts: RouteFacts
) -> None:
    decision = decide(caller, P, SMS, route_facts, NOW)
    assert decision.action is Action.FALLBACK
    assert (decision.target, decision.caller_id) == (F, P)
    assert decision.session is None and decision.direction is None
    assert decision.out_of_session is not None
    assert not decision.starts_session


def test_the_fallback_number_is_not_sent_back_to_itself() -> None:
    decision = decide(F, P, VOICE, facts(PROXY_F), NOW)
    assert (decision.action, decision.status) == (Action.REJECT, 403)


def test_a_fallback_that_is_the_proxy_number_itself_would_loop() -> None:
    looping = ProxyNumber(7, "abcdef1ghij2klmno3pqr4", fallback_number=P)
    assert decide(STRANGER, P, VOICE, facts(looping), NOW).action is Action.REJECT


# Reasons and inputs.


@pytest.mark.parametrize(
    "route_facts",
    [
        facts(proxy=None),
        facts(),
        facts(had_closed_session=True),
        facts(session=session(capabilities=("Voice",))),
    ],
)
def test_a_refusal_never_names_a_number(route_facts: RouteFacts) -> None:
    decision = decide(A, P, SMS, route_facts, NOW)
    assert decision.reason
    for number in (A, B, P, F, A[1:], B[1:], P[1:]):
        assert number not in decision.reason


def test_an_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="kind"):
        decide(A, P, "fax", facts(), NOW)


numbers = st.sampled_from([A, B, STRANGER, F, None])


@given(
    caller=numbers,
    kind=st.sampled_from(KINDS),
    proxy=st.sampled_from([None, PROXY, PROXY_F]),
    capabilities=st.sets(st.sampled_from(["Voice", "SMS"]), min_size=1),
    status=st.sampled_from(["Open", "InProgress", "Closed"]),
    expires_in=st.integers(-10, 10),
    has_session=st.booleans(),
    had_closed=st.booleans(),
)
def test_every_decision_is_well_formed(
    caller: str | None,
    kind: str,
    proxy: ProxyNumber | None,
    capabilities: set[str],
    status: str,
    expires_in: int,
    has_session: bool,
    had_closed: bool,
) -> None:
    """Whatever the facts: a connect goes to the caller's partner shown as P, and only from a
    live session that allows the kind; anything else falls back (shown as P) or is refused with
    a status; the caller's own number is never the target."""
    current = None
    if has_session and caller in (A, B):
        current = session(
            capabilities=tuple(capabilities), status=status, expires_at=NOW + expires_in
        )
    decision: Decision = decide(
        caller, P, kind, RouteFacts(proxy, current, had_closed and current is None), NOW
    )
    assert decision.target != caller or decision.target is None
    if decision.action is Action.CONNECT:
        assert current is not None and status != "Closed" and expires_in > 0
        assert {"voice": "Voice", "sms": "SMS"}[kind] in capabilities
        assert {decision.target, caller} == {A, B}
        assert decision.caller_id == P
        assert decision.starts_session == (status == "Open")
    elif decision.action is Action.FALLBACK:
        assert proxy is PROXY_F and decision.target == F and decision.caller_id == P
        assert decision.status is None
    else:
        assert decision.status in (403, 404, 480, 488)
        assert decision.target is None and decision.caller_id is None
        assert (decision.status == 404) == (proxy is None)
        assert not decision.starts_session


# Encryption on the voice connector.

ENCRYPTED = ProxyNumber(7, "abcdef1ghij2klmno3pqr4", fallback_number=None, require_encryption=True)
ENCRYPTED_F = ProxyNumber(7, "abcdef1ghij2klmno3pqr4", fallback_number=F, require_encryption=True)


@pytest.mark.parametrize("media", [Media.RTP, Media.NONE, None])
def test_an_encrypted_connector_refuses_a_call_without_srtp_in_its_session(
    media: Media | None,
) -> None:
    decision = decide(A, P, VOICE, facts(ENCRYPTED, session=session()), NOW, media)
    assert decision.action is Action.REJECT
    assert (decision.status, decision.reason) == (ENCRYPTION_REQUIRED, ENCRYPTION_REASON)
    # Refused in its session: listed with it, but it does not start the session.
    assert decision.session == session() and decision.out_of_session is None
    assert decision.target is None and not decision.starts_session


def test_an_encrypted_connector_connects_srtp() -> None:
    decision = decide(A, P, VOICE, facts(ENCRYPTED, session=session()), NOW, Media.SRTP)
    assert (decision.action, decision.target) == (Action.CONNECT, B)


def test_an_encrypted_connector_refuses_an_unencrypted_fallback_too() -> None:
    decision = decide(STRANGER, P, VOICE, facts(ENCRYPTED_F), NOW, Media.RTP)
    assert (decision.action, decision.status) == (Action.REJECT, ENCRYPTION_REQUIRED)
    assert decision.out_of_session is OutOfSession.NOT_A_PARTICIPANT
    srtp = decide(STRANGER, P, VOICE, facts(ENCRYPTED_F), NOW, Media.SRTP)
    assert (srtp.action, srtp.target) == (Action.FALLBACK, F)


def test_encryption_is_about_calls_not_messages_nor_plain_connectors() -> None:
    text = decide(A, P, SMS, facts(ENCRYPTED, session=session()), NOW, None)
    assert text.action is Action.CONNECT
    plain = decide(A, P, VOICE, facts(session=session()), NOW, Media.RTP)
    assert plain.action is Action.CONNECT
    # A refusal stays the refusal it was: the encryption rule only stops what would be relayed.
    stranger = decide(STRANGER, P, VOICE, facts(ENCRYPTED), NOW, Media.RTP)
    assert stranger.status == NOT_PARTICIPANT
