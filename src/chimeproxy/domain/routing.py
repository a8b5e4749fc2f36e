"""Routing decisions of the data plane: where a call or message from a caller to a dialled number
goes. Pure: the store supplies the facts (`RouteFacts`), this module only decides.

A contact from participant X to proxy number P connects to the other participant of X's active
session on P, shown as coming from P. Anything else is out of session: the proxy configuration's
FallBackPhoneNumber when it has one (still shown as coming from P), otherwise a refusal whose
SIP-style status says why.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from chimeproxy.domain.lifecycle import ACTIVE, SessionStatus

VOICE = "voice"
SMS = "sms"
KINDS = (VOICE, SMS)

# The session capability each kind of contact needs.
CAPABILITY_FOR = {VOICE: "Voice", SMS: "SMS"}

# SIP-style statuses of a refusal.
NOT_PARTICIPANT = 403  # Forbidden: the caller has no session on this proxy number
NOT_PROXY_NUMBER = 404  # Not Found: the dialled number is no proxy number
SESSION_CLOSED = 480  # Temporarily Unavailable: the caller's session here has ended
KIND_NOT_ALLOWED = 488  # Not Acceptable Here: the session does not carry this kind of contact
ENCRYPTION_REQUIRED = 488  # Not Acceptable Here: the call's media offer is not encrypted
ENCRYPTION_REASON = "Encrypted media (SRTP) is required on this number."

# Directions of a routed contact; A is the session's first participant, B the second.
A_TO_B = "a-to-b"
B_TO_A = "b-to-a"


class Action(StrEnum):
    CONNECT = "connect"
    FALLBACK = "fallback"
    REJECT = "reject"


class Media(StrEnum):
    """What a call's media offer carries, as the SIP edge saw it."""

    SRTP = "srtp"  # RTP/SAVP with an SDES key of an encrypting suite
    RTP = "rtp"  # unencrypted media
    NONE = "none"  # no offer yet (the answer will carry it): not known to be encrypted


class OutOfSession(StrEnum):
    """Why a contact did not go through a session (None for a connect)."""

    NOT_A_PROXY_NUMBER = "not-a-proxy-number"
    NOT_A_PARTICIPANT = "not-a-participant"
    SESSION_CLOSED = "session-closed"
    KIND_NOT_ALLOWED = "kind-not-allowed"


_STATUS = {
    OutOfSession.NOT_A_PROXY_NUMBER: NOT_PROXY_NUMBER,
    OutOfSession.NOT_A_PARTICIPANT: NOT_PARTICIPANT,
    OutOfSession.SESSION_CLOSED: SESSION_CLOSED,
    OutOfSession.KIND_NOT_ALLOWED: KIND_NOT_ALLOWED,
}


# Not frozen, these four: every call and text builds one of each, and a frozen dataclass sets
# each field through `object.__setattr__`, about 2 µs of a `/route` in all (docs/performance.md).
@dataclass(slots=True)
class ProxyNumber:
    """The dialled number is an Assigned number of a voice connector with a proxy configuration."""

    connector_pk: int
    connector_id: str
    fallback_number: str | None
    require_encryption: bool = False  # the voice connector's RequireEncryption


@dataclass(slots=True)
class SessionFacts:
    """The caller's session on the dialled number, as stored (expiry not yet applied)."""

    pk: int
    id: str
    participant_1: str
    participant_2: str
    capabilities: frozenset[str]
    status: str
    expires_at: int


@dataclass(slots=True)
class RouteFacts:
    """What the store knows about (caller, dialled number).

    `session` is the session that holds the caller's route on the number, if any (it may have
    expired without anyone noticing yet); `had_closed_session` says whether the caller had
    another, now closed, session on the number that is still within retention.
    """

    proxy: ProxyNumber | None
    session: SessionFacts | None = None
    had_closed_session: bool = False


@dataclass(slots=True)
class Decision:
    """The answer for one contact. `target` and `caller_id` are set for connect and fallback;
    `status` and `reason` for reject; `out_of_session` for fallback and for refusals out of
    session (a call refused in its session for unencrypted media keeps its `session`)."""

    action: Action
    target: str | None = None
    caller_id: str | None = None
    status: int | None = None
    reason: str | None = None
    session: SessionFacts | None = None
    direction: str | None = None
    out_of_session: OutOfSession | None = None
    starts_session: bool = False  # the first routed contact moves the session Open -> InProgress


def reason_for(why: OutOfSession, kind: str) -> str:
    """A refusal's reason; it never names a phone number (the caller learns nothing new)."""
    if why is OutOfSession.NOT_A_PROXY_NUMBER:
        return "The called number is not a proxy number."
    if why is OutOfSession.NOT_A_PARTICIPANT:
        return "The caller is not a participant of an active proxy session on this number."
    if why is OutOfSession.SESSION_CLOSED:
        return "The caller's proxy session on this number is closed."
    return f"The caller's proxy session on this number does not allow {CAPABILITY_FOR[kind]}."


def decide(
    caller: str | None,
    called: str,
    kind: str,
    facts: RouteFacts,
    now: int,
    media: Media | None = None,
) -> Decision:
    """Route a contact of `kind` from `caller` (None when unknown or not E.164) to `called`.
    A call (`media`: what its offer carries, None when unknown) on a voice connector that
    requires encryption goes nowhere unencrypted: it is refused with 488."""
    decision = _decide(caller, called, kind, facts, now)
    proxy = facts.proxy
    relayed = decision.action is not Action.REJECT
    encrypted = proxy is None or not proxy.require_encryption or media is Media.SRTP
    if relayed and kind == VOICE and not encrypted:
        return replace(
            decision,
            action=Action.REJECT,
            target=None,
            caller_id=None,
            status=ENCRYPTION_REQUIRED,
            reason=ENCRYPTION_REASON,
            direction=None,
            starts_session=False,
        )
    return decision


def _decide(caller: str | None, called: str, kind: str, facts: RouteFacts, now: int) -> Decision:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    if facts.proxy is None:
        return _refuse(OutOfSession.NOT_A_PROXY_NUMBER, kind)
    session = facts.session
    if caller is not None and session is not None and caller in _participants(session):
        if session.status in ACTIVE and now < session.expires_at:
            if CAPABILITY_FOR[kind] not in session.capabilities:
                return _out_of_session(OutOfSession.KIND_NOT_ALLOWED, caller, called, kind, facts)
            a_calls = caller == session.participant_1
            return Decision(
                Action.CONNECT,
                target=session.participant_2 if a_calls else session.participant_1,
                caller_id=called,
                session=session,
                direction=A_TO_B if a_calls else B_TO_A,
                starts_session=session.status == SessionStatus.OPEN,
            )
        # The route outlived the session (expired, sweeper not run yet): it is closed.
        return _out_of_session(OutOfSession.SESSION_CLOSED, caller, called, kind, facts)
    why = (
        OutOfSession.SESSION_CLOSED if facts.had_closed_session else OutOfSession.NOT_A_PARTICIPANT
    )
    return _out_of_session(why, caller, called, kind, facts)


def _participants(session: SessionFacts) -> tuple[str, str]:
    return session.participant_1, session.participant_2


def _out_of_session(
    why: OutOfSession, caller: str | None, called: str, kind: str, facts: RouteFacts
) -> Decision:
    assert facts.proxy is not None
    fallback = facts.proxy.fallback_number
    # Sending the fallback number's own contact back to it would loop (and ring the caller).
    if fallback and fallback != caller and fallback != called:
        return Decision(Action.FALLBACK, target=fallback, caller_id=called, out_of_session=why)
    return _refuse(why, kind)


def _refuse(why: OutOfSession, kind: str) -> Decision:
    return Decision(
        Action.REJECT, status=_STATUS[why], reason=reason_for(why, kind), out_of_session=why
    )
