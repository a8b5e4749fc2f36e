"""The proxy-session control plane through boto3's `chime-sdk-voice` client, end to end.

Nothing here moves the server's clock (see test_proxy_lifecycle.py for expiry and retention),
so every test can share the module's server, each on its own voice connector.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from chimeproxy.testing import ChimeProxyServer
from tests.conftest import database_url, make_client
from tests.integration.helpers import (
    all_sessions,
    assert_refused,
    create_session,
    make_connector,
    order_numbers,
    person,
    proxy_connector,
    proxy_number,
    refused,
)

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
UNKNOWN_CONNECTOR = "zzzzzzzzzzzzzzzzzzzzz0"
UNKNOWN_SESSION = "00000000-0000-4000-8000-000000000000"
SESSION_MEMBERS = {
    "Capabilities",
    "CreatedTimestamp",
    "EndedTimestamp",
    "ExpiryMinutes",
    "GeoMatchLevel",
    "GeoMatchParams",
    "Name",
    "NumberSelectionBehavior",
    "Participants",
    "ProxySessionId",
    "Status",
    "UpdatedTimestamp",
    "VoiceConnectorId",
}

_people = itertools.count()


def ids(sessions: list[dict[str, Any]]) -> list[str]:
    return [s["ProxySessionId"] for s in sessions]


def raw(server: ChimeProxyServer, method: str, path: str, body: Any = None) -> httpx.Response:
    """An unsigned request (the server is in open mode on loopback) for what boto3 won't send."""
    content = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if body is not None else {}
    return httpx.request(method, server.url + path, content=content, headers=headers, timeout=10)


# Proxy configuration.


def test_proxy_configuration_put_get_replace_delete(client: Any) -> None:
    connector_id = make_connector(client)
    with refused(404, "NotFoundException"):
        client.get_voice_connector_proxy(VoiceConnectorId=connector_id)

    fallback = person()
    put = client.put_voice_connector_proxy(
        VoiceConnectorId=connector_id,
        DefaultSessionExpiryMinutes=30,
        PhoneNumberPoolCountries=["US", "GB"],
        FallBackPhoneNumber=fallback,
    )
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 200
    expected = {
        "DefaultSessionExpiryMinutes": 30,
        "Disabled": False,
        "FallBackPhoneNumber": fallback,
        "PhoneNumberCountries": ["US", "GB"],
    }
    assert put["Proxy"] == expected
    assert client.get_voice_connector_proxy(VoiceConnectorId=connector_id)["Proxy"] == expected

    replaced = client.put_voice_connector_proxy(
        VoiceConnectorId=connector_id,
        DefaultSessionExpiryMinutes=720,
        PhoneNumberPoolCountries=["GB"],
        Disabled=True,
    )["Proxy"]
    assert replaced["PhoneNumberCountries"] == ["GB"]
    assert replaced["DefaultSessionExpiryMinutes"] == 720
    assert replaced["Disabled"] is True
    assert "FallBackPhoneNumber" not in replaced
    assert client.get_voice_connector_proxy(VoiceConnectorId=connector_id)["Proxy"] == replaced

    deleted = client.delete_voice_connector_proxy(VoiceConnectorId=connector_id)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with refused(404, "NotFoundException"):
        client.get_voice_connector_proxy(VoiceConnectorId=connector_id)


@pytest.mark.parametrize("minutes", [0, -1, 721])
def test_default_session_expiry_out_of_range(client: Any, minutes: int) -> None:
    connector_id = make_connector(client)
    with refused(400, "BadRequestException", "DefaultSessionExpiryMinutes"):
        client.put_voice_connector_proxy(
            VoiceConnectorId=connector_id,
            DefaultSessionExpiryMinutes=minutes,
            PhoneNumberPoolCountries=["US"],
        )
    with refused(404, "NotFoundException"):
        client.get_voice_connector_proxy(VoiceConnectorId=connector_id)


def test_delete_proxy_configuration_refused_while_a_session_is_open(client: Any) -> None:
    connector_id, _ = proxy_connector(client, pool=1)
    session = create_session(client, connector_id, person(), person())
    proxy = client.get_voice_connector_proxy(VoiceConnectorId=connector_id)["Proxy"]
    with refused(400, "BadRequestException", "Open"):
        client.delete_voice_connector_proxy(VoiceConnectorId=connector_id)
    assert client.get_voice_connector_proxy(VoiceConnectorId=connector_id)["Proxy"] == proxy
    assert all_sessions(client, connector_id) == [session]
    client.delete_proxy_session(
        VoiceConnectorId=connector_id, ProxySessionId=session["ProxySessionId"]
    )
    client.delete_voice_connector_proxy(VoiceConnectorId=connector_id)
    with refused(404, "NotFoundException"):
        client.get_voice_connector_proxy(VoiceConnectorId=connector_id)


# Creation.


def test_create_answers_201_with_one_shared_proxy_number(client: Any) -> None:
    connector_id, numbers = proxy_connector(client, pool=3)
    a, b = person(), person("415")
    session = create_session(client, connector_id, a.lstrip("+"), b)
    assert session["Participants"] == [
        {"PhoneNumber": a, "ProxyPhoneNumber": session["Participants"][0]["ProxyPhoneNumber"]},
        {"PhoneNumber": b, "ProxyPhoneNumber": session["Participants"][0]["ProxyPhoneNumber"]},
    ]
    assert proxy_number(session) in numbers
    assert session["Status"] == "Open"
    assert session["VoiceConnectorId"] == connector_id
    assert session["Capabilities"] == ["Voice"]
    assert session["CreatedTimestamp"] == session["UpdatedTimestamp"]
    # Not sent, so the configuration's default: always the effective expiry.
    assert session["ExpiryMinutes"] == 60
    uuid.UUID(session["ProxySessionId"])
    for member in (
        "Name",
        "NumberSelectionBehavior",
        "GeoMatchLevel",
        "GeoMatchParams",
        "EndedTimestamp",
    ):
        assert member not in session, member

    # Participants are answered by number, whatever order the request gave.
    other = create_session(client, connector_id, b, a)
    assert [p["PhoneNumber"] for p in other["Participants"]] == sorted([a, b])

    fetched = client.get_proxy_session(
        VoiceConnectorId=connector_id, ProxySessionId=session["ProxySessionId"]
    )["ProxySession"]
    assert fetched == session


def test_create_echoes_every_optional_member_it_was_given(client: Any) -> None:
    connector_id, numbers = proxy_connector(client, pool=2, AreaCode="206")
    session = create_session(
        client,
        connector_id,
        person(),
        person(),
        Name="Ride 42",
        ExpiryMinutes=90,
        Capabilities=["SMS", "Voice", "SMS"],
        NumberSelectionBehavior="AvoidSticky",
        GeoMatchLevel="AreaCode",
        GeoMatchParams={"Country": "US", "AreaCode": "206"},
    )
    assert session["Name"] == "Ride 42"
    assert session["ExpiryMinutes"] == 90
    assert session["Capabilities"] == ["SMS", "Voice"]
    assert session["NumberSelectionBehavior"] == "AvoidSticky"
    assert session["GeoMatchLevel"] == "AreaCode"
    assert session["GeoMatchParams"] == {"Country": "US", "AreaCode": "206"}
    assert proxy_number(session) in numbers
    fetched = client.get_proxy_session(
        VoiceConnectorId=connector_id, ProxySessionId=session["ProxySessionId"]
    )["ProxySession"]
    assert fetched == session


def test_a_participant_never_gets_the_same_proxy_number_twice_while_active(client: Any) -> None:
    connector_id, numbers = proxy_connector(client, pool=3)
    a = person()
    sessions = [create_session(client, connector_id, a, person()) for _ in range(3)]
    assert sorted(proxy_number(s) for s in sessions) == sorted(numbers)
    b = person()
    both = [create_session(client, connector_id, person(), b) for _ in range(3)]
    assert len({proxy_number(s) for s in both}) == 3


def test_least_recently_used_then_lowest_number(client: Any) -> None:
    connector_id, numbers = proxy_connector(client, pool=3)
    by_value = sorted(numbers, key=lambda n: int(n[1:]))
    # Never-allocated numbers first, lowest first; then the one allocated longest ago.
    given = [
        proxy_number(create_session(client, connector_id, person(), person())) for _ in range(4)
    ]
    assert given == [*by_value, by_value[0]]


def test_capabilities_are_answered_sorted_without_duplicates(client: Any) -> None:
    """docs/behaviour.md: Capabilities are answered sorted, duplicates removed."""
    connector_id, _ = proxy_connector(client, pool=1)
    session = create_session(
        client, connector_id, person(), person(), Capabilities=["Voice", "SMS"]
    )
    assert session["Capabilities"] == ["SMS", "Voice"]
    listed = all_sessions(client, connector_id)
    assert [s["Capabilities"] for s in listed] == [["SMS", "Voice"]]
    got = client.get_proxy_session(
        VoiceConnectorId=connector_id, ProxySessionId=session["ProxySessionId"]
    )["ProxySession"]
    assert got["Capabilities"] == ["SMS", "Voice"]
    updated = client.update_proxy_session(
        VoiceConnectorId=connector_id,
        ProxySessionId=session["ProxySessionId"],
        Capabilities=["SMS", "Voice", "SMS"],
    )["ProxySession"]
    assert updated["Capabilities"] == ["SMS", "Voice"]
    sms = create_session(client, connector_id, person(), person(), Capabilities=["SMS", "SMS"])
    assert sms["Capabilities"] == ["SMS"]


# Proxy number selection: stickiness.


def test_prefer_sticky_is_the_default_and_survives_deletion_in_either_order(client: Any) -> None:
    connector_id, _ = proxy_connector(client, pool=3)
    a, b = person(), person()
    first = create_session(client, connector_id, a, b)
    sticky = proxy_number(first)
    client.delete_proxy_session(
        VoiceConnectorId=connector_id, ProxySessionId=first["ProxySessionId"]
    )
    # The other numbers were never allocated, so least-recently-used alone would pick one of them.
    again = create_session(client, connector_id, b, a)
    assert proxy_number(again) == sticky
    client.delete_proxy_session(
        VoiceConnectorId=connector_id, ProxySessionId=again["ProxySessionId"]
    )
    explicit = create_session(client, connector_id, a, b, NumberSelectionBehavior="PreferSticky")
    assert proxy_number(explicit) == sticky


def test_prefer_sticky_falls_back_when_the_sticky_number_is_busy(client: Any) -> None:
    connector_id, numbers = proxy_connector(client, pool=2)
    a, b = person(), person()
    first = create_session(client, connector_id, a, b)
    sticky = proxy_number(first)
    # The pair still holds its session on `sticky`, so a second session must use the other one.
    second = create_session(client, connector_id, a, b)
    assert proxy_number(second) != sticky
    assert proxy_number(second) in numbers


def test_avoid_sticky_takes_a_new_number_and_the_old_one_when_it_is_all_that_is_left(
    client: Any,
) -> None:
    connector_id, numbers = proxy_connector(client, pool=2)
    a, b = person(), person()
    first = create_session(client, connector_id, a, b)
    used = proxy_number(first)
    client.delete_proxy_session(
        VoiceConnectorId=connector_id, ProxySessionId=first["ProxySessionId"]
    )
    avoided = create_session(client, connector_id, b, a, NumberSelectionBehavior="AvoidSticky")
    assert proxy_number(avoided) != used
    assert avoided["NumberSelectionBehavior"] == "AvoidSticky"
    client.delete_proxy_session(
        VoiceConnectorId=connector_id, ProxySessionId=avoided["ProxySessionId"]
    )

    # Both numbers are now "used" by the pair; keep `a` busy on the other one only.
    other = next(n for n in numbers if n != used)
    for _ in range(3):
        # A fresh partner each time: a repeated pair would stick to the same number.
        blocker = create_session(client, connector_id, a, person())
        if proxy_number(blocker) == other:
            break
        client.delete_proxy_session(
            VoiceConnectorId=connector_id, ProxySessionId=blocker["ProxySessionId"]
        )
    assert proxy_number(blocker) == other
    last = create_session(client, connector_id, a, b, NumberSelectionBehavior="AvoidSticky")
    assert proxy_number(last) == used


def test_avoid_sticky_with_a_single_number_reuses_it(client: Any) -> None:
    connector_id, numbers = proxy_connector(client, pool=1)
    a, b = person(), person()
    first = create_session(client, connector_id, a, b)
    client.delete_proxy_session(
        VoiceConnectorId=connector_id, ProxySessionId=first["ProxySessionId"]
    )
    again = create_session(client, connector_id, a, b, NumberSelectionBehavior="AvoidSticky")
    assert proxy_number(again) == numbers[0]


# Proxy number selection: geography.


@pytest.fixture(scope="module")
def geo_pool(client: Any) -> dict[str, Any]:
    """A connector whose pool holds two numbers each in 206, 415 (US) and GB; pool US+GB."""
    by_place = {
        "206": order_numbers(client, 2, AreaCode="206"),
        "415": order_numbers(client, 2, AreaCode="415"),
        "GB": order_numbers(client, 2, Country="GB"),
    }
    supported = client.list_supported_phone_number_countries(ProductType="VoiceConnector")
    assert "GB" in {c["CountryCode"] for c in supported["PhoneNumberCountries"]}
    connector_id, _ = proxy_connector(
        client, countries=("US", "GB"), numbers=[n for ns in by_place.values() for n in ns]
    )
    gb_area = client.get_phone_number(PhoneNumberId=by_place["GB"][0])["PhoneNumber"]
    assert gb_area["Country"] == "GB"
    return {"connector": connector_id, **by_place}


def test_geo_area_code_from_params(client: Any, geo_pool: dict[str, Any]) -> None:
    session = create_session(
        client,
        geo_pool["connector"],
        person("206"),
        person("206"),
        GeoMatchLevel="AreaCode",
        GeoMatchParams={"Country": "US", "AreaCode": "415"},
    )
    assert proxy_number(session) in geo_pool["415"]


def test_geo_area_code_from_the_first_participant(client: Any, geo_pool: dict[str, Any]) -> None:
    a, b = person("206"), person("415")
    ab = create_session(client, geo_pool["connector"], a, b, GeoMatchLevel="AreaCode")
    assert proxy_number(ab) in geo_pool["206"]
    assert "GeoMatchParams" not in ab
    ba = create_session(client, geo_pool["connector"], b, a, GeoMatchLevel="AreaCode")
    assert proxy_number(ba) in geo_pool["415"]


def test_geo_country_from_params_and_from_the_first_participant(
    client: Any, geo_pool: dict[str, Any]
) -> None:
    connector_id = geo_pool["connector"]
    to_gb = create_session(
        client,
        connector_id,
        person(),
        person(),
        GeoMatchLevel="Country",
        GeoMatchParams={"Country": "GB", "AreaCode": ""},
    )
    assert proxy_number(to_gb) in geo_pool["GB"]
    british = f"+442071{next(_people) % 1_000_000:06d}"  # London, outside the drama ranges
    from_first = create_session(client, connector_id, british, person(), GeoMatchLevel="Country")
    assert proxy_number(from_first) in geo_pool["GB"]
    american = create_session(client, connector_id, person(), british, GeoMatchLevel="Country")
    assert proxy_number(american) in geo_pool["206"] + geo_pool["415"]


def test_geo_match_is_a_hard_requirement(client: Any, geo_pool: dict[str, Any]) -> None:
    connector_id = geo_pool["connector"]
    before = all_sessions(client, connector_id)
    for level, params in (
        ("AreaCode", {"Country": "US", "AreaCode": "312"}),
        ("Country", {"Country": "FR", "AreaCode": ""}),
        ("AreaCode", {"Country": "GB", "AreaCode": "415"}),
    ):
        with refused(400, "BadRequestException", "exhausted", level):
            create_session(
                client, connector_id, person(), person(), GeoMatchLevel=level, GeoMatchParams=params
            )
    # A participant from 312 with AreaCode from the first participant: no such number either,
    # and the message says where the area code came from.
    with refused(
        400, "BadRequestException", "exhausted", "AreaCode US/312 (taken from the first participant"
    ):
        create_session(client, connector_id, person("312"), person(), GeoMatchLevel="AreaCode")

    # Both 415 numbers busy for `a`: a third 415 session is refused though 206 numbers are free.
    a = person("415")
    taken = [
        create_session(client, connector_id, a, person(), GeoMatchLevel="AreaCode")
        for _ in range(2)
    ]
    assert sorted(proxy_number(s) for s in taken) == sorted(geo_pool["415"])
    with refused(400, "BadRequestException", "exhausted"):
        create_session(client, connector_id, a, person(), GeoMatchLevel="AreaCode")
    assert all_sessions(client, connector_id) == [*before, *taken]
    # Without geo matching the same participant still gets a number (one of the others).
    loose = create_session(client, connector_id, a, person())
    assert proxy_number(loose) not in geo_pool["415"]


def test_geo_match_params_without_level(client: Any, geo_pool: dict[str, Any]) -> None:
    before = all_sessions(client, geo_pool["connector"])
    with refused(400, "BadRequestException", "GeoMatchLevel"):
        create_session(
            client,
            geo_pool["connector"],
            person(),
            person(),
            GeoMatchParams={"Country": "US", "AreaCode": "206"},
        )
    assert all_sessions(client, geo_pool["connector"]) == before


def test_pool_countries_limit_the_candidates(client: Any) -> None:
    gb = order_numbers(client, 1, Country="GB")
    connector_id, _ = proxy_connector(client, numbers=gb, countries=("US",))
    with refused(400, "BadRequestException", "exhausted", "pool countries"):
        create_session(client, connector_id, person(), person())
    assert all_sessions(client, connector_id) == []


# Exhaustion.


def test_exhaustion_is_per_participant(client: Any) -> None:
    connector_id, numbers = proxy_connector(client, pool=2)
    a = person()
    first = create_session(client, connector_id, a, person())
    second = create_session(client, connector_id, a, person())
    assert {proxy_number(first), proxy_number(second)} == set(numbers)

    b3 = person()
    with refused(400, "BadRequestException", "pool is exhausted for these participants") as refusal:
        create_session(client, connector_id, a, b3)
    assert a not in refusal.message and a.lstrip("+") not in refusal.message
    assert b3.lstrip("+") not in refusal.message
    # The refused attempt left nothing behind.
    assert len(all_sessions(client, connector_id)) == 2

    # An unrelated pair still gets a number at the same time.
    unrelated = create_session(client, connector_id, person(), person())
    assert proxy_number(unrelated) in numbers

    client.delete_proxy_session(
        VoiceConnectorId=connector_id, ProxySessionId=first["ProxySessionId"]
    )
    retried = create_session(client, connector_id, a, b3)
    assert proxy_number(retried) == proxy_number(first)


def test_exhaustion_counts_the_second_participant_too(client: Any) -> None:
    connector_id, numbers = proxy_connector(client, pool=2)
    a, b = person(), person()
    with_a = create_session(client, connector_id, a, person())
    # Least recently used first: the never-allocated number goes to the next session.
    with_b = create_session(client, connector_id, person(), b)
    assert {proxy_number(with_a), proxy_number(with_b)} == set(numbers)
    with refused(400, "BadRequestException", "pool is exhausted for these participants"):
        create_session(client, connector_id, a, b)
    assert all_sessions(client, connector_id) == [with_a, with_b]


# Reading, listing, updating, deleting.


def test_get_list_update_delete(client: Any) -> None:
    connector_id, numbers = proxy_connector(client, pool=1)
    a, b = person(), person()
    session = create_session(client, connector_id, a, b)
    session_id = session["ProxySessionId"]

    got = client.get_proxy_session(VoiceConnectorId=connector_id, ProxySessionId=session_id)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert got["ProxySession"] == session
    listed = client.list_proxy_sessions(VoiceConnectorId=connector_id)
    assert listed["ProxySessions"] == [session]
    assert "NextToken" not in listed

    updated = client.update_proxy_session(
        VoiceConnectorId=connector_id,
        ProxySessionId=session_id,
        Capabilities=["SMS", "Voice", "SMS"],
        ExpiryMinutes=15,
    )
    assert updated["ResponseMetadata"]["HTTPStatusCode"] == 201
    changed = updated["ProxySession"]
    assert changed["Capabilities"] == ["SMS", "Voice"]
    assert changed["ExpiryMinutes"] == 15
    assert changed["Status"] == "Open"
    assert changed["CreatedTimestamp"] == session["CreatedTimestamp"]
    assert changed["UpdatedTimestamp"] >= session["UpdatedTimestamp"]
    assert changed["Participants"] == session["Participants"]
    fetched = client.get_proxy_session(VoiceConnectorId=connector_id, ProxySessionId=session_id)
    assert fetched["ProxySession"] == changed

    # Capabilities alone replaces them and keeps the expiry.
    voice_only = client.update_proxy_session(
        VoiceConnectorId=connector_id, ProxySessionId=session_id, Capabilities=["Voice"]
    )["ProxySession"]
    assert voice_only["Capabilities"] == ["Voice"]
    assert voice_only["ExpiryMinutes"] == 15

    deleted = client.delete_proxy_session(VoiceConnectorId=connector_id, ProxySessionId=session_id)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with refused(404, "NotFoundException"):
        client.get_proxy_session(VoiceConnectorId=connector_id, ProxySessionId=session_id)
    with refused(404, "NotFoundException"):
        client.delete_proxy_session(VoiceConnectorId=connector_id, ProxySessionId=session_id)
    with refused(404, "NotFoundException"):
        client.update_proxy_session(
            VoiceConnectorId=connector_id, ProxySessionId=session_id, Capabilities=["Voice"]
        )
    assert client.list_proxy_sessions(VoiceConnectorId=connector_id)["ProxySessions"] == []
    # Its number (the only one) is free again for the same participants.
    assert proxy_number(create_session(client, connector_id, a, b)) == numbers[0]
    assert proxy_number(create_session(client, connector_id, person(), person())) == numbers[0]


def test_update_rejections(client: Any) -> None:
    connector_id, _ = proxy_connector(client, pool=1)
    session = create_session(client, connector_id, person(), person())
    session_id = session["ProxySessionId"]
    with refused(400, "BadRequestException", "Capabilities"):
        client.update_proxy_session(
            VoiceConnectorId=connector_id, ProxySessionId=session_id, Capabilities=[]
        )
    with refused(400, "BadRequestException", "ExpiryMinutes"):
        client.update_proxy_session(
            VoiceConnectorId=connector_id,
            ProxySessionId=session_id,
            Capabilities=["Voice"],
            ExpiryMinutes=721,
        )
    after = client.get_proxy_session(VoiceConnectorId=connector_id, ProxySessionId=session_id)
    assert after["ProxySession"] == session


def test_update_refuses_capabilities_the_number_cannot_serve(tmp_path: Path) -> None:
    """A voice-only number (from an imported carrier catalog) cannot take an SMS session."""
    catalog = tmp_path / "numbers.csv"
    catalog.write_text(
        "e164,country,type,capabilities\n"
        "+12065550150,US,Local,InboundCall|OutboundCall\n"
        "+12065550151,US,Local,InboundCall|OutboundCall|InboundSMS|OutboundSMS\n"
    )
    database = database_url(tmp_path)
    command = [sys.executable, "-m", "chimeproxy.cli", "numbers", "import", str(catalog)]
    subprocess.run([*command, "--database", database], check=True, capture_output=True)
    own = ChimeProxyServer(database=database, log_path=tmp_path / "log").start()
    try:
        client = make_client(own.url)
        order = client.create_phone_number_order(
            ProductType="VoiceConnector", E164PhoneNumbers=["+12065550150"]
        )["PhoneNumberOrder"]
        assert order["Status"] == "Successful"
        connector_id, _ = proxy_connector(client, numbers=["+12065550150"])
        session = create_session(client, connector_id, person(), person())
        assert proxy_number(session) == "+12065550150"
        with refused(400, "BadRequestException", "Capabilities"):
            client.update_proxy_session(
                VoiceConnectorId=connector_id,
                ProxySessionId=session["ProxySessionId"],
                Capabilities=["SMS", "Voice"],
            )
        got = client.get_proxy_session(
            VoiceConnectorId=connector_id, ProxySessionId=session["ProxySessionId"]
        )["ProxySession"]
        assert got["Capabilities"] == ["Voice"]
        # Creation filters on capabilities the same way.
        with refused(400, "BadRequestException", "exhausted"):
            create_session(client, connector_id, person(), person(), Capabilities=["SMS"])
        assert all_sessions(client, connector_id) == [got]
    finally:
        own.stop()


# Listing.


@pytest.fixture(scope="module")
def seven(client: Any) -> tuple[str, list[str]]:
    """A connector with seven Open sessions (and a deleted one); their ids in creation order."""
    connector_id, _ = proxy_connector(client, pool=1)
    created = [create_session(client, connector_id, person(), person()) for _ in range(8)]
    client.delete_proxy_session(
        VoiceConnectorId=connector_id, ProxySessionId=created.pop(3)["ProxySessionId"]
    )
    return connector_id, ids(created)


def _in_order(sessions: list[dict[str, Any]]) -> bool:
    keys = [(s["CreatedTimestamp"], s["ProxySessionId"]) for s in sessions]
    return keys == sorted(keys)


def test_list_returns_this_connectors_sessions_in_order(
    client: Any, seven: tuple[str, list[str]]
) -> None:
    connector_id, created = seven
    full = client.list_proxy_sessions(VoiceConnectorId=connector_id)
    assert "NextToken" not in full
    assert sorted(ids(full["ProxySessions"])) == sorted(created)
    assert _in_order(full["ProxySessions"])
    # Creation happened in this order, one request after another.
    assert [s["CreatedTimestamp"] for s in full["ProxySessions"]] == sorted(
        s["CreatedTimestamp"] for s in full["ProxySessions"]
    )


@pytest.mark.parametrize("size", [1, 2, 3])
def test_pages_concatenate_to_the_full_list(
    client: Any, seven: tuple[str, list[str]], size: int
) -> None:
    connector_id, _ = seven
    full = ids(client.list_proxy_sessions(VoiceConnectorId=connector_id)["ProxySessions"])
    pages: list[list[str]] = []
    token: str | None = None
    while True:
        page = client.list_proxy_sessions(
            VoiceConnectorId=connector_id,
            MaxResults=size,
            **({"NextToken": token} if token else {}),
        )
        pages.append(ids(page["ProxySessions"]))
        token = page.get("NextToken")
        if not token:
            break
    assert all(len(p) == size for p in pages[:-1])
    assert 1 <= len(pages[-1]) <= size
    joined = [i for p in pages for i in p]
    assert joined == full
    assert len(set(joined)) == len(joined) == 7
    # A page token of exactly the last item ends the listing with no empty page in between.
    assert len(pages) == -(-7 // size)


def test_page_token_survives_inserts_between_pages(client: Any) -> None:
    connector_id, _ = proxy_connector(client, pool=1)
    old = ids([create_session(client, connector_id, person(), person()) for _ in range(5)])
    first = client.list_proxy_sessions(VoiceConnectorId=connector_id, MaxResults=2)
    new = ids([create_session(client, connector_id, person(), person()) for _ in range(3)])
    seen = ids(first["ProxySessions"])
    token = first["NextToken"]
    while token:
        page = client.list_proxy_sessions(
            VoiceConnectorId=connector_id, MaxResults=2, NextToken=token
        )
        seen += ids(page["ProxySessions"])
        token = page.get("NextToken")
    assert seen == ids(all_sessions(client, connector_id))
    assert len(seen) == len(set(seen)) == 8
    assert set(seen[:5]) == set(old)
    assert set(seen[5:]) == set(new)


def test_bad_page_tokens(
    client: Any, server: ChimeProxyServer, seven: tuple[str, list[str]]
) -> None:
    connector_id, _ = seven
    token = client.list_proxy_sessions(VoiceConnectorId=connector_id, MaxResults=2)["NextToken"]
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    other_connector, _ = proxy_connector(client, pool=1)
    for forged in ("garbage", "!!!", flipped, token + "xyz", "x" * 3000, ""):
        with refused(400, "BadRequestException", "NextToken"):
            client.list_proxy_sessions(VoiceConnectorId=connector_id, NextToken=forged)
    # A real token, but for another listing: another connector, or another status filter.
    with refused(400, "BadRequestException", "NextToken"):
        client.list_proxy_sessions(VoiceConnectorId=other_connector, NextToken=token)
    with refused(400, "BadRequestException", "NextToken"):
        client.list_proxy_sessions(VoiceConnectorId=connector_id, Status="Open", NextToken=token)
    # Raw: the same through an unsigned request.
    assert_refused(
        raw(server, "GET", f"/voice-connectors/{connector_id}/proxy-sessions?next-token=abc"),
        400,
        "BadRequestException",
        "NextToken",
    )


@pytest.mark.parametrize("value", ["0", "101", "-1", "abc"])
def test_max_results_out_of_range(
    server: ChimeProxyServer, seven: tuple[str, list[str]], value: str
) -> None:
    connector_id, _ = seven
    answer = raw(
        server, "GET", f"/voice-connectors/{connector_id}/proxy-sessions?max-results={value}"
    )
    assert_refused(answer, 400, "BadRequestException", "MaxResults")


def test_max_results_bounds_are_accepted(
    client: Any, server: ChimeProxyServer, seven: tuple[str, list[str]]
) -> None:
    connector_id, _ = seven
    for value, count in (("1", 1), ("100", 7)):
        answer = raw(
            server, "GET", f"/voice-connectors/{connector_id}/proxy-sessions?max-results={value}"
        )
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["ProxySessions"]) == count


def test_status_filters(client: Any, seven: tuple[str, list[str]]) -> None:
    connector_id, created = seven
    assert sorted(ids(all_sessions(client, connector_id, Status="Open"))) == sorted(created)
    assert all_sessions(client, connector_id, Status="InProgress") == []
    assert all_sessions(client, connector_id, Status="Closed") == []
    paged = client.list_proxy_sessions(VoiceConnectorId=connector_id, Status="Open", MaxResults=4)
    rest = client.list_proxy_sessions(
        VoiceConnectorId=connector_id, Status="Open", NextToken=paged["NextToken"]
    )
    assert ids(paged["ProxySessions"]) + ids(rest["ProxySessions"]) == ids(
        all_sessions(client, connector_id)
    )


# Not found.


def test_unknown_connector_is_not_found_for_every_operation(client: Any) -> None:
    vc = UNKNOWN_CONNECTOR
    calls = [
        lambda: client.put_voice_connector_proxy(
            VoiceConnectorId=vc, DefaultSessionExpiryMinutes=60, PhoneNumberPoolCountries=["US"]
        ),
        lambda: client.get_voice_connector_proxy(VoiceConnectorId=vc),
        lambda: client.delete_voice_connector_proxy(VoiceConnectorId=vc),
        lambda: client.create_proxy_session(
            VoiceConnectorId=vc,
            ParticipantPhoneNumbers=[person(), person()],
            Capabilities=["Voice"],
        ),
        lambda: client.get_proxy_session(VoiceConnectorId=vc, ProxySessionId=UNKNOWN_SESSION),
        lambda: client.list_proxy_sessions(VoiceConnectorId=vc),
        lambda: client.update_proxy_session(
            VoiceConnectorId=vc, ProxySessionId=UNKNOWN_SESSION, Capabilities=["Voice"]
        ),
        lambda: client.delete_proxy_session(VoiceConnectorId=vc, ProxySessionId=UNKNOWN_SESSION),
    ]
    for call in calls:
        with refused(404, "NotFoundException", vc):
            call()


def test_unknown_session_is_not_found(client: Any) -> None:
    connector_id, _ = proxy_connector(client, pool=1)
    elsewhere, _ = proxy_connector(client, pool=1)
    session = create_session(client, elsewhere, person(), person())
    foreign = session["ProxySessionId"]
    for session_id in (UNKNOWN_SESSION, foreign):
        with refused(404, "NotFoundException"):
            client.get_proxy_session(VoiceConnectorId=connector_id, ProxySessionId=session_id)
        with refused(404, "NotFoundException"):
            client.update_proxy_session(
                VoiceConnectorId=connector_id, ProxySessionId=session_id, Capabilities=["Voice"]
            )
        with refused(404, "NotFoundException"):
            client.delete_proxy_session(VoiceConnectorId=connector_id, ProxySessionId=session_id)
    # The other connector's session is untouched.
    got = client.get_proxy_session(VoiceConnectorId=elsewhere, ProxySessionId=foreign)
    assert got["ProxySession"] == session
    assert all_sessions(client, connector_id) == []


def test_sessions_are_invisible_from_another_region_or_account(
    client: Any, server: ChimeProxyServer
) -> None:
    connector_id, _ = proxy_connector(client, pool=1)
    session = create_session(client, connector_id, person(), person())
    session_id = session["ProxySessionId"]
    for other in (
        make_client(server.url, region_name="us-west-2"),
        make_client(server.url, aws_access_key_id="210987654321"),
    ):
        with refused(404, "NotFoundException"):
            other.get_proxy_session(VoiceConnectorId=connector_id, ProxySessionId=session_id)
        with refused(404, "NotFoundException"):
            other.list_proxy_sessions(VoiceConnectorId=connector_id)
        with refused(404, "NotFoundException"):
            other.delete_proxy_session(VoiceConnectorId=connector_id, ProxySessionId=session_id)
    assert all_sessions(client, connector_id) == [session]


def test_unknown_status_filter(client: Any, seven: tuple[str, list[str]]) -> None:
    with refused(400, "BadRequestException", "Status"):
        client.list_proxy_sessions(VoiceConnectorId=seven[0], Status="Expired")


# Bad requests the contract names.


def test_create_without_proxy_configuration(client: Any) -> None:
    connector_id = make_connector(client)
    numbers = order_numbers(client, 1)
    client.associate_phone_numbers_with_voice_connector(
        VoiceConnectorId=connector_id, E164PhoneNumbers=numbers
    )
    with refused(400, "BadRequestException", "proxy configuration"):
        create_session(client, connector_id, person(), person())
    assert all_sessions(client, connector_id) == []


def test_create_with_proxy_disabled(client: Any) -> None:
    connector_id, _ = proxy_connector(client, pool=1)
    client.put_voice_connector_proxy(
        VoiceConnectorId=connector_id,
        DefaultSessionExpiryMinutes=60,
        PhoneNumberPoolCountries=["US"],
        Disabled=True,
    )
    with refused(400, "BadRequestException", "disabled"):
        create_session(client, connector_id, person(), person())
    assert all_sessions(client, connector_id) == []
    client.put_voice_connector_proxy(
        VoiceConnectorId=connector_id,
        DefaultSessionExpiryMinutes=60,
        PhoneNumberPoolCountries=["US"],
        Disabled=False,
    )
    create_session(client, connector_id, person(), person())


def test_create_rejects_bad_participants(client: Any) -> None:
    connector_id, numbers = proxy_connector(client, pool=2)
    a = person()
    for pair in ([a, a], [a, a.lstrip("+")], [a.lstrip("+"), a]):
        with refused(400, "BadRequestException", "ParticipantPhoneNumbers"):
            create_session(client, connector_id, *pair)
    # Which participant is the connector's own number is named, by its place (not its number).
    for own in (numbers[0], numbers[1].lstrip("+")):
        with refused(
            400, "BadRequestException", "second participant (ParticipantPhoneNumbers[1])", "voice"
        ) as e:
            create_session(client, connector_id, person(), own)
        assert "first" not in e.message and own.lstrip("+") not in e.message
        with refused(
            400, "BadRequestException", "first participant (ParticipantPhoneNumbers[0])", "voice"
        ) as e:
            create_session(client, connector_id, own, person())
        assert "second" not in e.message
    with refused(
        400, "BadRequestException", "first participant", "and the second participant", "are phone"
    ):
        create_session(client, connector_id, numbers[1], numbers[0])
    for invalid in ("abc", "+0123456", "+1", "+12345678901234567", "+1 206 555 0100"):
        with refused(400, "BadRequestException", "ParticipantPhoneNumbers"):
            create_session(client, connector_id, person(), invalid)
    # Valid E.164 syntax, but no number of its country (phonenumbers.is_valid_number): a US
    # number sent without its +1 reads as Egypt's +20 and is refused, never taken as Egyptian.
    for index, invalid in ((1, "2065550123"), (0, "+12065550"), (1, "+5215550100")):
        pair = [person(), person()]
        pair[index] = invalid
        with refused(
            400, "BadRequestException", f"ParticipantPhoneNumbers[{index}]", "not a valid"
        ) as e:
            create_session(client, connector_id, *pair)
        # The number is named with its place (the contract: "refused with BadRequest naming it").
        assert ("+" + invalid.lstrip("+")) in e.message
    with refused(400, "BadRequestException", "+20 (EG)"):
        create_session(client, connector_id, person(), "2065550123")
    assert all_sessions(client, connector_id) == []


def test_pool_countries_must_be_countries(client: Any) -> None:
    connector_id = make_connector(client)
    with refused(400, "BadRequestException", "PhoneNumberPoolCountries", "XX is not"):
        client.put_voice_connector_proxy(
            VoiceConnectorId=connector_id,
            DefaultSessionExpiryMinutes=60,
            PhoneNumberPoolCountries=["US", "XX"],
        )
    with refused(404, "NotFoundException"):
        client.get_voice_connector_proxy(VoiceConnectorId=connector_id)


def test_create_rejects_bad_capabilities_and_expiry(client: Any) -> None:
    connector_id, _ = proxy_connector(client, pool=1)
    with refused(400, "BadRequestException", "Capabilities"):
        create_session(client, connector_id, person(), person(), Capabilities=[])
    with refused(400, "BadRequestException", "Capabilities"):
        create_session(client, connector_id, person(), person(), Capabilities=["Fax"])
    with refused(400, "BadRequestException", "ExpiryMinutes"):
        create_session(client, connector_id, person(), person(), ExpiryMinutes=721)
    limit = create_session(client, connector_id, person(), person(), ExpiryMinutes=720)
    assert limit["ExpiryMinutes"] == 720
    assert len(all_sessions(client, connector_id)) == 1


def test_create_rejections_over_raw_http(server: ChimeProxyServer, client: Any) -> None:
    """What boto3 refuses to send: wrong participant counts, ExpiryMinutes 0, bad JSON."""
    connector_id, _ = proxy_connector(client, pool=1)
    path = f"/voice-connectors/{connector_id}/proxy-sessions"
    voice = {"Capabilities": ["Voice"]}
    pair = [person(), person()]
    for body, member in (
        ({**voice, "ParticipantPhoneNumbers": []}, "ParticipantPhoneNumbers"),
        ({**voice, "ParticipantPhoneNumbers": [person()]}, "ParticipantPhoneNumbers"),
        ({**voice, "ParticipantPhoneNumbers": [*pair, person()]}, "ParticipantPhoneNumbers"),
        ({**voice, "ParticipantPhoneNumbers": ["+1206", "12x"]}, "ParticipantPhoneNumbers"),
        ({**voice, "ParticipantPhoneNumbers": [person(), 12065550100]}, "ParticipantPhoneNumbers"),
        ({**voice, "ParticipantPhoneNumbers": pair, "ExpiryMinutes": 0}, "ExpiryMinutes"),
        ({"ParticipantPhoneNumbers": pair}, "Capabilities"),
    ):
        assert_refused(raw(server, "POST", path, body), 400, "BadRequestException", member)
    answer = httpx.post(server.url + path, content=b"{not json", timeout=10)
    assert_refused(answer, 400, "BadRequestException", "not valid JSON")
    assert client.list_proxy_sessions(VoiceConnectorId=connector_id)["ProxySessions"] == []


# Output fidelity.


def _keys_sorted_everywhere(value: Any) -> bool:
    if isinstance(value, dict):
        return list(value) == sorted(value) and all(map(_keys_sorted_everywhere, value.values()))
    if isinstance(value, list):
        return all(map(_keys_sorted_everywhere, value))
    return True


def test_get_proxy_session_wire_format(server: ChimeProxyServer, client: Any) -> None:
    connector_id, _ = proxy_connector(client, pool=1)
    a, b = person(), person()
    session = create_session(client, connector_id, a, b, Capabilities=["SMS", "Voice"])
    session_id = session["ProxySessionId"]
    answer = raw(server, "GET", f"/voice-connectors/{connector_id}/proxy-sessions/{session_id}")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    uuid.UUID(answer.headers["x-amzn-RequestId"])

    body = json.loads(answer.content)
    assert _keys_sorted_everywhere(body)
    data = body["ProxySession"]
    assert set(data) == SESSION_MEMBERS
    for member in ("EndedTimestamp", "GeoMatchLevel", "GeoMatchParams", "Name"):
        assert data[member] is None, member
    assert data["NumberSelectionBehavior"] is None
    assert data["ExpiryMinutes"] == 60  # the configuration's default, as in the sample
    assert TIMESTAMP.match(data["CreatedTimestamp"]), data["CreatedTimestamp"]
    assert data["UpdatedTimestamp"] == data["CreatedTimestamp"]

    # Byte for byte the reference sample's layout, built from the same data.
    number = proxy_number(session)
    expected = (
        '{"ProxySession":{"Capabilities":["SMS","Voice"],'
        f'"CreatedTimestamp":"{data["CreatedTimestamp"]}","EndedTimestamp":null,'
        '"ExpiryMinutes":60,"GeoMatchLevel":null,"GeoMatchParams":null,"Name":null,'
        '"NumberSelectionBehavior":null,"Participants":['
        f'{{"PhoneNumber":"{a}","ProxyPhoneNumber":"{number}"}},'
        f'{{"PhoneNumber":"{b}","ProxyPhoneNumber":"{number}"}}],'
        f'"ProxySessionId":"{session_id}","Status":"Open",'
        f'"UpdatedTimestamp":"{data["CreatedTimestamp"]}","VoiceConnectorId":"{connector_id}"}}}}'
    )
    assert re.sub(rb"\s", b"", answer.content) == expected.encode()

    # With every optional member set, nested GeoMatchParams keys are sorted too.
    full = create_session(
        client,
        connector_id,
        person(),
        person(),
        Name="Full",
        ExpiryMinutes=5,
        GeoMatchLevel="AreaCode",
        GeoMatchParams={"Country": "US", "AreaCode": number[2:5]},
    )
    answer = raw(
        server, "GET", f"/voice-connectors/{connector_id}/proxy-sessions/{full['ProxySessionId']}"
    )
    data = json.loads(answer.content)["ProxySession"]
    assert _keys_sorted_everywhere(data)
    assert list(data["GeoMatchParams"]) == ["AreaCode", "Country"]
    assert data["ExpiryMinutes"] == 5 and data["Name"] == "Full"

    listing = raw(server, "GET", f"/voice-connectors/{connector_id}/proxy-sessions")
    assert listing.headers["Content-Type"] == "application/json"
    listed = json.loads(listing.content)
    assert list(listed) == ["NextToken", "ProxySessions"] and listed["NextToken"] is None
    assert _keys_sorted_everywhere(listed)
    assert all(set(s) == SESSION_MEMBERS for s in listed["ProxySessions"])


def test_error_wire_format(server: ChimeProxyServer) -> None:
    answer = raw(server, "GET", f"/voice-connectors/{UNKNOWN_CONNECTOR}/proxy-sessions")
    assert_refused(answer, 404, "NotFoundException", UNKNOWN_CONNECTOR)
    assert answer.headers["Content-Type"] == "application/json"
    uuid.UUID(answer.headers["x-amzn-RequestId"])
    assert answer.json()["Code"] == "NotFound"

    deleted = raw(server, "DELETE", f"/voice-connectors/{UNKNOWN_CONNECTOR}/proxy-sessions/x")
    assert_refused(deleted, 404, "NotFoundException", UNKNOWN_CONNECTOR)


def test_delete_answers_204_with_no_body(server: ChimeProxyServer, client: Any) -> None:
    connector_id, _ = proxy_connector(client, pool=1)
    session = create_session(client, connector_id, person(), person())
    answer = raw(
        server,
        "DELETE",
        f"/voice-connectors/{connector_id}/proxy-sessions/{session['ProxySessionId']}",
    )
    assert answer.status_code == 204
    assert answer.content == b""
    uuid.UUID(answer.headers["x-amzn-RequestId"])
