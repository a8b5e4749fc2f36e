"""store/expiry.py's SQL conditions say what domain/lifecycle.py says, on generated sessions
(SQLite evaluates the SQL; the domain functions are the oracle)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, create_engine, delete, select

from chimeproxy.domain import lifecycle
from chimeproxy.domain.lifecycle import ACTIVE, SessionStatus
from chimeproxy.store import expiry
from chimeproxy.store.schema import proxy_sessions

ps = proxy_sessions.c
TIMES = st.integers(min_value=0, max_value=10_000)


@st.composite
def sessions(draw: Any) -> dict[str, Any]:
    status = draw(st.sampled_from(list(SessionStatus)))
    expires = draw(TIMES)
    # A Closed session always has its end recorded (expiry, an update, or the sweeper).
    ended = draw(TIMES) if status is SessionStatus.CLOSED else None
    return {"status": status, "expires_at": expires, "ended_at": ended}


@pytest.fixture(scope="module")
def connection() -> Iterator[Connection]:
    engine = create_engine("sqlite://")
    proxy_sessions.create(engine)  # no foreign keys are enforced without the pragma
    with engine.connect() as connection:
        yield connection


def stored(connection: Connection, rows: list[dict[str, Any]]) -> None:
    connection.execute(delete(proxy_sessions))
    connection.execute(
        proxy_sessions.insert(),
        [
            {
                "voice_connector_pk": 1,
                "id": f"s{index}",
                "capabilities": "Voice",
                "expiry_minutes": 1,
                "expiry_minutes_given": False,
                "participant_1": "+1",
                "participant_2": "+2",
                "proxy_number": "+3",
                "created_at": 0,
                "updated_at": 0,
                **row,
            }
            for index, row in enumerate(rows)
        ],
    )


def matching(connection: Connection, condition: Any) -> set[str]:
    return set(connection.scalars(select(ps.id).where(condition)))


def expected(rows: list[dict[str, Any]], holds: Any) -> set[str]:
    return {f"s{index}" for index, row in enumerate(rows) if holds(row)}


def effective(row: dict[str, Any], now: int) -> lifecycle.Effective:
    return lifecycle.effective(row["status"], row["expires_at"], row["ended_at"], now)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(rows=st.lists(sessions(), min_size=1, max_size=12), now=TIMES, retention=TIMES)
def test_every_condition_agrees_with_the_domain(
    connection: Connection, rows: list[dict[str, Any]], now: int, retention: int
) -> None:
    stored(connection, rows)

    def visible(row: dict[str, Any]) -> bool:
        return lifecycle.visible(row["status"], row["expires_at"], row["ended_at"], now, retention)

    assert matching(connection, expiry.visible(now, retention)) == expected(rows, visible)
    for status in SessionStatus:
        assert matching(connection, expiry.reads_as(status, now)) == expected(
            rows, lambda row, status=status: effective(row, now)[0] == status
        )
    assert matching(connection, expiry.active(now)) == expected(
        rows, lambda row: effective(row, now)[0] in ACTIVE
    )
    assert matching(connection, expiry.due_to_close(now)) == expected(
        rows,
        lambda row: row["status"] in ACTIVE and effective(row, now)[0] == SessionStatus.CLOSED,
    )
    assert matching(connection, expiry.closed_and_visible(now, retention)) == expected(
        rows, lambda row: effective(row, now)[0] == SessionStatus.CLOSED and visible(row)
    )
    assert matching(connection, expiry.purgeable(now, retention)) == expected(
        rows, lambda row: row["status"] == SessionStatus.CLOSED and not visible(row)
    )
