"""When a call in progress must end: a call lives no longer than its session, nor longer than
the configured maximum call length. Pure: the store supplies what it knows of each call."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from chimeproxy.domain import lifecycle
from chimeproxy.domain.lifecycle import SessionStatus


class EndReason(StrEnum):
    GONE = "gone"  # the server has no such call (its session was deleted or purged)
    SESSION_CLOSED = "session-closed"  # expired, or closed by an update
    MAX_DURATION = "max-duration"  # longer than the maximum call length
    ENDED = "ended"  # the server already recorded its end


@dataclass(frozen=True, slots=True)
class CallFacts:
    """A call the edge has in progress, as the store knows it."""

    started_at: int
    ended_at: int | None
    in_session: bool  # routed through a session (not to a fallback number)
    session_status: str | None = None
    session_expires_at: int | None = None
    session_ended_at: int | None = None


def must_end(call: CallFacts | None, now: int, max_call_ms: int | None) -> EndReason | None:
    """Why the call must end now, or None while it may go on."""
    if call is None:
        return EndReason.GONE
    if call.ended_at is not None:
        return EndReason.ENDED
    if call.in_session:
        if call.session_status is None or call.session_expires_at is None:
            return EndReason.GONE
        status, _ = lifecycle.effective(
            call.session_status, call.session_expires_at, call.session_ended_at, now
        )
        if status == SessionStatus.CLOSED:
            return EndReason.SESSION_CLOSED
    if max_call_ms is not None and now - call.started_at >= max_call_ms:
        return EndReason.MAX_DURATION
    return None


def longest_duration(
    now: int, session_expires_at: int | None, max_call_ms: int | None
) -> int | None:
    """Whole seconds a call routed now may last (its session's remaining time, and the
    maximum call length), for the edge to end it by itself; None when nothing limits it."""
    remaining = None if session_expires_at is None else session_expires_at - now
    limits = [ms for ms in (remaining, max_call_ms) if ms is not None]
    if not limits:
        return None
    return max(1, math.ceil(min(limits) / 1000))
