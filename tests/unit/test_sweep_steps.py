"""The sweeper in bounded steps (store/sweeper.py, chimeproxy/sweeper.py), on a migrated SQLite
database: a step touches at most its limit of rows of each kind and says whether there may be
more; steps until done leave what one unbounded pass would; and a writer waiting for the write
lock gets it between two steps instead of after the whole pass."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, func, select

from chimeproxy import sweeper
from chimeproxy.clock import Clock
from chimeproxy.domain.lifecycle import SessionStatus
from chimeproxy.domain.phone_numbers import DELETION_QUEUE_MS, PhoneNumberStatus
from chimeproxy.services import Services
from chimeproxy.settings import Settings
from chimeproxy.store import sweeper as store
from chimeproxy.store.database import Database
from chimeproxy.store.schema import interactions, phone_numbers, proxy_sessions, voice_connectors

DAY_MS = 86_400_000
ps = proxy_sessions.c


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'sweep.db'}")
    database.upgrade()
    return database


def seeded(
    db: Database,
    now: int,
    *,
    expired: int = 0,
    purgeable: int = 0,
    kept: int = 0,
    old_contacts: int = 0,
    released: int = 0,
) -> None:
    """A connector and: `expired` Open sessions past their expiry, `purgeable` Closed ones past
    the 30-day retention (each with an interaction of its own), `kept` live and recently
    closed ones, `old_contacts` out-of-session contacts past retention, `released` numbers past
    their deletion queue."""
    retention = 30 * DAY_MS
    sessions: list[dict[str, Any]] = []

    def session(status: str, expires_at: int, ended_at: int | None) -> None:
        index = len(sessions)
        sessions.append(
            {
                "voice_connector_pk": 1,
                "id": f"session-{index:05d}",
                "status": status,
                "capabilities": "Voice",
                "expiry_minutes": 60,
                "expiry_minutes_given": True,
                "participant_1": f"+1206555{index:04d}",
                "participant_2": f"+1415555{index:04d}",
                "proxy_number": "+19135550100",
                "created_at": expires_at - 3_600_000,
                "updated_at": expires_at - 3_600_000,
                "expires_at": expires_at,
                "ended_at": ended_at,
            }
        )

    for _ in range(expired):
        session(SessionStatus.OPEN, now - 1_000, None)
    for _ in range(purgeable):
        session(SessionStatus.CLOSED, now - retention - DAY_MS, now - retention - DAY_MS)
    for _ in range(kept):
        session(SessionStatus.OPEN, now + DAY_MS, None)
        session(SessionStatus.CLOSED, now - DAY_MS, now - DAY_MS)
    contact = {
        "voice_connector_pk": 1,
        "kind": "voice",
        "action": "reject",
        "caller": "+12065550199",
        "proxy_number": "+19135550100",
        "started_at": now - retention - DAY_MS,
    }
    with db.write() as connection:
        connection.execute(
            voice_connectors.insert(),
            {
                "account": "111122223333",
                "region": "us-east-1",
                "id": "abcdef1ghij2klmno3pqr4",
                "name": "rides",
                "aws_region": "us-east-1",
                "require_encryption": False,
                "created_at": 0,
                "updated_at": 0,
            },
        )
        if sessions:
            connection.execute(proxy_sessions.insert(), sessions)
        purged_pks = connection.scalars(
            select(ps.pk).where(ps.status == SessionStatus.CLOSED, ps.ended_at < now - retention)
        ).all()
        rows = [{**contact, "id": f"in-{pk}", "session_pk": pk} for pk in purged_pks]
        rows += [{**contact, "id": f"out-{n}", "session_pk": None} for n in range(old_contacts)]
        if rows:
            connection.execute(interactions.insert(), rows)
        for n in range(released):
            connection.execute(
                phone_numbers.insert(),
                {
                    "account": "111122223333",
                    "region": "us-east-1",
                    "e164": f"+1913555{n:04d}",
                    "country": "US",
                    "number_type": "Local",
                    "product_type": "VoiceConnector",
                    "status": PhoneNumberStatus.DELETE_IN_PROGRESS,
                    "capabilities": "InboundCall",
                    "created_at": 0,
                    "updated_at": 0,
                    "deletion_at": now - DELETION_QUEUE_MS - 1,
                },
            )


def counts(connection: Connection, now: int) -> dict[str, int]:
    def count(table: Any, *where: Any) -> int:
        return int(connection.scalar(select(func.count()).select_from(table).where(*where)))

    return {
        "due": count(proxy_sessions, ps.status == SessionStatus.OPEN, ps.expires_at <= now),
        "sessions": count(proxy_sessions),
        "interactions": count(interactions),
        "numbers": count(phone_numbers),
    }


NOW = (time.time_ns() // 1_000_000 // DAY_MS + 400) * DAY_MS  # ahead: the clock only advances
RETENTION = 30 * DAY_MS


def test_a_step_touches_at_most_its_limit_of_each_kind_and_the_steps_finish_the_pass(
    db: Database,
) -> None:
    seeded(db, NOW, expired=7, purgeable=8, kept=5, old_contacts=5, released=4)
    steps: list[store.Swept] = []
    while not steps or steps[-1].more:
        with db.write() as connection:
            steps.append(store.sweep_step(connection, NOW, RETENTION, with_closing=True, limit=3))
    assert [(s.closed, s.purged, s.released) for s in steps] == [(3, 3, 3), (3, 3, 1), (1, 2, 0)]
    assert [s.more for s in steps] == [True, True, False]
    # The sessions read for the events are the ones closed, in key order.
    assert [len(s.closing) for s in steps] == [3, 3, 1]
    closing_ids = [row["id"] for s in steps for row in s.closing]
    assert closing_ids == [f"session-{n:05d}" for n in range(7)]
    with db.read() as connection:
        left = counts(connection, NOW)
        closed_now = connection.scalar(
            select(func.count()).where(
                ps.status == SessionStatus.CLOSED, ps.ended_at == NOW - 1_000
            )
        )
    # Nothing due is left; the purged sessions' own interactions went with them (the foreign
    # key's cascade), and so did the old out-of-session contacts; what is kept is kept.
    assert left == {"due": 0, "sessions": 7 + 10, "interactions": 0, "numbers": 0}
    assert closed_now == 7  # closed at their expiry


def test_an_exact_multiple_of_the_limit_takes_one_more_step_that_finds_nothing(
    db: Database,
) -> None:
    seeded(db, NOW, expired=3)
    with db.write() as connection:
        first = store.sweep_step(connection, NOW, RETENTION, with_closing=False, limit=3)
    with db.write() as connection:
        second = store.sweep_step(connection, NOW, RETENTION, with_closing=False, limit=3)
    assert (first.closed, first.more, first.closing) == (3, True, [])
    assert (second.closed, second.purged, second.more) == (0, 0, False)


def services_for(db: Database, now: int) -> Services:
    clock = Clock()
    clock.advance((now - clock.now_ms()) / 1000)
    return Services(settings=Settings(), db=db, clock=clock)


def test_a_pass_runs_its_steps_in_transactions_of_their_own(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeded(db, NOW, expired=10, purgeable=4)
    monkeypatch.setattr(store, "BATCH", 3)
    transactions: list[int] = []
    write_retrying = db.write_retrying

    def counted(work: Any, **options: Any) -> Any:
        transactions.append(1)
        return write_retrying(work, **options)

    monkeypatch.setattr(db, "write_retrying", counted)
    swept = sweeper.sweep(services_for(db, NOW))
    assert (swept.closed, swept.purged, swept.more) == (10, 4, False)
    assert len(transactions) == 4  # 3 + 3 + 3 + 1 closed


def test_a_writer_waiting_for_the_lock_gets_it_between_two_steps(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The point of the steps: on SQLite the requests' writes wait on the event loop for the
    write lock, and must wait for one step, not the whole pass."""
    seeded(db, NOW, expired=12, kept=1)
    monkeypatch.setattr(store, "BATCH", 3)
    events: list[str] = []
    first_step_holds_the_lock = threading.Event()
    step = store.sweep_step

    def slow_step(connection: Connection, *args: Any, **options: Any) -> store.Swept:
        events.append("step")
        done = step(connection, *args, **options)  # the lock is taken from here to the commit
        first_step_holds_the_lock.set()
        time.sleep(0.2)
        return done

    monkeypatch.setattr(store, "sweep_step", slow_step)
    sweeping = threading.Thread(target=sweeper.sweep, args=(services_for(db, NOW),))
    sweeping.start()
    assert first_step_holds_the_lock.wait(10)
    with db.write() as connection:  # waits for the first step's commit
        connection.execute(proxy_sessions.update().where(ps.id == "session-00012").values(name="x"))
    events.append("write")
    sweeping.join(10)
    assert events.count("step") == 5  # 3 + 3 + 3 + 3 + the one that finds nothing
    # Between the first step and the third: the pause after a step is as long as the step,
    # and SQLite polls for the lock at least every 100 ms.
    assert events.index("write") in (1, 2), events


def test_only_the_sessions_a_step_closed_are_announced(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At READ COMMITTED another writer may close or extend a session between the step's read
    and its UPDATE: the read's rows are then more than the UPDATE closed, and only those it
    closed may be announced (here the read is made to include a session that is not due)."""
    seeded(db, NOW, expired=2, kept=1)
    read = store.sessions_due_to_close

    def read_with_a_live_one(connection: Connection, now: int, limit: int) -> list[Any]:
        live = connection.execute(
            select(proxy_sessions, voice_connectors.c.id.label("connector_id"))
            .join(voice_connectors)
            .where(ps.expires_at > now)
        ).mappings()
        return [*read(connection, now, limit), *live]

    monkeypatch.setattr(store, "sessions_due_to_close", read_with_a_live_one)
    with db.write() as connection:
        step = store.sweep_step(connection, NOW, RETENTION, with_closing=True, limit=10)
    assert step.closed == 2
    assert [row["id"] for row in step.closing] == ["session-00000", "session-00001"]
