"""The server process: flags and their environment twins, health, restart, clean SIGTERM."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import httpx

from chimeproxy.testing import ChimeProxyServer, free_port
from tests.conftest import database_url, make_client
from tests.integration.helpers import refused


def test_environment_variables_configure_the_server(tmp_path: Path) -> None:
    port = free_port()
    server = ChimeProxyServer(
        database="sqlite:///ignored-because-env-wins.db",
        port=port,
        env={"CHIMEPROXY_CLOCK_CONTROL": "true", "CHIMEPROXY_MAX_SESSION_MINUTES": "5"},
        log_path=tmp_path / "server.log",
    )
    # Flags given on the command line win over the environment, so pass only the essentials.
    server.database = database_url(tmp_path)
    server.start()
    try:
        assert httpx.post(f"{server.url}/_chimeproxy/clock", json={"advance_seconds": 1}).is_success
        client = make_client(server.url)
        connector = client.create_voice_connector(Name="env", RequireEncryption=False)
        connector_id = connector["VoiceConnector"]["VoiceConnectorId"]
        with refused(400, "BadRequestException", "between 1 and 5"):
            client.put_voice_connector_proxy(
                VoiceConnectorId=connector_id,
                DefaultSessionExpiryMinutes=6,
                PhoneNumberPoolCountries=["US"],
            )
        with refused(404, "NotFoundException", "has no proxy configuration"):
            client.get_voice_connector_proxy(VoiceConnectorId=connector_id)
    finally:
        server.stop()


def test_data_survives_a_restart(tmp_path: Path) -> None:
    server = ChimeProxyServer(database=database_url(tmp_path)).start()
    try:
        client = make_client(server.url)
        created = client.create_voice_connector(Name="durable", RequireEncryption=True)
        connector_id = created["VoiceConnector"]["VoiceConnectorId"]
        server.stop()
        server.start()
        again = make_client(server.url).get_voice_connector(VoiceConnectorId=connector_id)
        assert again["VoiceConnector"] == created["VoiceConnector"]
    finally:
        server.stop()


def test_sigterm_finishes_requests_in_flight_and_exits_cleanly(tmp_path: Path) -> None:
    server = ChimeProxyServer(database=database_url(tmp_path)).start()
    outcomes: list[Any] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            while not stop.is_set():
                try:
                    answer = http.post(
                        "/voice-connectors", json={"Name": "load", "RequireEncryption": False}
                    )
                    outcomes.append(answer.status_code)
                except httpx.TransportError as exc:  # refused once the listener has closed
                    outcomes.append(type(exc).__name__)
                    return

    workers = [threading.Thread(target=hammer) for _ in range(4)]
    for worker in workers:
        worker.start()
    while len(outcomes) < 40:
        threading.Event().wait(0.01)
    code = server.stop(signal.SIGTERM)
    stop.set()
    for worker in workers:
        worker.join(15)
    # uvicorn re-raises SIGTERM after its graceful shutdown, as service managers expect.
    assert code in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in server.log()
    answered = [o for o in outcomes if isinstance(o, int)]
    assert answered and set(answered) == {201}, "every answered request completed"
    # Nothing half-done: each acknowledged create is there after a restart.
    server.start()
    try:
        listed = make_client(server.url).list_voice_connectors(MaxResults=100)
        count = len(listed["VoiceConnectors"])
        token = listed.get("NextToken")
        while token:
            page = make_client(server.url).list_voice_connectors(MaxResults=100, NextToken=token)
            count += len(page["VoiceConnectors"])
            token = page.get("NextToken")
        assert count >= len(answered)
    finally:
        server.stop()
