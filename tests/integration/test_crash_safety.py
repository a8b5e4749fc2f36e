"""Crash safety: a server killed with SIGKILL in the middle of a create/update/delete load loses
nothing it acknowledged and leaves nothing half-written.

Runs on the backend of the test pass (SQLite, or PostgreSQL with CHIMEPROXY_TEST_DATABASE).
Each round starts the load, kills the server once enough writes were acknowledged (so that
others are in flight), restarts it on the same database, and checks every acknowledged write
through the API and the tables directly.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from chimeproxy.store.database import Database
from chimeproxy.store.schema import active_routes, proxy_sessions
from chimeproxy.testing import ChimeProxyServer, drop_test_database
from tests.conftest import database_url, make_client
from tests.integration.helpers import (
    all_sessions,
    assert_refused,
    person,
    proxy_connector,
    refused,
    store_problems,
)

ROUNDS = 5
THREADS = 6
POOL = 12
CAPABILITY_SETS = (["Voice"], ["SMS"], ["SMS", "Voice"])


@dataclass
class Expected:
    """What the client was told about one session: its state after the last acknowledged write,
    and the state an unacknowledged (in flight at the kill) write would have left."""

    capabilities: list[str]
    expiry: int
    deleted: bool = False
    maybe: dict[str, Any] | None = None


@dataclass
class Ledger:
    sessions: dict[str, Expected] = field(default_factory=dict)
    acknowledged: int = 0
    unacknowledged_creates: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def load(
    url: str,
    connector_id: str,
    hubs: list[str],
    ledger: Ledger,
    rng: random.Random,
    stop: threading.Event,
) -> None:
    """Creates, updates and deletes its own sessions until the server goes away. Hub
    participants are shared by every thread, so the routing invariant is exercised too."""
    base = f"/voice-connectors/{connector_id}/proxy-sessions"
    mine: list[str] = []
    with httpx.Client(base_url=url, timeout=30) as http:
        while not stop.is_set():
            choice = rng.random()
            try:
                if choice < 0.5 or not mine:
                    capabilities = rng.choice(CAPABILITY_SETS)
                    expiry = rng.randint(100, 700)
                    body = {
                        "ParticipantPhoneNumbers": [rng.choice(hubs), person()],
                        "Capabilities": capabilities,
                        "ExpiryMinutes": expiry,
                    }
                    with ledger.lock:
                        ledger.unacknowledged_creates += 1
                    answer = http.post(base, json=body)
                    if answer.status_code == 201:
                        session_id = answer.json()["ProxySession"]["ProxySessionId"]
                        with ledger.lock:
                            ledger.unacknowledged_creates -= 1
                            ledger.sessions[session_id] = Expected(sorted(capabilities), expiry)
                            ledger.acknowledged += 1
                        mine.append(session_id)
                    else:
                        # Pool exhausted for this hub: refused, nothing written.
                        assert_refused(answer, 400, "BadRequestException", "exhausted")
                        with ledger.lock:
                            ledger.unacknowledged_creates -= 1
                elif choice < 0.8:
                    session_id = rng.choice(mine)
                    expected = ledger.sessions[session_id]
                    capabilities = rng.choice(CAPABILITY_SETS)
                    expiry = rng.randint(100, 700)
                    expected.maybe = {"capabilities": sorted(capabilities), "expiry": expiry}
                    answer = http.post(
                        f"{base}/{session_id}",
                        json={"Capabilities": capabilities, "ExpiryMinutes": expiry},
                    )
                    assert answer.status_code == 201, answer.text
                    expected.capabilities, expected.expiry = sorted(capabilities), expiry
                    expected.maybe = None
                    with ledger.lock:
                        ledger.acknowledged += 1
                else:
                    session_id = mine.pop(rng.randrange(len(mine)))
                    expected = ledger.sessions[session_id]
                    expected.maybe = {"deleted": True}
                    answer = http.delete(f"{base}/{session_id}")
                    assert answer.status_code == 204, answer.text
                    expected.deleted, expected.maybe = True, None
                    with ledger.lock:
                        ledger.acknowledged += 1
            except httpx.TransportError:
                return  # the server was killed: this write's outcome is unknown


def check_acknowledged(
    server: ChimeProxyServer, connector_id: str, ledger: Ledger
) -> tuple[int, int]:
    """Every acknowledged write is there; anything else is an in-flight write or nothing.
    Answers (sessions checked, writes that were in flight)."""
    client = make_client(server.url)
    listed = {s["ProxySessionId"]: s for s in all_sessions(client, connector_id)}
    in_flight = 0
    for session_id, expected in ledger.sessions.items():
        session = listed.pop(session_id, None)
        allowed = [
            {"deleted": expected.deleted, "capabilities": expected.capabilities,
             "expiry": expected.expiry},
        ]  # fmt: skip
        if expected.maybe is not None:
            in_flight += 1
            allowed.append({**allowed[0], "deleted": False, **expected.maybe})
        if session is None:
            assert any(state["deleted"] for state in allowed), f"acknowledged {session_id} lost"
            with refused(404, "NotFoundException", session_id):
                client.get_proxy_session(VoiceConnectorId=connector_id, ProxySessionId=session_id)
            expected.deleted, expected.maybe = True, None
            continue
        state = {
            "deleted": False,
            "capabilities": sorted(session["Capabilities"]),
            "expiry": session["ExpiryMinutes"],
        }
        assert state in allowed, f"{session_id}: {state} is none of {allowed}"
        assert session["Status"] == "Open"
        got = client.get_proxy_session(VoiceConnectorId=connector_id, ProxySessionId=session_id)
        assert got["ProxySession"] == session
        # From now on the session is what the server shows.
        expected.capabilities, expected.expiry, expected.maybe = (
            state["capabilities"],
            state["expiry"],
            None,
        )
        expected.deleted = False
    # Whatever else is listed can only be a create that was in flight at the kill.
    assert len(listed) <= ledger.unacknowledged_creates, f"unexplained sessions {list(listed)}"
    for session_id, session in listed.items():
        ledger.sessions[session_id] = Expected(
            sorted(session["Capabilities"]), session["ExpiryMinutes"]
        )
        in_flight += 1
    ledger.unacknowledged_creates = 0
    return len(ledger.sessions), in_flight


def test_sigkill_during_writes_loses_no_acknowledged_write(tmp_path: Path) -> None:
    database = database_url(tmp_path)
    server = ChimeProxyServer(database=database, log_path=tmp_path / "server.log").start()
    rng = random.Random(20240611)
    ledger = Ledger()
    try:
        connector_id, _ = proxy_connector(make_client(server.url), pool=POOL, expiry=600)
        failures: list[BaseException] = []

        def run(hubs: list[str], seed: float, stop: threading.Event) -> None:
            try:
                load(server.url, connector_id, hubs, ledger, random.Random(seed), stop)
            except BaseException as exc:
                failures.append(exc)
                raise

        for round_number in range(ROUNDS):
            # Few hubs for many sessions: a hub holds at most POOL sessions at once, so the load
            # also meets refusals, and threads compete for the same proxy numbers.
            hubs = [person() for _ in range(3)]
            stop = threading.Event()
            threads = [
                threading.Thread(target=run, args=(hubs, rng.random(), stop))
                for _ in range(THREADS)
            ]
            target = ledger.acknowledged + rng.randint(30, 60)
            for thread in threads:
                thread.start()
            while ledger.acknowledged < target and any(t.is_alive() for t in threads):
                time.sleep(0.005)
            assert all(t.is_alive() for t in threads), "a load thread failed before the kill"
            server.stop(signal.SIGKILL)
            stop.set()
            for thread in threads:
                thread.join(30)
                assert not thread.is_alive()
            assert failures == []
            server.start()
            checked, _in_flight = check_acknowledged(server, connector_id, ledger)
            assert checked > 0
            problems = store_problems(database, time.time_ns() // 1_000_000)
            assert problems == [], f"round {round_number}: {problems}"
    finally:
        server.stop()
        drop_test_database(database)


def test_the_checker_sees_a_half_written_session(tmp_path: Path) -> None:
    """`store_problems` is what the crash test trusts: it must see a session without routes."""
    database = database_url(tmp_path)
    server = ChimeProxyServer(database=database, log_path=tmp_path / "server.log").start()
    try:
        client = make_client(server.url)
        connector_id, _ = proxy_connector(client, pool=1)
        session = client.create_proxy_session(
            VoiceConnectorId=connector_id,
            ParticipantPhoneNumbers=[person(), person()],
            Capabilities=["Voice"],
        )["ProxySession"]
        now = time.time_ns() // 1_000_000
        assert store_problems(database, now) == []
        db = Database(database)
        try:
            with db.write() as connection:
                pk = connection.scalar(
                    select(proxy_sessions.c.pk).where(
                        proxy_sessions.c.id == session["ProxySessionId"]
                    )
                )
                connection.execute(active_routes.delete().where(active_routes.c.session_pk == pk))
        finally:
            db.dispose()
        assert store_problems(database, now) == [
            f"active session {session['ProxySessionId']} has routes for []"
        ]
    finally:
        server.stop()
        drop_test_database(database)


@pytest.mark.parametrize(("flag", "pragma"), [(None, 1), ("NORMAL", 1), ("full", 2)])
def test_sqlite_synchronous_setting(flag: str | None, pragma: int, tmp_path: Path) -> None:
    """`--sqlite-synchronous` (docs/operations.md): NORMAL by default, FULL on request."""
    from chimeproxy.cli import build_parser
    from chimeproxy.settings import Settings, from_arguments

    args = ["serve"] + (["--sqlite-synchronous", flag] if flag else [])
    settings = from_arguments(Settings, build_parser().parse_args(args), environ={})
    db = Database(f"sqlite:///{tmp_path / 'db'}", sqlite_synchronous=settings.sqlite_synchronous)
    try:
        with db.read() as connection:
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == pragma
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        db.dispose()
