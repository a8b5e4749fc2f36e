"""Session ids and the keys sessions are stored under, through the real API: new sessions get
time-ordered ids and, on SQLite, keys made from them (domain.ids.session_key); sessions
stored by earlier versions (random ids, keys counted up) still answer every operation; and a
key that another session holds sends the create round again, with a new id."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError
from sqlalchemy import insert, select

from chimeproxy.app import ChimeProxyApp
from chimeproxy.domain.ids import session_key
from chimeproxy.operations import proxy as proxy_operations
from chimeproxy.store.database import Database
from chimeproxy.store.schema import active_routes, proxy_sessions, voice_connectors
from chimeproxy.testing import ChimeProxyServer
from chimeproxy.uuids import random_uuid
from tests.conftest import in_process_settings, make_client
from tests.integration.faults import in_process_server
from tests.integration.helpers import (
    assert_client_error,
    create_session,
    person,
    proxy_connector,
)


@pytest.fixture(scope="module")
def store(server: ChimeProxyServer) -> Iterator[Database]:
    """The module server's database, opened beside it."""
    database = Database(server.database)
    yield database
    database.dispose()


def _server_now(server: ChimeProxyServer) -> int:
    answer = httpx.post(f"{server.url}/_chimeproxy/clock", json={"advance_seconds": 0})
    return int(answer.json()["now_ms"])


def _stored_key(store: Database, session_id: str) -> int:
    with store.read() as connection:
        key = connection.scalar(
            select(proxy_sessions.c.pk).where(proxy_sessions.c.id == session_id)
        )
    assert key is not None
    return int(key)


def test_new_sessions_have_time_ordered_ids_and_sqlite_stores_them_under_their_keys(
    server: ChimeProxyServer, client: Any, store: Database
) -> None:
    connector_id, _ = proxy_connector(client, pool=3)
    before = _server_now(server)
    made = [create_session(client, connector_id, person(), person()) for _ in range(3)]
    after = _server_now(server)
    ids = [session["ProxySessionId"] for session in made]
    for session_id in ids:
        parsed = uuid.UUID(session_id)
        assert parsed.version == 7 and str(parsed) == session_id
        assert before <= parsed.int >> 80 <= after + 1_000  # its creation's millisecond
        found = client.get_proxy_session(VoiceConnectorId=connector_id, ProxySessionId=session_id)
        assert found["ProxySession"]["ProxySessionId"] == session_id
        stored = _stored_key(store, session_id)
        if store.dialect == "sqlite":
            assert stored == session_key(session_id)
        else:
            assert stored < 1 << 31  # PostgreSQL's sequence
    assert ids == sorted(ids)  # created one after the other


def test_a_session_stored_by_an_earlier_version_answers_every_operation(
    server: ChimeProxyServer, client: Any, store: Database
) -> None:
    """Random id, key counted up by the database, routes of its own: what an upgraded
    database holds. Get, List, Update and Delete find it by its id."""
    connector_id, numbers = proxy_connector(client, pool=2)
    first, second = person(), person()
    now = _server_now(server)
    old_id = random_uuid()
    with store.write() as connection:
        connector_pk = connection.scalar(
            select(voice_connectors.c.pk).where(voice_connectors.c.id == connector_id)
        )
        values: dict[str, Any] = {
            "voice_connector_pk": connector_pk,
            "id": old_id,
            "status": "Open",
            "capabilities": "SMS,Voice",
            "expiry_minutes": 60,
            "expiry_minutes_given": True,
            "participant_1": first,
            "participant_2": second,
            "proxy_number": numbers[0],
            "created_at": now,
            "updated_at": now,
            "expires_at": now + 3_600_000,
        }
        if store.dialect == "sqlite":
            values["pk"] = 42  # counted up, as before (PostgreSQL: its sequence's)
        session_pk = connection.execute(
            insert(proxy_sessions).values(values).returning(proxy_sessions.c.pk)
        ).scalar_one()
        connection.execute(
            insert(active_routes),
            [
                {
                    "voice_connector_pk": connector_pk,
                    "participant": who,
                    "proxy_number": numbers[0],
                    "session_pk": session_pk,
                    "expires_at": now + 3_600_000,
                }
                for who in (first, second)
            ],
        )

    ids = {"VoiceConnectorId": connector_id, "ProxySessionId": old_id}
    got = client.get_proxy_session(**ids)["ProxySession"]
    assert got["ProxySessionId"] == old_id and got["Capabilities"] == ["SMS", "Voice"]
    listed = client.list_proxy_sessions(VoiceConnectorId=connector_id)["ProxySessions"]
    assert [session["ProxySessionId"] for session in listed] == [old_id]
    updated = client.update_proxy_session(**ids, Capabilities=["Voice"])["ProxySession"]
    assert updated["Capabilities"] == ["Voice"]
    assert client.get_proxy_session(**ids)["ProxySession"]["Capabilities"] == ["Voice"]
    # A new session of the same pair takes another number: the old session's routes hold.
    new = create_session(client, connector_id, first, second)
    assert {p["ProxyPhoneNumber"] for p in new["Participants"]} == {numbers[1]}
    client.delete_proxy_session(**ids)
    with pytest.raises(ClientError) as refused:
        client.get_proxy_session(**ids)
    assert_client_error(refused.value, 404, "NotFoundException", old_id)
    with store.read() as connection:
        left = connection.scalars(
            select(active_routes.c.session_pk).where(active_routes.c.session_pk == session_pk)
        ).all()
    assert left == []


def test_a_key_another_session_holds_sends_the_create_round_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two sessions of one millisecond whose ids end in the same 21 bits make one key: the
    second insert fails on the key, and the create runs again with a new id (SQLite)."""
    app = ChimeProxyApp(in_process_settings(tmp_path))
    with in_process_server(app) as port:
        client = make_client(f"http://127.0.0.1:{port}")
        connector_id, _ = proxy_connector(client, pool=3)
        held = create_session(client, connector_id, person(), person())["ProxySessionId"]
        # The same millisecond and last digits, another id: the same key.
        clashing = held[:15] + ("1" if held[15] != "1" else "2") + held[16:]
        assert clashing != held and session_key(clashing) == session_key(held)
        made: list[str] = []
        real = proxy_operations.time_ordered_uuid

        def ids(now_ms: int | None = None) -> str:
            made.append(clashing if not made else real(now_ms))
            return made[-1]

        monkeypatch.setattr(proxy_operations, "time_ordered_uuid", ids)
        created = create_session(client, connector_id, person(), person())["ProxySessionId"]
        assert len(made) == 2 and created == made[1] != clashing
        for session_id in (held, created):
            answer = client.get_proxy_session(
                VoiceConnectorId=connector_id, ProxySessionId=session_id
            )
            assert answer["ProxySession"]["ProxySessionId"] == session_id
