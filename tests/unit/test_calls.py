"""When a call in progress must end (chimeproxy.domain.calls)."""

from __future__ import annotations

from chimeproxy.domain.calls import CallFacts, EndReason, longest_duration, must_end
from chimeproxy.domain.lifecycle import SessionStatus

NOW = 1_704_067_200_000
MINUTE = 60_000


def in_session(
    status: str = "InProgress", expires: int = NOW + MINUTE, **changes: object
) -> CallFacts:
    values: dict[str, object] = {
        "started_at": NOW - MINUTE,
        "ended_at": None,
        "in_session": True,
        "session_status": status,
        "session_expires_at": expires,
        "session_ended_at": None,
    } | changes
    return CallFacts(**values)  # type: ignore[arg-type]


def test_a_call_in_an_active_session_goes_on() -> None:
    assert must_end(in_session(), NOW, None) is None


def test_a_call_ends_when_its_session_expires_whether_or_not_anyone_recorded_it() -> None:
    assert must_end(in_session(expires=NOW), NOW, None) is EndReason.SESSION_CLOSED
    assert must_end(in_session(expires=NOW + 1), NOW, None) is None


def test_a_call_ends_when_an_update_closed_its_session() -> None:
    closed = in_session(SessionStatus.CLOSED, expires=NOW + MINUTE, session_ended_at=NOW - 1)
    assert must_end(closed, NOW, None) is EndReason.SESSION_CLOSED


def test_a_call_the_server_does_not_know_ends() -> None:
    assert must_end(None, NOW, None) is EndReason.GONE
    assert must_end(in_session(session_status=None, session_expires_at=None), NOW, None) is (
        EndReason.GONE
    )


def test_a_call_already_recorded_as_ended_ends() -> None:
    assert must_end(in_session(ended_at=NOW - 5), NOW, None) is EndReason.ENDED


def test_the_maximum_call_length_ends_any_call() -> None:
    fallback = CallFacts(started_at=NOW - 10 * MINUTE, ended_at=None, in_session=False)
    assert must_end(fallback, NOW, None) is None
    assert must_end(fallback, NOW, 10 * MINUTE) is EndReason.MAX_DURATION
    assert must_end(fallback, NOW, 10 * MINUTE + 1) is None
    assert must_end(in_session(started_at=NOW - 10 * MINUTE), NOW, 10 * MINUTE) is (
        EndReason.MAX_DURATION
    )


def test_the_longest_duration_is_the_nearer_limit_in_whole_seconds() -> None:
    assert longest_duration(NOW, None, None) is None
    assert longest_duration(NOW, NOW + 90_500, None) == 91  # rounded up: never cut early
    assert longest_duration(NOW, NOW + 90_500, MINUTE) == 60
    assert longest_duration(NOW, None, MINUTE) == 60
    assert longest_duration(NOW, NOW - 5, None) == 1  # at least a second to say goodbye
