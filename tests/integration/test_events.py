"""Event webhooks against a real server: session and interaction events reach a local receiver,
signed with HMAC-SHA256, retried when it fails; a dead receiver never slows routing."""

from __future__ import annotations

import hashlib
import hmac
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from chimeproxy.testing import ChimeProxyServer
from tests.conftest import database_url, make_client
from tests.integration.helpers import decide, end, new_session, person
from tests.integration.stubs import Recorded, Recorder

SECRET = "whsec-test-secret"


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, recorder: Recorder
) -> Iterator[ChimeProxyServer]:
    """The module's server sends its events to the recorder's /events."""
    directory = tmp_path_factory.mktemp("events")
    running = ChimeProxyServer(
        database=database_url(directory),
        extra_args=[
            "--clock-control",
            "--sweep-interval",
            "0.2",
            "--events-url",
            f"{recorder.url}/events",
        ],
        env={"CHIMEPROXY_EVENTS_SECRET": SECRET},
        log_path=directory / "server.log",
    ).start()
    yield running
    running.stop()


def deliveries(requests: list[Recorded]) -> list[Recorded]:
    """The requests that delivered an event (the receiver answered 200)."""
    return [r for r in requests if r.method == "POST" and r.path == "/events" and r.status == 200]


def events_about(
    recorder: Recorder, key: str, value: str, expected: list[str]
) -> list[dict[str, Any]]:
    """The distinct events whose data[key] == value, once their types include `expected`."""

    def collect(requests: list[Recorded]) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for request in deliveries(requests):
            event = orjson.loads(request.body)
            if event["data"].get(key) == value:
                seen.setdefault(event["id"], event)
        return list(seen.values())

    def done(requests: list[Recorded]) -> bool:
        types = [e["type"] for e in collect(requests)]
        return all(types.count(t) >= expected.count(t) for t in set(expected))

    return collect(recorder.wait_for(done))


def test_session_and_interaction_events_arrive_signed(
    server: ChimeProxyServer, client: Any, recorder: Recorder
) -> None:
    connector_id, session_id, a, b, p = new_session(client, ("Voice", "SMS"))
    interaction_id = decide(server.url, a, p)["interaction_id"]
    ended = end(server.url, interaction_id, outcome="completed", duration_seconds=30)
    assert ended.status_code == 204
    client.update_proxy_session(
        VoiceConnectorId=connector_id, ProxySessionId=session_id, Capabilities=["Voice"]
    )
    client.delete_proxy_session(VoiceConnectorId=connector_id, ProxySessionId=session_id)

    session_events = events_about(
        recorder,
        "ProxySessionId",
        session_id,
        [
            "session.created",
            "session.updated",
            "session.updated",
            "session.deleted",
            "interaction.started",
            "interaction.ended",
        ],
    )
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event in session_events:
        by_type.setdefault(event["type"], []).append(event)
    assert by_type["session.created"][0]["data"]["Status"] == "Open"
    assert by_type["session.created"][0]["data"]["CreatedTimestamp"].endswith("Z")
    assert [e["data"]["Status"] for e in by_type["session.updated"]] == [
        "InProgress",
        "InProgress",
    ]
    assert by_type["session.updated"][1]["data"]["Capabilities"] == ["Voice"]
    started = by_type["interaction.started"][0]["data"]
    assert (started["InteractionId"], started["FromPhoneNumber"], started["ToPhoneNumber"]) == (
        interaction_id,
        a,
        b,
    )
    finished = by_type["interaction.ended"][0]["data"]
    assert (finished["Outcome"], finished["DurationSeconds"]) == ("completed", 30)
    assert by_type["session.deleted"][0]["data"]["ProxySessionId"] == session_id
    for event in session_events:
        assert set(event) == {"id", "type", "time", "account", "region", "data"}
        assert (event["account"], event["region"]) == ("123456789012", "us-east-1")

    # Every delivery carries the HMAC-SHA256 of its exact body.
    for request in deliveries(recorder.requests):
        expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(request.headers["x-chimeproxy-signature"], expected)
        event = orjson.loads(request.body)
        assert request.headers["x-chimeproxy-event"] == event["type"]
        assert request.headers["x-chimeproxy-event-id"] == event["id"]


def test_out_of_session_contacts_are_announced(
    server: ChimeProxyServer, client: Any, recorder: Recorder
) -> None:
    _, _, _, _, p = new_session(client, ("Voice", "SMS"))
    stranger = person()
    assert decide(server.url, stranger, p)["status"] == 403
    (event,) = events_about(recorder, "FromPhoneNumber", stranger, ["contact.out_of_session"])
    assert event["type"] == "contact.out_of_session"
    data = event["data"]
    assert (data["Action"], data["RejectStatus"], data["OutOfSession"]) == (
        "reject",
        403,
        "not-a-participant",
    )


def test_message_bodies_stay_out_of_events(
    server: ChimeProxyServer, client: Any, recorder: Recorder
) -> None:
    _, _, a, _, p = new_session(client, ("Voice", "SMS"))
    secret_text = "the door code is 4321"
    answer = httpx.post(
        f"{server.url}/_chimeproxy/sms/inbound",
        json={"from": a, "to": p, "body": secret_text},
        timeout=10,
    )
    # No SMS provider on this server: routed and recorded, but not sent.
    assert (answer.status_code, answer.json()["outcome"]) == (200, "failed")
    events = events_about(
        recorder, "FromPhoneNumber", a, ["interaction.started", "interaction.ended"]
    )
    assert {e["data"]["Kind"] for e in events} == {"sms"}
    assert all(e["data"]["MessageBody"] is None for e in events)
    assert not any(secret_text.encode() in r.body for r in recorder.requests)
    assert secret_text not in server.log()


def test_a_failing_receiver_gets_the_event_again(
    server: ChimeProxyServer, client: Any, recorder: Recorder
) -> None:
    recorder.failures["/events"] = 2
    _, session_id, *_ = new_session(client, ("Voice", "SMS"))
    (created,) = events_about(recorder, "ProxySessionId", session_id, ["session.created"])
    assert created["type"] == "session.created"
    attempts = [
        r for r in recorder.requests if r.headers.get("x-chimeproxy-event-id") == created["id"]
    ]
    assert [r.status for r in attempts] == [500, 500, 200]
    assert len({r.body for r in attempts}) == 1


def test_the_sweeper_announces_expired_sessions(
    server: ChimeProxyServer, client: Any, recorder: Recorder
) -> None:
    _, session_id, *_ = new_session(client, ("Voice", "SMS"), ExpiryMinutes=1)
    server.advance(61)
    events = events_about(recorder, "ProxySessionId", session_id, ["session.closed"])
    (closed,) = [e for e in events if e["type"] == "session.closed"]
    assert closed["data"]["Status"] == "Closed"
    assert closed["data"]["EndedTimestamp"].endswith("Z")


# A receiver that never answers.


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port that accepts connections and never answers a byte."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


def test_a_dead_receiver_does_not_hold_up_routing(
    tmp_path_factory: pytest.TempPathFactory, black_hole: int
) -> None:
    directory = tmp_path_factory.mktemp("dead-receiver")
    dead = ChimeProxyServer(
        database=database_url(directory),
        extra_args=[
            "--events-url",
            f"http://127.0.0.1:{black_hole}/events",
            "--events-queue-size",
            "2",
        ],
        log_path=directory / "server.log",
    ).start()
    try:
        client = make_client(dead.url)
        _, _, a, b, p = new_session(client, ("Voice", "SMS"))
        with httpx.Client(timeout=10) as http:
            for caller in [a, b] * 15:
                answer = http.post(
                    f"{dead.url}/_chimeproxy/route",
                    json={"caller": caller, "called": p, "kind": "voice"},
                )
                assert answer.json()["action"] == "connect"
    finally:
        dead.stop()
    log = dead.log()
    assert "event dropped: queue full" in log
    # The delivery stuck on the dead receiver does not hold up shutdown either.
    assert "Application shutdown complete" in log
