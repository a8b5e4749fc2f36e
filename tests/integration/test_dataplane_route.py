"""POST /_chimeproxy/route and /_chimeproxy/interactions/{id}/end against a real server: the
contract the SIP edge is built on, and the session lifecycle it drives (seen through boto3)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from chimeproxy.app import ChimeProxyApp
from chimeproxy.settings import Settings
from chimeproxy.testing import ChimeProxyServer
from tests.conftest import database_url, make_client
from tests.integration.helpers import (
    assert_refused,
    decide,
    end,
    interactions,
    order_numbers,
    person,
    proxy_connector,
    session_between,
    status_of,
)

SECRET = "s3cret-route-key"


def with_fallback(client: Any, connector_id: str, fallback: str, expiry: int = 60) -> None:
    client.put_voice_connector_proxy(
        VoiceConnectorId=connector_id,
        DefaultSessionExpiryMinutes=expiry,
        PhoneNumberPoolCountries=["US"],
        FallBackPhoneNumber=fallback,
    )


# In session.


def test_a_call_from_a_reaches_b_and_from_b_reaches_a_shown_as_p(
    server: ChimeProxyServer, client: Any
) -> None:
    connector_id, _ = proxy_connector(client, 2)
    a, b = person(), person()
    session_id, p = session_between(client, connector_id, a, b)

    forward = decide(server.url, a, p, "voice", call_id="call-1@edge")
    assert set(forward) == {
        "action", "target", "caller_id", "session_id", "voice_connector_id", "interaction_id",
        "require_encryption", "max_duration_seconds",
    }  # fmt: skip
    assert forward["action"] == "connect"
    assert forward["require_encryption"] is False
    # The session's 60 minutes, less the moments since it was made.
    assert 3590 <= forward["max_duration_seconds"] <= 3600
    assert (forward["target"], forward["caller_id"]) == (b, p)
    assert (forward["session_id"], forward["voice_connector_id"]) == (session_id, connector_id)

    back = decide(server.url, b, p, "voice")
    assert back["action"] == "connect"
    assert (back["target"], back["caller_id"]) == (a, p)
    assert back["interaction_id"] != forward["interaction_id"]


def test_messages_route_like_calls(server: ChimeProxyServer, client: Any) -> None:
    connector_id, _ = proxy_connector(client, 1)
    a, b = person(), person()
    _, p = session_between(client, connector_id, a, b, ("SMS",))
    answer = decide(server.url, b, p, "sms")
    assert (answer["action"], answer["target"], answer["caller_id"]) == ("connect", a, p)


def test_numbers_are_accepted_without_the_plus(server: ChimeProxyServer, client: Any) -> None:
    connector_id, _ = proxy_connector(client, 1)
    a, b = person(), person()
    _, p = session_between(client, connector_id, a, b)
    answer = decide(server.url, a[1:], p[1:])
    assert (answer["target"], answer["caller_id"]) == (b, p)


def test_the_first_routed_call_turns_the_session_in_progress(
    server: ChimeProxyServer, client: Any
) -> None:
    connector_id, _ = proxy_connector(client, 1)
    a, b = person(), person()
    session_id, p = session_between(client, connector_id, a, b)
    assert status_of(client, connector_id, session_id) == "Open"
    decide(server.url, a, p)
    assert status_of(client, connector_id, session_id) == "InProgress"
    listed = client.list_proxy_sessions(VoiceConnectorId=connector_id, Status="InProgress")
    assert [s["ProxySessionId"] for s in listed["ProxySessions"]] == [session_id]
    decide(server.url, b, p)
    assert status_of(client, connector_id, session_id) == "InProgress"


def test_calls_arriving_together_are_each_routed_and_recorded_alone(
    server: ChimeProxyServer, client: Any
) -> None:
    """Calls that arrive together share a commit on SQLite (store/prepared.py WriteBatch):
    each still gets its own answer, its own interaction, and a stranger among them is refused
    without touching the others."""
    connector_id, _ = proxy_connector(client, 6)
    pairs = [(person(), person()) for _ in range(6)]
    sessions = [session_between(client, connector_id, a, b) for a, b in pairs]
    calls = [
        (index, a if n % 2 == 0 else b) for index, (a, b) in enumerate(pairs) for n in range(20)
    ]
    stranger = person()

    async def all_at_once() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            requests = [
                http.post(
                    "/_chimeproxy/route",
                    json={"caller": caller, "called": sessions[index][1], "kind": "voice"},
                )
                for index, caller in calls
            ]
            requests.append(
                http.post(
                    "/_chimeproxy/route",
                    json={"caller": stranger, "called": sessions[0][1], "kind": "voice"},
                )
            )
            return await asyncio.gather(*requests)

    answers = asyncio.run(all_at_once())
    *routed, refused = answers
    assert refused.status_code == 200 and refused.json()["action"] == "reject"
    ids = set()
    for (index, caller), answer in zip(calls, routed, strict=True):
        assert answer.status_code == 200, answer.text
        decision = answer.json()
        a, b = pairs[index]
        assert decision["action"] == "connect"
        assert (decision["target"], decision["caller_id"]) == (
            b if caller == a else a,
            sessions[index][1],
        )
        assert decision["session_id"] == sessions[index][0]
        ids.add(decision["interaction_id"])
    assert len(ids) == len(calls)
    for index, (session_id, _) in enumerate(sessions):
        recorded = interactions(server.url, connector_id, session_id)
        assert {i["InteractionId"] for i in recorded} <= ids
        assert len(recorded) == 20, index
        assert status_of(client, connector_id, session_id) == "InProgress"


def test_a_refused_contact_leaves_the_session_open(server: ChimeProxyServer, client: Any) -> None:
    connector_id, _ = proxy_connector(client, 1)
    a, b = person(), person()
    session_id, p = session_between(client, connector_id, a, b, ("Voice",))
    assert decide(server.url, a, p, "sms")["status"] == 488
    decide(server.url, person(), p)
    assert status_of(client, connector_id, session_id) == "Open"


def test_a_disabled_configuration_still_routes_its_sessions(
    server: ChimeProxyServer, client: Any
) -> None:
    """Disabled stops new sessions, as in the hosted service; calls in existing ones go on."""
    connector_id, _ = proxy_connector(client, 1)
    a, b = person(), person()
    _, p = session_between(client, connector_id, a, b)
    client.put_voice_connector_proxy(
        VoiceConnectorId=connector_id,
        DefaultSessionExpiryMinutes=60,
        PhoneNumberPoolCountries=["US"],
        Disabled=True,
    )
    assert decide(server.url, a, p)["target"] == b


# Out of session.


def test_a_stranger_is_refused_with_403(server: ChimeProxyServer, client: Any) -> None:
    connector_id, _ = proxy_connector(client, 1)
    a, b = person(), person()
    _, p = session_between(client, connector_id, a, b)
    answer = decide(server.url, person(), p)
    assert answer == {"action": "reject", "status": 403, "reason": answer["reason"]}
    assert "participant" in answer["reason"]
    assert a not in answer["reason"] and b not in answer["reason"]


@pytest.mark.parametrize("caller", ["anonymous", "", "+0"])
def test_an_unknown_caller_is_a_stranger(
    server: ChimeProxyServer, client: Any, caller: str
) -> None:
    _, numbers = proxy_connector(client, 1)
    assert decide(server.url, caller, numbers[0])["status"] == 403


def test_a_number_that_is_no_proxy_number_is_refused_with_404(
    server: ChimeProxyServer, client: Any
) -> None:
    a = person()
    unowned = "+19135550000"
    owned_unassociated = order_numbers(client, 1, AreaCode="312")[0]
    plain_connector = client.create_voice_connector(Name="no proxy", RequireEncryption=False)
    plain_id = plain_connector["VoiceConnector"]["VoiceConnectorId"]
    without_proxy = order_numbers(client, 1, AreaCode="415")[0]
    client.associate_phone_numbers_with_voice_connector(
        VoiceConnectorId=plain_id, E164PhoneNumbers=[without_proxy]
    )
    for called in (unowned, owned_unassociated, without_proxy, "not a number"):
        answer = decide(server.url, a, called)
        assert (answer["action"], answer["status"]) == ("reject", 404), called


@pytest.mark.parametrize(
    ("capabilities", "kind", "word"), [(("Voice",), "sms", "SMS"), (("SMS",), "voice", "Voice")]
)
def test_a_session_refuses_the_kind_it_does_not_allow(
    server: ChimeProxyServer, client: Any, capabilities: tuple[str, ...], kind: str, word: str
) -> None:
    connector_id, _ = proxy_connector(client, 1)
    a, b = person(), person()
    _, p = session_between(client, connector_id, a, b, capabilities)
    answer = decide(server.url, a, p, kind)
    assert (answer["action"], answer["status"]) == ("reject", 488)
    assert word in answer["reason"]


def test_out_of_session_contacts_go_to_the_fallback_number_shown_as_p(
    server: ChimeProxyServer, client: Any
) -> None:
    connector_id, _ = proxy_connector(client, 1)
    fallback = "+18005550199"
    with_fallback(client, connector_id, fallback)
    a, b = person(), person()
    _, p = session_between(client, connector_id, a, b, ("Voice",))
    stranger = decide(server.url, person(), p)
    assert set(stranger) == {
        "action", "target", "caller_id", "interaction_id", "require_encryption",
        "max_duration_seconds",
    }  # fmt: skip
    assert stranger["max_duration_seconds"] is None  # no session, no maximum call length
    assert (stranger["action"], stranger["target"], stranger["caller_id"]) == (
        "fallback", fallback, p,
    )  # fmt: skip
    wrong_kind = decide(server.url, a, p, "sms")
    assert (wrong_kind["action"], wrong_kind["target"]) == ("fallback", fallback)
    assert decide(server.url, a, p)["action"] == "connect"


def test_a_deleted_session_no_longer_routes(server: ChimeProxyServer, client: Any) -> None:
    connector_id, _ = proxy_connector(client, 1)
    a, b = person(), person()
    session_id, p = session_between(client, connector_id, a, b)
    client.delete_proxy_session(VoiceConnectorId=connector_id, ProxySessionId=session_id)
    assert decide(server.url, a, p)["status"] == 403


# Expiry. Moving the module server's clock is harmless: every test makes its own sessions.


def test_an_expired_session_answers_480_and_stays_closed(
    server: ChimeProxyServer, client: Any
) -> None:
    connector_id, _ = proxy_connector(client, 1, expiry=10)
    a, b = person(), person()
    session_id, p = session_between(client, connector_id, a, b)
    other_id, _ = session_between(client, connector_id, person(), person())
    decide(server.url, a, p)  # InProgress

    server.advance(10 * 60)
    for caller in (a, b):
        answer = decide(server.url, caller, p)
        assert (answer["action"], answer["status"]) == ("reject", 480)
        assert "closed" in answer["reason"]
    # Lazily expired sessions are neither routed nor moved to InProgress.
    assert status_of(client, connector_id, session_id) == "Closed"
    assert status_of(client, connector_id, other_id) == "Closed"
    assert decide(server.url, person(), p)["status"] == 403


def test_a_session_closed_by_an_update_answers_480_then_the_fallback(
    server: ChimeProxyServer, client: Any
) -> None:
    """Closed by UpdateProxySession (routes released at once, not merely expired)."""
    connector_id, _ = proxy_connector(client, 1)
    a, b = person(), person()
    session_id, p = session_between(client, connector_id, a, b)
    server.advance(5 * 60)
    client.update_proxy_session(
        VoiceConnectorId=connector_id,
        ProxySessionId=session_id,
        Capabilities=["Voice"],
        ExpiryMinutes=1,
    )
    assert status_of(client, connector_id, session_id) == "Closed"
    assert decide(server.url, b, p)["status"] == 480

    with_fallback(client, connector_id, "+18005550123")
    answer = decide(server.url, b, p)
    assert (answer["action"], answer["target"], answer["caller_id"]) == (
        "fallback", "+18005550123", p,
    )  # fmt: skip


def test_a_new_session_on_the_same_number_routes_again(
    server: ChimeProxyServer, client: Any
) -> None:
    connector_id, _ = proxy_connector(client, 1, expiry=5)
    a, b, c = person(), person(), person()
    _, p = session_between(client, connector_id, a, b)
    server.advance(5 * 60)
    _, p2 = session_between(client, connector_id, a, c)
    assert p2 == p
    answer = decide(server.url, a, p)
    assert (answer["action"], answer["target"]) == ("connect", c)
    assert decide(server.url, b, p)["status"] == 480


# /end.


def test_end_records_the_outcome_once(server: ChimeProxyServer, client: Any) -> None:
    connector_id, _ = proxy_connector(client, 1)
    a, b = person(), person()
    session_id, p = session_between(client, connector_id, a, b)
    interaction_id = decide(server.url, a, p)["interaction_id"]
    first = end(server.url, interaction_id, outcome="completed", duration_seconds=42.5)
    assert (first.status_code, first.content) == (204, b"")
    ended = interactions(server.url, connector_id, session_id)
    again = end(server.url, interaction_id, outcome="failed", duration_seconds=None)
    assert (again.status_code, again.content) == (204, b"")
    # The first report won: the second changed nothing.
    assert interactions(server.url, connector_id, session_id) == ended
    (call,) = ended
    assert call["InteractionId"] == interaction_id
    assert (call["Outcome"], call["DurationSeconds"]) == ("completed", 42.5)
    assert call["EndedTimestamp"] is not None

    no_duration = decide(server.url, b, p)["interaction_id"]
    assert end(server.url, no_duration, outcome="no-answer").status_code == 204
    calls = interactions(server.url, connector_id, session_id)
    assert calls[0] == call
    assert (calls[1]["InteractionId"], calls[1]["Outcome"], calls[1]["DurationSeconds"]) == (
        no_duration,
        "no-answer",
        None,
    )


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "outcome must be one of"),
        ({"outcome": "hung-up"}, "outcome must be one of"),
        ({"outcome": "completed", "duration_seconds": -1}, "duration_seconds"),
        ({"outcome": "completed", "duration_seconds": "12"}, "duration_seconds"),
        ({"outcome": "completed", "duration_seconds": True}, "duration_seconds"),
    ],
)
def test_end_refuses_a_malformed_body(
    server: ChimeProxyServer, client: Any, body: dict[str, Any], fragment: str
) -> None:
    connector_id, _ = proxy_connector(client, 1)
    a, b = person(), person()
    session_id, p = session_between(client, connector_id, a, b)
    interaction_id = decide(server.url, a, p)["interaction_id"]
    ongoing = interactions(server.url, connector_id, session_id)
    assert_refused(end(server.url, interaction_id, **body), 400, "BadRequestException", fragment)
    # Still ongoing: the refused report recorded nothing.
    assert interactions(server.url, connector_id, session_id) == ongoing
    assert ongoing[0]["Outcome"] is None


def test_end_of_an_unknown_interaction_is_404(server: ChimeProxyServer) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    answer = end(server.url, unknown, outcome="completed")
    assert_refused(answer, 404, "NotFoundException", unknown)


# Input.


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"not json", "must be a JSON object"),
        (b"[]", "must be a JSON object"),
        (b'{"called": "+12065550100", "kind": "voice"}', "caller and called must be strings"),
        (b'{"caller": "+12065550100", "kind": "voice"}', "caller and called must be strings"),
        (b'{"caller": "+12065550100", "called": "+12065550101"}', "kind must be one of"),
        (b'{"caller": "+12065550100", "called": "+12065550101", "kind": "fax"}',
         "kind must be one of"),
        (b'{"caller": "+12065550100", "called": "+12065550101", "kind": "voice", "call_id": 7}',
         "call_id must be a string"),
        (b'{"caller": 12065550100, "called": "+12065550101", "kind": "voice"}',
         "caller and called must be strings"),
    ],
)  # fmt: skip
def test_route_refuses_a_malformed_body(
    server: ChimeProxyServer, body: bytes, fragment: str
) -> None:
    answer = httpx.post(f"{server.url}/_chimeproxy/route", content=body, timeout=10)
    assert_refused(answer, 400, "BadRequestException", fragment)


def test_route_only_answers_post(server: ChimeProxyServer) -> None:
    answer = httpx.get(f"{server.url}/_chimeproxy/route", timeout=10)
    assert_refused(answer, 404, "UnknownOperationException", "GET /_chimeproxy/route")


# Access.


@pytest.fixture(scope="module")
def secret_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    directory = tmp_path_factory.mktemp("secret")
    running = ChimeProxyServer(
        database=database_url(directory),
        env={"CHIMEPROXY_ROUTE_SECRET": SECRET},
        log_path=directory / "server.log",
    ).start()
    yield running
    running.stop()


def test_the_route_secret_is_required_when_set(secret_server: ChimeProxyServer) -> None:
    client = make_client(secret_server.url)
    connector_id, _ = proxy_connector(client, 1)
    a, b = person(), person()
    session_id, p = session_between(client, connector_id, a, b)
    body = {"caller": a, "called": p, "kind": "voice"}
    url = f"{secret_server.url}/_chimeproxy/route"
    for headers in ({}, {"X-Chimeproxy-Route-Secret": "wrong"}, {"X-Chimeproxy-Route-Secret": ""}):
        answer = httpx.post(url, json=body, headers=headers, timeout=10)
        assert_refused(answer, 403, "ForbiddenException")
    # Refused before routing: nothing recorded, the session not started.
    assert interactions(secret_server.url, connector_id, session_id) == []
    assert status_of(client, connector_id, session_id) == "Open"
    granted = httpx.post(url, json=body, headers={"X-Chimeproxy-Route-Secret": SECRET}, timeout=10)
    assert granted.status_code == 200
    interaction_id = granted.json()["interaction_id"]

    end_url = f"{secret_server.url}/_chimeproxy/interactions/{interaction_id}/end"
    answer = httpx.post(end_url, json={"outcome": "completed"}, timeout=10)
    assert_refused(answer, 403, "ForbiddenException")
    assert interactions(secret_server.url, connector_id, session_id)[0]["Outcome"] is None
    ended = httpx.post(
        end_url,
        json={"outcome": "completed"},
        headers={"X-Chimeproxy-Route-Secret": SECRET},
        timeout=10,
    )
    assert ended.status_code == 204


def test_http_basic_auth_carries_the_secret_too(secret_server: ChimeProxyServer) -> None:
    """For SMS providers whose webhooks can only put credentials in the URL."""
    url = f"{secret_server.url}/_chimeproxy/route"
    body = {"caller": person(), "called": "+19135550000", "kind": "sms"}
    assert httpx.post(url, json=body, auth=("chimeproxy", SECRET), timeout=10).status_code == 200
    answer = httpx.post(url, json=body, auth=("chimeproxy", "nope"), timeout=10)
    assert_refused(answer, 403, "ForbiddenException")


def _asgi_route(tmp_path: Path, client_host: str, settings: dict[str, Any]) -> httpx.Response:
    """POST /route to an in-process app as if from `client_host` (no real network needed)."""

    async def run() -> httpx.Response:
        app = ChimeProxyApp(Settings(database=database_url(tmp_path), **settings))
        await app.startup()
        try:
            transport = httpx.ASGITransport(app=app, client=(client_host, 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://chimeproxy") as c:
                return await c.post(
                    "/_chimeproxy/route",
                    json={"caller": "+12065550100", "called": "+19135550000", "kind": "voice"},
                    headers={"X-Chimeproxy-Route-Secret": SECRET},
                )
        finally:
            await app.shutdown()

    return asyncio.run(run())


def test_without_a_secret_only_loopback_callers_are_answered(tmp_path: Path) -> None:
    assert _asgi_route(tmp_path, "127.0.0.1", {}).status_code == 200
    assert _asgi_route(tmp_path, "::1", {}).status_code == 200
    answer = _asgi_route(tmp_path, "203.0.113.7", {})
    assert_refused(answer, 403, "ForbiddenException", "CHIMEPROXY_ROUTE_SECRET")


def test_with_a_secret_other_hosts_are_answered(tmp_path: Path) -> None:
    answer = _asgi_route(tmp_path, "203.0.113.7", {"route_secret": SECRET})
    assert answer.status_code == 200
    assert answer.json()["status"] == 404
