"""Proxy-session lifecycle with the server's clock: expiry, updates, retention.

Every test here moves the module server's clock forward, and every test tolerates that:
each works on its own voice connector and measures time from what the server reports.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from chimeproxy.testing import ChimeProxyServer
from tests.conftest import database_url, make_client
from tests.integration.helpers import (
    assert_refused,
    create_session,
    person,
    proxy_connector,
    proxy_number,
    refused,
)

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
MINUTE_MS = 60_000
DAY_MS = 86_400_000


def to_ms(stamp: str) -> int:
    """`2020-04-15T16:10:10.288Z` as milliseconds since the epoch."""
    assert TIMESTAMP.match(stamp), stamp
    moment = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")
    seconds = int((moment - datetime(1970, 1, 1)).total_seconds())
    return seconds * 1000 + moment.microsecond // 1000


def wire_session(server: ChimeProxyServer, connector_id: str, session_id: str) -> httpx.Response:
    """GetProxySession over raw HTTP, to see the timestamps to the millisecond as sent."""
    return httpx.get(
        f"{server.url}/voice-connectors/{connector_id}/proxy-sessions/{session_id}", timeout=10
    )


def get(server: ChimeProxyServer, connector_id: str, session_id: str) -> dict[str, Any]:
    answer = wire_session(server, connector_id, session_id)
    assert answer.status_code == 200, answer.text
    return answer.json()["ProxySession"]


def listed(client: Any, connector_id: str, status: str | None = None) -> list[str]:
    """The ids a (single-page) listing returns."""
    options = {"Status": status} if status else {}
    page = client.list_proxy_sessions(VoiceConnectorId=connector_id, **options)
    assert "NextToken" not in page
    return [s["ProxySessionId"] for s in page["ProxySessions"]]


def test_expiry_closes_at_created_plus_expiry_exactly(
    server: ChimeProxyServer, client: Any
) -> None:
    connector_id, numbers = proxy_connector(client, pool=1)
    a, b = person(), person()
    session = create_session(client, connector_id, a, b, ExpiryMinutes=1)
    session_id = session["ProxySessionId"]
    created = to_ms(get(server, connector_id, session_id)["CreatedTimestamp"])
    assert get(server, connector_id, session_id)["Status"] == "Open"
    assert listed(client, connector_id, "Open") == [session_id]

    server.advance(61)
    closed = get(server, connector_id, session_id)
    assert closed["Status"] == "Closed"
    assert to_ms(closed["EndedTimestamp"]) == created + MINUTE_MS
    assert closed["UpdatedTimestamp"] == closed["CreatedTimestamp"]
    assert closed["ExpiryMinutes"] == 1
    assert listed(client, connector_id, "Open") == []
    assert listed(client, connector_id, "InProgress") == []
    assert listed(client, connector_id, "Closed") == [session_id]
    assert listed(client, connector_id) == [session_id]
    boto_view = client.list_proxy_sessions(VoiceConnectorId=connector_id)["ProxySessions"][0]
    assert boto_view["Status"] == "Closed"

    # However late anyone looks, it ended at the same instant.
    server.advance(3600)
    assert to_ms(get(server, connector_id, session_id)["EndedTimestamp"]) == created + MINUTE_MS

    before = get(server, connector_id, session_id)
    with refused(400, "BadRequestException", session_id, "is Closed and cannot change"):
        client.update_proxy_session(
            VoiceConnectorId=connector_id, ProxySessionId=session_id, Capabilities=["Voice"]
        )
    with refused(400, "BadRequestException", session_id, "is Closed and cannot change"):
        client.update_proxy_session(
            VoiceConnectorId=connector_id,
            ProxySessionId=session_id,
            Capabilities=["Voice"],
            ExpiryMinutes=720,
        )
    assert get(server, connector_id, session_id) == before
    assert before["Status"] == "Closed"

    # The only number is free again for the same participant, and for the same pair.
    again = create_session(client, connector_id, a, person())
    assert proxy_number(again) == numbers[0]
    pair = create_session(client, connector_id, b, person())
    assert proxy_number(pair) == numbers[0]


def test_default_expiry_comes_from_the_configuration(server: ChimeProxyServer, client: Any) -> None:
    connector_id, _ = proxy_connector(client, pool=1, expiry=2)
    session = create_session(client, connector_id, person(), person())
    session_id = session["ProxySessionId"]
    created = to_ms(get(server, connector_id, session_id)["CreatedTimestamp"])
    assert session["ExpiryMinutes"] == 2  # not sent: the effective expiry, the default
    # A later default does not change a session that exists.
    client.put_voice_connector_proxy(
        VoiceConnectorId=connector_id,
        DefaultSessionExpiryMinutes=30,
        PhoneNumberPoolCountries=["US"],
    )
    server.advance(61)
    assert get(server, connector_id, session_id)["Status"] == "Open"
    server.advance(60)
    closed = get(server, connector_id, session_id)
    assert closed["Status"] == "Closed"
    assert closed["ExpiryMinutes"] == 2
    assert to_ms(closed["EndedTimestamp"]) == created + 2 * MINUTE_MS


def test_stickiness_survives_expiry(server: ChimeProxyServer, client: Any) -> None:
    connector_id, _ = proxy_connector(client, pool=3)
    a, b = person(), person()
    first = create_session(client, connector_id, a, b, ExpiryMinutes=1)
    server.advance(61)
    again = create_session(client, connector_id, b, a)
    assert proxy_number(again) == proxy_number(first)


def test_delete_configuration_after_sessions_expired(server: ChimeProxyServer, client: Any) -> None:
    connector_id, _ = proxy_connector(client, pool=2)
    create_session(client, connector_id, person(), person(), ExpiryMinutes=1)
    create_session(client, connector_id, person(), person(), ExpiryMinutes=2)
    proxy = client.get_voice_connector_proxy(VoiceConnectorId=connector_id)["Proxy"]
    with refused(400, "BadRequestException", "Open or InProgress sessions"):
        client.delete_voice_connector_proxy(VoiceConnectorId=connector_id)
    server.advance(61)
    with refused(400, "BadRequestException", "Open or InProgress sessions"):
        client.delete_voice_connector_proxy(VoiceConnectorId=connector_id)
    assert client.get_voice_connector_proxy(VoiceConnectorId=connector_id)["Proxy"] == proxy
    server.advance(60)
    client.delete_voice_connector_proxy(VoiceConnectorId=connector_id)
    with refused(404, "NotFoundException", "has no proxy configuration"):
        client.get_voice_connector_proxy(VoiceConnectorId=connector_id)


def test_update_moves_updated_timestamp_and_counts_expiry_from_creation(
    server: ChimeProxyServer, client: Any
) -> None:
    connector_id, _ = proxy_connector(client, pool=1)
    session = create_session(client, connector_id, person(), person(), ExpiryMinutes=10)
    session_id = session["ProxySessionId"]
    created = to_ms(get(server, connector_id, session_id)["CreatedTimestamp"])

    server.advance(5 * 60)
    answer = client.update_proxy_session(
        VoiceConnectorId=connector_id,
        ProxySessionId=session_id,
        Capabilities=["SMS", "Voice"],
        ExpiryMinutes=6,
    )
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 201
    updated = get(server, connector_id, session_id)
    assert updated["Status"] == "Open"
    assert updated["ExpiryMinutes"] == 6
    assert updated["Capabilities"] == ["SMS", "Voice"]
    assert to_ms(updated["CreatedTimestamp"]) == created
    assert to_ms(updated["UpdatedTimestamp"]) >= created + 5 * 60_000
    assert updated["EndedTimestamp"] is None

    # 6 minutes from creation, not from the update: closed 61 s later.
    server.advance(61)
    closed = get(server, connector_id, session_id)
    assert closed["Status"] == "Closed"
    assert to_ms(closed["EndedTimestamp"]) == created + 6 * MINUTE_MS
    assert closed["UpdatedTimestamp"] == updated["UpdatedTimestamp"]


def test_update_to_an_expiry_already_past_closes_at_the_update(
    server: ChimeProxyServer, client: Any
) -> None:
    connector_id, numbers = proxy_connector(client, pool=1)
    a = person()
    session = create_session(client, connector_id, a, person(), ExpiryMinutes=10)
    session_id = session["ProxySessionId"]
    created = to_ms(get(server, connector_id, session_id)["CreatedTimestamp"])
    before = server.advance(3 * 60)

    answer = client.update_proxy_session(
        VoiceConnectorId=connector_id,
        ProxySessionId=session_id,
        Capabilities=["Voice"],
        ExpiryMinutes=2,
    )["ProxySession"]
    assert answer["Status"] == "Closed"
    closed = get(server, connector_id, session_id)
    assert closed["Status"] == "Closed"
    assert closed["ExpiryMinutes"] == 2
    assert closed["EndedTimestamp"] == closed["UpdatedTimestamp"]
    ended = to_ms(closed["EndedTimestamp"])
    assert ended >= before >= created + 3 * MINUTE_MS
    assert listed(client, connector_id, "Closed") == [session_id]
    assert listed(client, connector_id, "Open") == []

    # Later reads keep the update instant; the number is free again for the participant.
    server.advance(600)
    assert to_ms(get(server, connector_id, session_id)["EndedTimestamp"]) == ended
    assert proxy_number(create_session(client, connector_id, a, person())) == numbers[0]
    with refused(400, "BadRequestException", session_id, "is Closed and cannot change"):
        client.update_proxy_session(
            VoiceConnectorId=connector_id, ProxySessionId=session_id, Capabilities=["SMS"]
        )
    assert get(server, connector_id, session_id) == closed


def test_delete_of_a_closed_session(server: ChimeProxyServer, client: Any) -> None:
    connector_id, _ = proxy_connector(client, pool=1)
    session = create_session(client, connector_id, person(), person(), ExpiryMinutes=1)
    server.advance(61)
    client.delete_proxy_session(
        VoiceConnectorId=connector_id, ProxySessionId=session["ProxySessionId"]
    )
    assert listed(client, connector_id, "Closed") == []
    answer = wire_session(server, connector_id, session["ProxySessionId"])
    assert_refused(answer, 404, "NotFoundException", session["ProxySessionId"])


# Retention: a server of its own, so that a day can pass.


@pytest.fixture(params=["lazy", "swept"])
def retention_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ChimeProxyServer]:
    """Retention 1 day; 'swept' runs the sweeper every 50 ms so stored state changes too."""
    args = ["--clock-control", "--retention-days", "1"]
    if request.param == "swept":
        args += ["--sweep-interval", "0.05"]
    own = ChimeProxyServer(
        database=database_url(tmp_path), extra_args=args, log_path=tmp_path / "log"
    ).start()
    try:
        yield own
    finally:
        own.stop()


def _settle() -> None:
    """Give a fast sweeper the time to run at the new clock (harmless without one)."""
    time.sleep(0.2)


def test_closed_sessions_are_kept_for_the_retention_period(
    retention_server: ChimeProxyServer,
) -> None:
    server = retention_server
    client = make_client(server.url)
    connector_id, _ = proxy_connector(client, pool=2)
    expired = create_session(client, connector_id, person(), person(), ExpiryMinutes=1)[
        "ProxySessionId"
    ]
    updated = create_session(client, connector_id, person(), person(), ExpiryMinutes=10)[
        "ProxySessionId"
    ]
    longest = create_session(client, connector_id, person(), person(), ExpiryMinutes=720)
    created = to_ms(get(server, connector_id, expired)["CreatedTimestamp"])
    longest_created = to_ms(
        get(server, connector_id, longest["ProxySessionId"])["CreatedTimestamp"]
    )

    now = server.advance(5 * 60)
    client.update_proxy_session(
        VoiceConnectorId=connector_id,
        ProxySessionId=updated,
        Capabilities=["Voice"],
        ExpiryMinutes=1,
    )
    _settle()
    expired_end = to_ms(get(server, connector_id, expired)["EndedTimestamp"])
    updated_end = to_ms(get(server, connector_id, updated)["EndedTimestamp"])
    assert expired_end == created + MINUTE_MS
    assert updated_end >= now

    # A minute before a day has passed since the first ended (a minute: the server's clock
    # goes on running while a loaded machine gets to the checks): all three (the 720-minute one
    # closed half a day in) are readable and listed.
    now = server.advance((expired_end + DAY_MS - now - 60_000) / 1000)
    _settle()
    assert get(server, connector_id, expired)["Status"] == "Closed"
    assert to_ms(get(server, connector_id, expired)["EndedTimestamp"]) == expired_end
    longest_id = longest["ProxySessionId"]
    assert set(listed(client, connector_id, "Closed")) == {expired, updated, longest_id}
    assert listed(client, connector_id, "Open") == []

    # Past it: the expired one is gone, the one closed later by its update (four minutes
    # later) is not yet.
    now = server.advance(61)
    _settle()
    assert_refused(wire_session(server, connector_id, expired), 404, "NotFoundException", expired)
    with refused(404, "NotFoundException", expired):
        client.get_proxy_session(VoiceConnectorId=connector_id, ProxySessionId=expired)
    assert set(listed(client, connector_id, "Closed")) == {updated, longest_id}
    assert set(listed(client, connector_id)) == {updated, longest_id}
    assert to_ms(get(server, connector_id, updated)["EndedTimestamp"]) == updated_end

    server.advance((updated_end + DAY_MS - now) / 1000 + 1)
    _settle()
    assert_refused(wire_session(server, connector_id, updated), 404, "NotFoundException", updated)
    # The 720-minute session ended half a day after creation and is still retained.
    assert listed(client, connector_id, "Closed") == [longest_id]
    assert listed(client, connector_id) == [longest_id]
    ended = to_ms(get(server, connector_id, longest_id)["EndedTimestamp"])
    assert ended == longest_created + 720 * MINUTE_MS
