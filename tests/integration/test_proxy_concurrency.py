"""The routing invariant under concurrent CreateProxySession calls.

Many clients ask at the same instant for sessions that compete for the same proxy numbers;
the database must arbitrate so that no participant ever gets one proxy number twice while
active, on one server process and across several.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from chimeproxy.testing import ChimeProxyServer
from tests.integration.helpers import (
    all_sessions,
    assert_client_error,
    person,
    postgres_database,
    proxy_connector,
    proxy_number,
    racing_client,
)

CALLERS = 50
POOL = 10


@pytest.fixture(
    scope="module",
    params=[("sqlite", 1), ("sqlite", 2), ("postgresql", 2)],
    ids=["sqlite-one-process", "sqlite-two-processes", "postgresql-two-processes"],
)
def busy_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ChimeProxyServer]:
    """A server of its own over SQLite (one process, or two sharing the database file) or
    PostgreSQL (two processes, where writers really run at the same time)."""
    engine, workers = request.param
    directory: Path = tmp_path_factory.mktemp(f"{engine}{workers}")
    with ExitStack() as stack:
        if engine == "postgresql":
            database = stack.enter_context(postgres_database())
        else:
            database = f"sqlite:///{directory / 'db'}"  # the SQLite cases, on either pass
        server = ChimeProxyServer(
            database=database,
            extra_args=["--workers", str(workers)],
            log_path=directory / "log",
        ).start()
        stack.callback(server.stop)
        yield server
        log = server.log()
        assert "Traceback" not in log, log


def race(
    url: str, calls: list[Callable[[Any], dict[str, Any]]]
) -> tuple[list[dict[str, Any]], list[Any]]:
    """Run each call on its own client, all released at once; (sessions, errors)."""
    clients = [racing_client(url) for _ in calls]
    start = threading.Barrier(len(calls))

    def run(index: int) -> tuple[str, Any]:
        client = clients[index]
        start.wait()
        try:
            return "ok", calls[index](client)
        except client.exceptions.BadRequestException as error:
            return "refused", error

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        results = list(pool.map(run, range(len(calls))))
    sessions = [value["ProxySession"] for kind, value in results if kind == "ok"]
    errors = [value for kind, value in results if kind == "refused"]
    assert len(sessions) + len(errors) == len(calls)
    return sessions, errors


def assert_exhausted(errors: list[Any]) -> None:
    for error in errors:
        assert_client_error(
            error, 400, "BadRequestException", "pool is exhausted for these participants"
        )


def test_one_participant_fifty_partners_pool_of_ten(busy_server: ChimeProxyServer) -> None:
    client = racing_client(busy_server.url)
    connector_id, numbers = proxy_connector(client, pool=POOL)
    a = person()
    partners = [person() for _ in range(CALLERS)]

    def call(partner: str) -> Callable[[Any], dict[str, Any]]:
        return lambda c: c.create_proxy_session(
            VoiceConnectorId=connector_id,
            ParticipantPhoneNumbers=[a, partner],
            Capabilities=["Voice"],
        )

    sessions, errors = race(busy_server.url, [call(p) for p in partners])
    assert len(sessions) == POOL
    assert len(errors) == CALLERS - POOL
    assert_exhausted(errors)
    given = [proxy_number(s) for s in sessions]
    assert sorted(given) == sorted(numbers)  # each number exactly once
    assert all(s["Participants"][0]["PhoneNumber"] == a for s in sessions)

    on_server = all_sessions(client, connector_id)
    assert sorted(s["ProxySessionId"] for s in on_server) == sorted(
        s["ProxySessionId"] for s in sessions
    )
    assert len(all_sessions(client, connector_id, Status="Open")) == POOL
    assert sorted(proxy_number(s) for s in on_server) == sorted(numbers)


def test_one_pair_twenty_times_pool_of_ten(busy_server: ChimeProxyServer) -> None:
    client = racing_client(busy_server.url)
    connector_id, numbers = proxy_connector(client, pool=POOL)
    a, b = person(), person()

    def call(pair: list[str]) -> Callable[[Any], dict[str, Any]]:
        return lambda c: c.create_proxy_session(
            VoiceConnectorId=connector_id, ParticipantPhoneNumbers=pair, Capabilities=["Voice"]
        )

    # Half in each order, so that writers claim the same two routes in opposite orders.
    sessions, errors = race(busy_server.url, [call([a, b]), call([b, a])] * 10)
    assert len(sessions) == POOL
    assert_exhausted(errors)
    assert sorted(proxy_number(s) for s in sessions) == sorted(numbers)


def test_crossing_pairs_keep_the_invariant(busy_server: ChimeProxyServer) -> None:
    """Six people, every pair at once, pool of three: no person twice on one number."""
    client = racing_client(busy_server.url)
    connector_id, _ = proxy_connector(client, pool=3)
    people = [person() for _ in range(6)]
    pairs = list(itertools.combinations(people, 2)) * 2

    def call(pair: tuple[str, str]) -> Callable[[Any], dict[str, Any]]:
        return lambda c: c.create_proxy_session(
            VoiceConnectorId=connector_id,
            ParticipantPhoneNumbers=list(pair),
            Capabilities=["Voice"],
        )

    sessions, errors = race(busy_server.url, [call(p) for p in pairs])
    assert_exhausted(errors)
    assert sessions
    routes = [
        (p["PhoneNumber"], p["ProxyPhoneNumber"]) for s in sessions for p in s["Participants"]
    ]
    assert len(routes) == len(set(routes))
    # Every person has at most one session per number, so at most three sessions.
    for someone in people:
        assert sum(someone == r[0] for r in routes) <= 3
    assert len(all_sessions(client, connector_id)) == len(sessions)


def test_paging_while_others_create_skips_and_repeats_nothing(
    busy_server: ChimeProxyServer,
) -> None:
    """Sessions created concurrently sort after the reader's position, so every session that
    was acknowledged before the reader's last page appears exactly once, in order."""
    reader = racing_client(busy_server.url)
    connector_id, _ = proxy_connector(reader, pool=1)
    for _ in range(10):
        reader.create_proxy_session(
            VoiceConnectorId=connector_id,
            ParticipantPhoneNumbers=[person(), person()],
            Capabilities=["Voice"],
        )
    acknowledged: list[tuple[float, str]] = []
    done = threading.Event()
    writing = [racing_client(busy_server.url) for _ in range(4)]

    def create_many(client: Any) -> None:
        while not done.is_set():
            created = client.create_proxy_session(
                VoiceConnectorId=connector_id,
                ParticipantPhoneNumbers=[person(), person()],
                Capabilities=["Voice"],
            )["ProxySession"]
            acknowledged.append((time.monotonic(), created["ProxySessionId"]))

    writers = [threading.Thread(target=create_many, args=(client,)) for client in writing]
    for writer in writers:
        writer.start()
    try:
        seen: list[dict[str, Any]] = []
        token = None
        pages = 0
        while True:
            last_page_started = time.monotonic()
            page = reader.list_proxy_sessions(
                VoiceConnectorId=connector_id,
                MaxResults=2,
                **({"NextToken": token} if token else {}),
            )
            seen += page["ProxySessions"]
            pages += 1
            token = page.get("NextToken")
            # Keep reading while writers add at the end, for a while, then let the list end.
            if pages == 40:
                done.set()
            if not token:
                break
    finally:
        done.set()
        for writer in writers:
            writer.join(30)
    ids = [s["ProxySessionId"] for s in seen]
    assert len(ids) == len(set(ids)), "a session was listed twice"
    keys = [(s["CreatedTimestamp"], s["ProxySessionId"]) for s in seen]
    assert keys == sorted(keys)
    before_last_page = {sid for at, sid in acknowledged if at < last_page_started}
    assert before_last_page <= set(ids), "an acknowledged session was skipped"
    assert acknowledged, "no session was created while the reader paged"


def test_session_writes_arriving_together_are_each_answered_alone(
    busy_server: ChimeProxyServer,
) -> None:
    """On SQLite, the creates, updates and deletes that reach the event loop together share a
    commit (`Services.writes`): each still gets its own answer, a refused one changes nothing,
    and what was acknowledged is what the database holds."""
    client = racing_client(busy_server.url)
    connector_id, _ = proxy_connector(client, pool=POOL)
    sessions = [
        client.create_proxy_session(
            VoiceConnectorId=connector_id,
            ParticipantPhoneNumbers=[person(), person()],
            Capabilities=["Voice", "SMS"],
        )["ProxySession"]["ProxySessionId"]
        for _ in range(20)
    ]
    updated, deleted, too_long = sessions[:8], sessions[8:14], sessions[14:20]
    unknown = [f"{n:08d}-0000-4000-8000-000000000000" for n in range(4)]
    new_pairs = [(person(), person()) for _ in range(8)]

    def update(session_id: str, minutes: int) -> Callable[[Any], Any]:
        return lambda c: c.update_proxy_session(
            VoiceConnectorId=connector_id,
            ProxySessionId=session_id,
            Capabilities=["Voice"],
            ExpiryMinutes=minutes,
        )

    def delete(session_id: str) -> Callable[[Any], Any]:
        return lambda c: c.delete_proxy_session(
            VoiceConnectorId=connector_id, ProxySessionId=session_id
        )

    def create(pair: tuple[str, str]) -> Callable[[Any], Any]:
        return lambda c: c.create_proxy_session(
            VoiceConnectorId=connector_id, ParticipantPhoneNumbers=list(pair), Capabilities=["SMS"]
        )

    calls = (
        [update(s, 100 + n) for n, s in enumerate(updated)]
        + [delete(s) for s in deleted]
        + [update(s, 10**9) for s in too_long]  # beyond the server's longest session
        + [update(s, 5) for s in unknown]
        + [create(pair) for pair in new_pairs]
    )
    clients = [racing_client(busy_server.url) for _ in calls]
    start = threading.Barrier(len(calls))

    def run(index: int) -> Any:
        start.wait()
        try:
            return calls[index](clients[index])
        except clients[index].exceptions.ClientError as error:
            return error

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        answers = list(pool.map(run, range(len(calls))))
    answers.reverse()
    for n, session_id in enumerate(updated):
        session = answers.pop()["ProxySession"]
        assert session["ProxySessionId"] == session_id
        assert (session["ExpiryMinutes"], session["Capabilities"]) == (100 + n, ["Voice"])
    for _ in deleted:
        assert answers.pop()["ResponseMetadata"]["HTTPStatusCode"] == 204
    for _ in too_long:
        assert_client_error(answers.pop(), 400, "BadRequestException", "ExpiryMinutes")
    for session_id in unknown:
        assert_client_error(answers.pop(), 404, "NotFoundException", session_id)
    created = [answers.pop()["ProxySession"] for _ in new_pairs]
    assert not answers
    for session, pair in zip(created, new_pairs, strict=True):
        assert sorted(p["PhoneNumber"] for p in session["Participants"]) == sorted(pair)

    held = {s["ProxySessionId"]: s for s in all_sessions(client, connector_id)}
    assert set(held) == set(updated) | set(too_long) | {s["ProxySessionId"] for s in created}
    for n, session_id in enumerate(updated):
        assert (held[session_id]["ExpiryMinutes"], held[session_id]["Capabilities"]) == (
            100 + n,
            ["Voice"],
        )
    for session_id in too_long:
        assert (held[session_id]["ExpiryMinutes"], held[session_id]["Capabilities"]) == (
            60,
            ["SMS", "Voice"],
        )
