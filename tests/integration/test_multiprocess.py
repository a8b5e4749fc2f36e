"""Many server processes on one database (the backend of the test pass): separate servers as on
separate hosts, and `serve --workers N` on one host. The database is the only shared state, so
allocation, listing, pagination tokens, expiry, sweeping and purging must come out the same
whichever process answers, and with no process running at all.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from chimeproxy.store.database import Database
from chimeproxy.store.schema import active_routes, proxy_sessions
from chimeproxy.testing import ChimeProxyServer
from tests.conftest import make_client
from tests.integration.helpers import (
    all_sessions,
    assert_refused,
    person,
    proxy_connector,
    refused,
    store_problems,
    wait_until,
)

CREATES = 64
POOL = 10
MINUTE_MS = 60_000


def to_ms(stamp: str | datetime) -> int:
    """A wire timestamp (`2020-04-15T16:10:10.288Z`) or boto3's datetime, as milliseconds
    since the epoch."""
    if isinstance(stamp, str):
        stamp = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return round(stamp.timestamp() * 1000)


def start_together(*servers: ChimeProxyServer) -> None:
    """Start the servers at the same time, so that their first steps on the database (schema,
    shared settings such as the token key) race."""
    errors: list[BaseException] = []

    def start(server: ChimeProxyServer) -> None:
        try:
            server.start()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(server,)) for server in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        for server in servers:
            server.stop()
        raise errors[0]


def list_ids(url: str, connector_id: str, **filters: Any) -> list[str]:
    """The ids of every session the server at `url` lists."""
    return [s["ProxySessionId"] for s in all_sessions(make_client(url), connector_id, **filters)]


def stored_sessions(url: str, ids: list[str]) -> dict[str, Any]:
    database = Database(url)
    try:
        with database.read() as connection:
            rows = connection.execute(
                select(proxy_sessions).where(proxy_sessions.c.id.in_(ids))
            ).mappings()
            return {row["id"]: row for row in rows}
    finally:
        database.dispose()


# Allocation across processes.


@pytest.fixture(params=["two-servers", "one-server-two-workers"])
def urls(request: pytest.FixtureRequest, database: str, tmp_path: Path) -> Iterator[list[str]]:
    """Two URLs that reach different processes over one database: two separate servers (as on
    two hosts), or one `serve --workers 2` (the kernel spreads connections over its workers)."""
    if request.param == "two-servers":
        servers = [
            ChimeProxyServer(database=database, log_path=tmp_path / f"server{i}.log")
            for i in range(2)
        ]
        start_together(*servers)
    else:
        servers = [
            ChimeProxyServer(
                database=database, extra_args=["--workers", "2"], log_path=tmp_path / "server.log"
            ).start()
        ]
        # Both workers finished their start-up (each ran migrations and read the token key).
        wait_until(lambda: servers[0].log().count('"chimeproxy ready"') == 2, "both workers run")
    try:
        yield [servers[i % len(servers)].url for i in range(2)]
    finally:
        for server in servers:
            server.stop()


def test_concurrent_creates_for_one_participant_across_processes_share_a_pool_of_ten(
    urls: list[str], database: str
) -> None:
    connector_id, pool = proxy_connector(make_client(urls[0]), pool=POOL)
    hub = person()
    partners = [person() for _ in range(CREATES)]
    path = f"/voice-connectors/{connector_id}/proxy-sessions"
    clients = [httpx.Client(base_url=urls[i % 2], timeout=60) for i in range(CREATES)]
    barrier = threading.Barrier(CREATES)
    answers: list[httpx.Response | None] = [None] * CREATES

    def create(index: int) -> None:
        body = {"ParticipantPhoneNumbers": [hub, partners[index]], "Capabilities": ["Voice"]}
        barrier.wait()
        answers[index] = clients[index].post(path, json=body)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(CREATES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for client in clients:
        client.close()

    created = [a.json()["ProxySession"] for a in answers if a is not None and a.status_code == 201]
    exhausted = [a for a in answers if a is not None and a.status_code == 400]
    assert len(created) == POOL, [(a.status_code, a.text) for a in answers if a is not None]
    assert len(exhausted) == CREATES - POOL
    for answer in exhausted:
        assert_refused(answer, 400, "BadRequestException", "pool is exhausted")
    numbers = [session["Participants"][0]["ProxyPhoneNumber"] for session in created]
    assert sorted(numbers) == sorted(pool), "every number once, none twice"
    ids = sorted(session["ProxySessionId"] for session in created)
    assert sorted(list_ids(urls[0], connector_id)) == ids
    assert sorted(list_ids(urls[1], connector_id)) == ids
    assert store_problems(database, time.time_ns() // 1_000_000) == []


# Pagination tokens and shared settings.


def test_a_page_token_from_one_process_works_on_another(database: str, tmp_path: Path) -> None:
    first, second = (
        ChimeProxyServer(database=database, log_path=tmp_path / f"server{i}.log") for i in range(2)
    )
    start_together(first, second)  # both create the token key at once on a fresh database
    try:
        connector_id, _ = proxy_connector(make_client(first.url), pool=2)
        client = make_client(first.url)
        created = [
            client.create_proxy_session(
                VoiceConnectorId=connector_id,
                ParticipantPhoneNumbers=[person(), person()],
                Capabilities=["Voice"],
            )["ProxySession"]["ProxySessionId"]
            for _ in range(5)
        ]
        seen: list[str] = []
        token = None
        for page_number in itertools.count():
            server = (first, second)[page_number % 2]
            page = make_client(server.url).list_proxy_sessions(
                VoiceConnectorId=connector_id,
                MaxResults=2,
                **({"NextToken": token} if token else {}),
            )
            seen += [session["ProxySessionId"] for session in page["ProxySessions"]]
            token = page.get("NextToken")
            if not token:
                break
        assert seen == created  # by creation time: each once, in order
        forged = make_client(second.url)
        with refused(400, "BadRequestException", "NextToken"):
            forged.list_proxy_sessions(VoiceConnectorId=connector_id, NextToken="A" * 40)
    finally:
        first.stop()
        second.stop()


# Time: expiry, sweeping and purging with several processes, and with none.


def test_two_sweeping_processes_close_and_purge_each_session_once(
    database: str, tmp_path: Path
) -> None:
    args = ["--clock-control", "--sweep-interval", "0.05", "--retention-days", "1"]
    servers = [
        ChimeProxyServer(database=database, extra_args=args, log_path=tmp_path / f"s{i}.log")
        for i in range(2)
    ]
    start_together(*servers)
    try:
        connector_id, _ = proxy_connector(make_client(servers[0].url), pool=3)
        hub = person()
        sessions = [
            make_client(servers[i % 2].url).create_proxy_session(
                VoiceConnectorId=connector_id,
                ParticipantPhoneNumbers=[hub if i < 3 else person(), person()],
                Capabilities=["Voice"],
                ExpiryMinutes=1,
            )["ProxySession"]
            for i in range(8)
        ]
        ids = [session["ProxySessionId"] for session in sessions]
        now = [server.advance(120) for server in servers]

        def all_closed() -> bool:
            rows = stored_sessions(database, ids).values()
            return len(rows) == len(ids) and all(row["status"] == "Closed" for row in rows)

        wait_until(all_closed, "the sweepers recorded every expiry")
        for row in stored_sessions(database, ids).values():
            assert row["ended_at"] == row["expires_at"] == row["created_at"] + MINUTE_MS
        assert store_problems(database, min(now)) == []
        for server in servers:
            for session in sessions:
                answer = httpx.get(
                    f"{server.url}/voice-connectors/{connector_id}/proxy-sessions/"
                    f"{session['ProxySessionId']}"
                ).json()["ProxySession"]
                assert answer["Status"] == "Closed"
                assert to_ms(answer["EndedTimestamp"]) == (
                    to_ms(session["CreatedTimestamp"]) + MINUTE_MS
                )
            assert sorted(list_ids(server.url, connector_id, Status="Closed")) == sorted(ids)

        for server in servers:
            server.advance(2 * 86_400)
        wait_until(lambda: stored_sessions(database, ids) == {}, "the sweepers purged them")
        for server in servers:
            assert list_ids(server.url, connector_id) == []
            assert "sweep failed" not in server.log()
    finally:
        for server in servers:
            server.stop()


@pytest.mark.parametrize("sweeper", ["lazy", "swept"])
def test_a_session_that_expired_while_no_process_ran_reads_closed_after_start(
    sweeper: str, database: str, tmp_path: Path
) -> None:
    """A session with ExpiryMinutes=1 is created, then every process stops. While none runs,
    its expiry passes: to have that without waiting, the test moves the session's stored times
    two minutes into the past (created, updated, expiry, and its routes' expiry), which leaves
    the database exactly as if it had been created two minutes before the restart and nothing
    had run since. (The clock-control offset cannot do this: it lives in a process and starts
    from zero again on restart.) The restarted server reads the real clock. 'lazy' reads before
    any sweep; 'swept' also lets a sweeper record the closing."""
    server = ChimeProxyServer(database=database, log_path=tmp_path / "server.log").start()
    try:
        connector_id, _ = proxy_connector(make_client(server.url), pool=1)
        pair = [person(), person()]
        session = make_client(server.url).create_proxy_session(
            VoiceConnectorId=connector_id,
            ParticipantPhoneNumbers=pair,
            Capabilities=["Voice"],
            ExpiryMinutes=1,
        )["ProxySession"]
    finally:
        server.stop()
    session_id = session["ProxySessionId"]
    shift = 2 * MINUTE_MS
    db = Database(database)
    try:
        with db.write() as connection:
            ps = proxy_sessions.c
            pk = connection.scalar(select(ps.pk).where(ps.id == session_id))
            connection.execute(
                update(proxy_sessions)
                .where(ps.pk == pk)
                .values(
                    created_at=ps.created_at - shift,
                    updated_at=ps.updated_at - shift,
                    expires_at=ps.expires_at - shift,
                )
            )
            connection.execute(
                update(active_routes)
                .where(active_routes.c.session_pk == pk)
                .values(expires_at=active_routes.c.expires_at - shift)
            )
    finally:
        db.dispose()
    created_ms = to_ms(session["CreatedTimestamp"]) - shift

    args = ["--sweep-interval", "0.05"] if sweeper == "swept" else []
    server = ChimeProxyServer(
        database=database, extra_args=args, log_path=tmp_path / "server.log"
    ).start()
    try:
        if sweeper == "swept":
            wait_until(
                lambda: stored_sessions(database, [session_id])[session_id]["status"] == "Closed",
                "the sweeper recorded the expiry",
            )
        answer = httpx.get(
            f"{server.url}/voice-connectors/{connector_id}/proxy-sessions/{session_id}"
        ).json()["ProxySession"]
        assert answer["Status"] == "Closed"
        assert to_ms(answer["CreatedTimestamp"]) == created_ms
        assert to_ms(answer["EndedTimestamp"]) == created_ms + MINUTE_MS
        assert list_ids(server.url, connector_id, Status="Closed") == [session_id]
        assert list_ids(server.url, connector_id, Status="Open") == []
        # Its proxy number, the pool's only one, is free again for the same pair.
        again = make_client(server.url).create_proxy_session(
            VoiceConnectorId=connector_id, ParticipantPhoneNumbers=pair, Capabilities=["Voice"]
        )["ProxySession"]
        assert again["Status"] == "Open"
        row = stored_sessions(database, [session_id])[session_id]
        assert (row["status"], row["ended_at"]) == ("Closed", created_ms + MINUTE_MS)
        assert store_problems(database, time.time_ns() // 1_000_000) == []
    finally:
        server.stop()
