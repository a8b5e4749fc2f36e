"""The interaction listings (SigV4-authenticated extension endpoints) against a strict-mode
server: what the data plane recorded, scoped to the caller's account and region, paginated like
the API."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from chimeproxy.store.database import Database
from chimeproxy.store.schema import metadata
from chimeproxy.testing import ChimeProxyServer
from tests.conftest import database_url, write_credentials
from tests.integration.helpers import assert_refused, client_for, decide, new_session, person

ALPHA = ("AKIDALPHA", "alpha-secret", "111122223333")
BETA = ("AKIDBETA", "beta-secret", "444455556666")


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChimeProxyServer]:
    directory = tmp_path_factory.mktemp("strict")
    credentials = write_credentials(directory, ALPHA, BETA)
    running = ChimeProxyServer(
        database=database_url(directory),
        extra_args=["--auth", "strict", "--credentials", str(credentials)],
        log_path=directory / "server.log",
    ).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(strict_server: ChimeProxyServer) -> Any:
    return client_for(strict_server, ALPHA)


def signed_get(
    url: str, credentials: tuple[str, str, str] = ALPHA, region: str = "us-east-1"
) -> httpx.Response:
    request = AWSRequest(method="GET", url=url)
    SigV4Auth(Credentials(credentials[0], credentials[1]), "chime", region).add_auth(request)
    return httpx.get(url, headers=dict(request.headers.items()), timeout=10)


def session_listing(server: ChimeProxyServer, connector_id: str, session_id: str) -> str:
    return (
        f"{server.url}/_chimeproxy/voice-connectors/{connector_id}/proxy-sessions/{session_id}"
        "/interactions"
    )


def all_pages(url: str, page_size: int) -> tuple[list[dict[str, Any]], int]:
    """Every item of a listing followed through next-token, and the number of pages."""
    items: list[dict[str, Any]] = []
    token = None
    pages = 0
    while True:
        query = f"?max-results={page_size}" + (f"&next-token={token}" if token else "")
        answer = signed_get(url + query)
        assert answer.status_code == 200, answer.text
        pages += 1
        items += answer.json()["Interactions"]
        token = answer.json()["NextToken"]
        if token is None:
            return items, pages


def test_routed_calls_are_listed_for_their_session(
    strict_server: ChimeProxyServer, client: Any
) -> None:
    connector_id, session_id, a, b, p = new_session(client, ("Voice",))
    first = decide(strict_server.url, a, p)
    second = decide(strict_server.url, b, p)
    ended = httpx.post(
        f"{strict_server.url}/_chimeproxy/interactions/{first['interaction_id']}/end",
        json={"outcome": "completed", "duration_seconds": 61.5},
        timeout=10,
    )
    assert ended.status_code == 204

    answer = signed_get(session_listing(strict_server, connector_id, session_id))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    document = answer.json()
    assert list(document) == ["Interactions", "NextToken"]
    assert document["NextToken"] is None
    listed = document["Interactions"]
    assert [i["InteractionId"] for i in listed] == [
        first["interaction_id"],
        second["interaction_id"],
    ]
    call = listed[0]
    assert list(call) == sorted(call)
    assert call["ProxySessionId"] == session_id
    assert call["VoiceConnectorId"] == connector_id
    assert (call["Kind"], call["Action"], call["Direction"]) == ("voice", "connect", "a-to-b")
    assert (call["FromPhoneNumber"], call["ProxyPhoneNumber"], call["ToPhoneNumber"]) == (a, p, b)
    assert (call["Outcome"], call["DurationSeconds"]) == ("completed", 61.5)
    assert call["StartedTimestamp"].endswith("Z") and call["EndedTimestamp"].endswith("Z")
    assert call["OutOfSession"] is None and call["RejectStatus"] is None
    ongoing = listed[1]
    assert (ongoing["Direction"], ongoing["Outcome"], ongoing["EndedTimestamp"]) == (
        "b-to-a",
        None,
        None,
    )
    for item in listed:  # time-ordered ids (uuids.time_ordered_uuid) of their start
        started = datetime.fromisoformat(item["StartedTimestamp"].replace("Z", "+00:00"))
        millis = (started - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
        assert uuid.UUID(item["InteractionId"]).version == 7
        assert uuid.UUID(item["InteractionId"]).int >> 80 == millis


def test_the_listing_needs_a_valid_signature(strict_server: ChimeProxyServer, client: Any) -> None:
    connector_id, session_id, *_ = new_session(client, ("Voice",))
    url = session_listing(strict_server, connector_id, session_id)
    unsigned = httpx.get(url, timeout=10)
    assert_refused(unsigned, 403, "MissingAuthenticationTokenException")
    wrong = signed_get(url, (ALPHA[0], "not-the-secret", ALPHA[2]))
    assert_refused(wrong, 403, "InvalidSignatureException")
    assert signed_get(url).status_code == 200


def test_other_accounts_and_regions_do_not_see_them(
    strict_server: ChimeProxyServer, client: Any
) -> None:
    connector_id, session_id, a, _, p = new_session(client, ("Voice",))
    decide(strict_server.url, a, p)
    url = session_listing(strict_server, connector_id, session_id)
    for answer in (signed_get(url, BETA), signed_get(url, region="eu-west-1")):
        assert_refused(answer, 404, "NotFoundException", connector_id)


def test_pagination_covers_every_interaction_once(
    strict_server: ChimeProxyServer, client: Any
) -> None:
    connector_id, session_id, a, b, p = new_session(client, ("Voice",))
    routed = [decide(strict_server.url, caller, p)["interaction_id"] for caller in (a, b, a, b, a)]
    url = session_listing(strict_server, connector_id, session_id)
    for size, page_count in ((1, 5), (2, 3), (5, 1), (100, 1)):
        items, pages = all_pages(url, size)
        assert [i["InteractionId"] for i in items] == routed, size
        assert pages == page_count


def test_bad_paging_parameters_are_refused(strict_server: ChimeProxyServer, client: Any) -> None:
    connector_id, session_id, a, b, p = new_session(client, ("Voice",))
    for caller in (a, b, a):
        decide(strict_server.url, caller, p)
    url = session_listing(strict_server, connector_id, session_id)
    token = signed_get(url + "?max-results=1").json()["NextToken"]
    assert token
    other_listing = f"{strict_server.url}/_chimeproxy/voice-connectors/{connector_id}/interactions"
    for bad, member in (
        ("?max-results=0", "max-results"),
        ("?max-results=101", "max-results"),
        ("?max-results=two", "max-results"),
        ("?next-token=forged", "NextToken"),
        (f"?next-token={token[:-2]}AA", "NextToken"),
    ):
        assert_refused(signed_get(url + bad), 400, "BadRequestException", member)
    answer = signed_get(f"{other_listing}?next-token={token}")
    assert_refused(answer, 400, "BadRequestException", "NextToken")
    # Another account cannot use this account's token either.
    answer = signed_get(f"{url}?next-token={token}", BETA)
    assert_refused(answer, 400, "BadRequestException", "NextToken")


def test_out_of_session_contacts_are_listed_for_the_voice_connector(
    strict_server: ChimeProxyServer, client: Any
) -> None:
    connector_id, session_id, a, _, p = new_session(client, ("Voice",))
    stranger = person()
    in_session = decide(strict_server.url, a, p)["interaction_id"]
    assert decide(strict_server.url, stranger, p)["status"] == 403
    assert decide(strict_server.url, a, p, "sms")["status"] == 488
    base = f"{strict_server.url}/_chimeproxy/voice-connectors/{connector_id}/interactions"

    everything = signed_get(base).json()["Interactions"]
    assert everything[0]["InteractionId"] == in_session
    assert len(everything) == 3
    outside = signed_get(base + "?out-of-session=true").json()["Interactions"]
    assert [(i["FromPhoneNumber"], i["RejectStatus"], i["OutOfSession"]) for i in outside] == [
        (stranger, 403, "not-a-participant"),
        (a, 488, "kind-not-allowed"),
    ]
    assert all(i["ProxySessionId"] is None and i["Action"] == "reject" for i in outside)
    assert all(i["Outcome"] == "rejected" and i["EndedTimestamp"] for i in outside)
    session_only = signed_get(session_listing(strict_server, connector_id, session_id))
    assert [i["InteractionId"] for i in session_only.json()["Interactions"]] == [in_session]


def test_unknown_and_deleted_sessions_are_not_found(
    strict_server: ChimeProxyServer, client: Any
) -> None:
    connector_id, session_id, a, _, p = new_session(client, ("Voice",))
    decide(strict_server.url, a, p)
    unknown_id = "00000000-0000-4000-8000-000000000000"
    unknown = session_listing(strict_server, connector_id, unknown_id)
    assert_refused(signed_get(unknown), 404, "NotFoundException", unknown_id)
    missing_connector = session_listing(strict_server, "zzzzzzzzzzzzzzzzzzzzz0", session_id)
    answer = signed_get(missing_connector)
    assert_refused(answer, 404, "NotFoundException", "zzzzzzzzzzzzzzzzzzzzz0")

    client.delete_proxy_session(VoiceConnectorId=connector_id, ProxySessionId=session_id)
    answer = signed_get(session_listing(strict_server, connector_id, session_id))
    assert_refused(answer, 404, "NotFoundException", session_id)
    # Deleting a session removes what was recorded of it.
    base = f"{strict_server.url}/_chimeproxy/voice-connectors/{connector_id}/interactions"
    assert signed_get(base).json()["Interactions"] == []


def test_the_migrations_build_the_schema_the_code_uses(tmp_path: Path) -> None:
    database = Database(database_url(tmp_path))
    database.upgrade()
    with database.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []
