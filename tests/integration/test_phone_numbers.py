"""Phone numbers end to end through boto3: the catalog search, orders, owned numbers, association
with voice connectors, the deletion queue and its purge, and isolation between accounts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config

from chimeproxy.testing import ChimeProxyServer
from tests.conftest import database_url, make_client
from tests.integration.helpers import (
    all_sessions,
    assert_client_error,
    fresh_client,
    make_connector,
    order_numbers,
    postgres_database,
    proxy_connector,
    refused,
)

NANP_TOLL_FREE = {"800", "833", "844", "855", "866", "877", "888"}
WASHINGTON_AREA_CODES = {"206", "253", "360", "425", "509", "564"}
PARTICIPANTS = ["+12065550150", "+14015550101"]


def search_all(client: Any, page_size: int = 100, **filters: Any) -> tuple[list[str], int]:
    """Every number a search offers, page by page; also the number of pages."""
    found: list[str] = []
    pages = 0
    token: str | None = None
    while True:
        page = client.search_available_phone_numbers(
            MaxResults=page_size, **filters, **({"NextToken": token} if token else {})
        )
        pages += 1
        assert len(page["E164PhoneNumbers"]) <= page_size
        found += page["E164PhoneNumbers"]
        token = page.get("NextToken")
        if not token:
            return found, pages


def test_no_next_token_starts_with_a_dash(client: Any) -> None:
    """A token starting with '-' is read as an option by the AWS CLI (`argument --next-token:
    expected one argument`); about 1 in 64 did. 2,000 pages of one number each (Canada:
    numbers no other test orders, so no page skips owned ones)."""
    tokens: list[str] = []
    token: str | None = None
    while len(tokens) < 2000:
        page = client.search_available_phone_numbers(
            Country="CA", MaxResults=1, **({"NextToken": token} if token else {})
        )
        token = page["NextToken"]
        tokens.append(token)
    assert len(set(tokens)) == 2000
    assert [t for t in tokens if t.startswith("-")] == []


def list_numbers(client: Any, page_size: int = 100, **filters: Any) -> list[dict[str, Any]]:
    """Every phone number ListPhoneNumbers returns for `filters`, following NextToken."""
    found: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = client.list_phone_numbers(
            MaxResults=page_size, **filters, **({"NextToken": token} if token else {})
        )
        assert len(page["PhoneNumbers"]) <= page_size
        found += page["PhoneNumbers"]
        token = page.get("NextToken")
        if not token:
            return found


def associate(client: Any, connector_id: str, numbers: list[str], **options: Any) -> list[Any]:
    """Associate `numbers` and return the PhoneNumberErrors."""
    return client.associate_phone_numbers_with_voice_connector(
        VoiceConnectorId=connector_id, E164PhoneNumbers=numbers, **options
    )["PhoneNumberErrors"]


def disassociate(client: Any, connector_id: str, numbers: list[str]) -> list[Any]:
    """Disassociate `numbers` and return the PhoneNumberErrors."""
    return client.disassociate_phone_numbers_from_voice_connector(
        VoiceConnectorId=connector_id, E164PhoneNumbers=numbers
    )["PhoneNumberErrors"]


def phone(client: Any, number: str) -> dict[str, Any]:
    return client.get_phone_number(PhoneNumberId=number)["PhoneNumber"]


def connector_of(client: Any, number: str) -> str | None:
    """The voice connector a number is associated with, from GetPhoneNumber."""
    associations = phone(client, number)["Associations"]
    assert len(associations) <= 1
    return associations[0]["Value"] if associations else None


# Supported countries.


def test_supported_countries_include_us_local_and_toll_free(client: Any) -> None:
    countries = {
        c["CountryCode"]: c["SupportedPhoneNumberTypes"]
        for c in client.list_supported_phone_number_countries(ProductType="VoiceConnector")[
            "PhoneNumberCountries"
        ]
    }
    assert set(countries["US"]) == {"Local", "TollFree"}
    assert {"CA", "GB", "AU", "DE", "FR"} <= set(countries)
    assert "Local" in countries["GB"]
    assert all(set(types) <= {"Local", "TollFree"} and types for types in countries.values())


def test_supported_countries_need_a_product_type(server: ChimeProxyServer) -> None:
    unchecked = make_client(server.url, config=Config(parameter_validation=False))
    with refused(400, "BadRequestException", "ProductType"):
        unchecked.list_supported_phone_number_countries()


# Search.


def test_search_by_country_and_area_code(client: Any) -> None:
    found = client.search_available_phone_numbers(Country="US", AreaCode="907", MaxResults=10)
    numbers = found["E164PhoneNumbers"]
    assert len(numbers) == 10
    assert all(n.startswith("+1907") for n in numbers)
    assert numbers == sorted(set(numbers))


def test_search_by_state(client: Any) -> None:
    numbers, _ = search_all(client, 500, Country="US", State="WA")
    assert len(numbers) >= 500
    assert {n[2:5] for n in numbers} <= WASHINGTON_AREA_CODES
    assert {n[2:5] for n in numbers} == WASHINGTON_AREA_CODES
    lower = client.search_available_phone_numbers(Country="US", State="wa", MaxResults=5)
    assert lower["E164PhoneNumbers"] == numbers[:5]


def test_search_by_city_and_state(client: Any) -> None:
    numbers, _ = search_all(client, 100, Country="US", City="Seattle", State="WA")
    assert numbers
    assert all(n.startswith("+1206") for n in numbers)
    assert (
        client.search_available_phone_numbers(Country="US", City="Seattle", State="TX")[
            "E164PhoneNumbers"
        ]
        == []
    )


def test_search_by_city_without_state_is_a_bad_request(client: Any) -> None:
    with refused(400, "BadRequestException", "State is required with City"):
        client.search_available_phone_numbers(Country="US", City="Seattle")


def test_search_by_toll_free_prefix(client: Any) -> None:
    numbers, _ = search_all(client, 500, TollFreePrefix="844")
    assert len(numbers) == 100
    assert all(n.startswith("+1844") for n in numbers)
    assert all(
        n.startswith("+1844")
        for n in client.search_available_phone_numbers(
            Country="US", TollFreePrefix="844", MaxResults=20
        )["E164PhoneNumbers"]
    )


def test_search_by_type(client: Any) -> None:
    toll_free, _ = search_all(client, 500, Country="US", PhoneNumberType="TollFree")
    assert toll_free
    assert {n[2:5] for n in toll_free} == NANP_TOLL_FREE
    local = client.search_available_phone_numbers(
        Country="US", PhoneNumberType="Local", MaxResults=500
    )["E164PhoneNumbers"]
    assert len(local) == 500
    assert not {n[2:5] for n in local} & NANP_TOLL_FREE
    gb_toll_free = client.search_available_phone_numbers(
        Country="GB", PhoneNumberType="TollFree", MaxResults=10
    )["E164PhoneNumbers"]
    assert gb_toll_free
    assert all(n.startswith("+44808") for n in gb_toll_free)


def test_search_of_nothing_is_empty(client: Any) -> None:
    page = client.search_available_phone_numbers(Country="US", AreaCode="999")
    assert page["E164PhoneNumbers"] == []
    assert page.get("NextToken") is None


@pytest.mark.parametrize("page_size", [1, 7, 30, 100])
def test_search_pages_never_repeat_or_skip(client: Any, page_size: int) -> None:
    everything = client.search_available_phone_numbers(
        Country="US", AreaCode="808", MaxResults=500
    )["E164PhoneNumbers"]
    assert len(everything) == 100
    paged, pages = search_all(client, page_size, Country="US", AreaCode="808")
    assert paged == everything
    assert pages == -(-100 // page_size)


def test_search_with_forged_token_is_a_bad_request(client: Any) -> None:
    token = client.search_available_phone_numbers(Country="US", MaxResults=1)["NextToken"]
    with refused(400, "BadRequestException", "NextToken"):
        client.search_available_phone_numbers(Country="US", NextToken=token[::-1])
    with refused(400, "BadRequestException", "NextToken"):
        client.list_phone_numbers(NextToken=token)


def test_ordered_numbers_are_no_longer_offered_to_anyone(server: ChimeProxyServer) -> None:
    buyer, other = fresh_client(server), fresh_client(server)
    offered = other.search_available_phone_numbers(Country="US", AreaCode="503", MaxResults=100)[
        "E164PhoneNumbers"
    ]
    assert len(offered) == 100
    bought = offered[10:13]
    order = buyer.create_phone_number_order(ProductType="VoiceConnector", E164PhoneNumbers=bought)
    assert order["PhoneNumberOrder"]["Status"] == "Successful"
    for searcher in (buyer, other, fresh_client(server, "eu-west-2")):
        now = search_all(searcher, 9, Country="US", AreaCode="503")[0]
        assert now == [n for n in offered if n not in bought]


def test_search_skips_owned_numbers_across_pages(server: ChimeProxyServer) -> None:
    """Every other number ordered: each page must still be full and the pages must tile."""
    buyer = fresh_client(server)
    offered = buyer.search_available_phone_numbers(Country="US", AreaCode="971", MaxResults=100)[
        "E164PhoneNumbers"
    ]
    assert len(offered) == 100
    bought = offered[::2]
    buyer.create_phone_number_order(ProductType="VoiceConnector", E164PhoneNumbers=bought)
    for page_size in (1, 3, 7, 49, 50):
        page = buyer.search_available_phone_numbers(
            Country="US", AreaCode="971", MaxResults=page_size
        )
        assert len(page["E164PhoneNumbers"]) == page_size
        remaining, _ = search_all(buyer, page_size, Country="US", AreaCode="971")
        assert remaining == offered[1::2]


# Orders.


def test_order_successful(server: ChimeProxyServer) -> None:
    buyer = fresh_client(server)
    wanted = buyer.search_available_phone_numbers(Country="US", AreaCode="505", MaxResults=3)[
        "E164PhoneNumbers"
    ]
    answer = buyer.create_phone_number_order(ProductType="VoiceConnector", E164PhoneNumbers=wanted)
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 201
    order = answer["PhoneNumberOrder"]
    assert order["Status"] == "Successful"
    assert order["ProductType"] == "VoiceConnector"
    assert order["OrderType"] == "New"
    assert order["OrderedPhoneNumbers"] == [
        {"E164PhoneNumber": n, "Status": "Acquired"} for n in wanted
    ]
    assert (
        buyer.get_phone_number_order(PhoneNumberOrderId=order["PhoneNumberOrderId"])[
            "PhoneNumberOrder"
        ]
        == order
    )
    for number in wanted:
        owned = phone(buyer, number)
        assert owned["Status"] == "Unassigned"
        assert owned["OrderId"] == order["PhoneNumberOrderId"]
        assert owned["CreatedTimestamp"] == order["CreatedTimestamp"]


def test_order_partial_when_one_number_is_taken(server: ChimeProxyServer) -> None:
    first, second = fresh_client(server), fresh_client(server)
    wanted = first.search_available_phone_numbers(Country="US", AreaCode="505", MaxResults=3)[
        "E164PhoneNumbers"
    ]
    first.create_phone_number_order(ProductType="VoiceConnector", E164PhoneNumbers=wanted[:1])
    order = second.create_phone_number_order(ProductType="VoiceConnector", E164PhoneNumbers=wanted)[
        "PhoneNumberOrder"
    ]
    assert order["Status"] == "Partial"
    assert order["OrderedPhoneNumbers"] == [
        {"E164PhoneNumber": wanted[0], "Status": "Failed"},
        {"E164PhoneNumber": wanted[1], "Status": "Acquired"},
        {"E164PhoneNumber": wanted[2], "Status": "Acquired"},
    ]
    # The number that failed stays with its first buyer.
    with refused(404, "NotFoundException", "Phone number not found"):
        phone(second, wanted[0])
    assert phone(first, wanted[0])["Status"] == "Unassigned"
    assert phone(second, wanted[1])["Status"] == "Unassigned"


def test_order_partial_for_a_number_outside_the_catalog(server: ChimeProxyServer) -> None:
    buyer = fresh_client(server)
    wanted = buyer.search_available_phone_numbers(Country="US", AreaCode="505", MaxResults=1)[
        "E164PhoneNumbers"
    ]
    order = buyer.create_phone_number_order(
        ProductType="VoiceConnector", E164PhoneNumbers=[*wanted, "+15055550000"]
    )["PhoneNumberOrder"]
    assert order["Status"] == "Partial"
    assert [n["Status"] for n in order["OrderedPhoneNumbers"]] == ["Acquired", "Failed"]
    with refused(404, "NotFoundException", "Phone number not found"):
        phone(buyer, "+15055550000")
    assert [n["E164PhoneNumber"] for n in buyer.list_phone_numbers()["PhoneNumbers"]] == wanted


def test_order_failed_when_nothing_is_available(server: ChimeProxyServer) -> None:
    first, second = fresh_client(server), fresh_client(server)
    taken = order_numbers(first, 2, AreaCode="505")
    order = second.create_phone_number_order(
        ProductType="VoiceConnector", E164PhoneNumbers=[*taken, "+15055550000"]
    )["PhoneNumberOrder"]
    assert order["Status"] == "Failed"
    assert {n["Status"] for n in order["OrderedPhoneNumbers"]} == {"Failed"}
    assert second.list_phone_numbers()["PhoneNumbers"] == []
    # A failed order is still an order on record.
    assert second.get_phone_number_order(PhoneNumberOrderId=order["PhoneNumberOrderId"])
    assert [
        o["PhoneNumberOrderId"] for o in second.list_phone_number_orders()["PhoneNumberOrders"]
    ] == [order["PhoneNumberOrderId"]]


def test_order_accepts_numbers_without_plus_and_ignores_repeats(server: ChimeProxyServer) -> None:
    buyer = fresh_client(server)
    number = buyer.search_available_phone_numbers(Country="US", AreaCode="505", MaxResults=1)[
        "E164PhoneNumbers"
    ][0]
    order = buyer.create_phone_number_order(
        ProductType="VoiceConnector", E164PhoneNumbers=[number, number[1:]]
    )["PhoneNumberOrder"]
    assert order["Status"] == "Successful"
    assert order["OrderedPhoneNumbers"] == [{"E164PhoneNumber": number, "Status": "Acquired"}]
    assert phone(buyer, number[1:])["E164PhoneNumber"] == number


def test_get_unknown_order_is_not_found(client: Any) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    with refused(404, "NotFoundException", unknown):
        client.get_phone_number_order(PhoneNumberOrderId=unknown)


@pytest.mark.parametrize("page_size", [1, 2, 3])
def test_list_orders_pages_in_creation_order(server: ChimeProxyServer, page_size: int) -> None:
    buyer = fresh_client(server)
    created = []
    for _ in range(5):
        number = buyer.search_available_phone_numbers(Country="US", MaxResults=1)[
            "E164PhoneNumbers"
        ]
        created.append(
            buyer.create_phone_number_order(ProductType="VoiceConnector", E164PhoneNumbers=number)[
                "PhoneNumberOrder"
            ]
        )
    listed: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = buyer.list_phone_number_orders(
            MaxResults=page_size, **({"NextToken": token} if token else {})
        )
        assert len(page["PhoneNumberOrders"]) <= page_size
        listed += page["PhoneNumberOrders"]
        token = page.get("NextToken")
        if not token:
            break
    # Creation order, except that orders placed within one millisecond go by id.
    created.sort(key=lambda o: (o["CreatedTimestamp"], o["PhoneNumberOrderId"]))
    assert listed == created
    with refused(400, "BadRequestException", "NextToken"):
        buyer.list_phone_number_orders(NextToken="forged")


# Owned numbers.


def test_get_phone_number_shape(client: Any) -> None:
    number = order_numbers(client, 1)[0]
    owned = phone(client, number)
    assert owned["PhoneNumberId"] == number
    assert owned["E164PhoneNumber"] == number
    assert owned["Country"] == "US"
    assert owned["Type"] == "Local"
    assert owned["ProductType"] == "VoiceConnector"
    assert owned["Status"] == "Unassigned"
    assert owned["Associations"] == []
    assert owned["Capabilities"] == {
        "InboundCall": True,
        "OutboundCall": True,
        "InboundSMS": True,
        "OutboundSMS": True,
        "InboundMMS": False,
        "OutboundMMS": False,
    }
    assert "DeletionTimestamp" not in owned or owned["DeletionTimestamp"] is None


def test_get_toll_free_and_foreign_numbers(client: Any) -> None:
    toll_free = order_numbers(client, 1, TollFreePrefix="888")[0]
    assert phone(client, toll_free)["Type"] == "TollFree"
    british = order_numbers(client, 1, Country="GB", PhoneNumberType="Local")[0]
    assert british.startswith("+44")
    owned = phone(client, british)
    assert (owned["Country"], owned["Type"]) == ("GB", "Local")


def test_get_unknown_or_malformed_number_is_not_found(client: Any) -> None:
    for number in ("+19995550100", "not-a-number", "+"):
        with refused(404, "NotFoundException", "Phone number not found"):
            client.get_phone_number(PhoneNumberId=number)


def test_list_phone_numbers_filters_and_pages(server: ChimeProxyServer) -> None:
    owner = fresh_client(server)
    numbers = order_numbers(owner, 6)
    dial_in = owner.search_available_phone_numbers(Country="US", MaxResults=1)["E164PhoneNumbers"]
    owner.create_phone_number_order(
        ProductType="SipMediaApplicationDialIn", E164PhoneNumbers=dial_in
    )
    first, second = make_connector(owner), make_connector(owner)
    assert associate(owner, first, numbers[:2]) == []
    assert associate(owner, second, numbers[2:3]) == []
    owner.delete_phone_number(PhoneNumberId=numbers[5])
    everyone = sorted([*numbers, *dial_in])

    def e164s(**filters: Any) -> list[str]:
        return [p["E164PhoneNumber"] for p in list_numbers(owner, **filters)]

    assert e164s() == everyone
    for page_size in (1, 2, 3):
        assert e164s(page_size=page_size) == everyone
    assert e164s(Status="Assigned") == sorted(numbers[:3])
    assert e164s(Status="Unassigned") == sorted([numbers[3], numbers[4], *dial_in])
    assert e164s(Status="DeleteInProgress") == [numbers[5]]
    assert e164s(ProductType="VoiceConnector") == sorted(numbers)
    assert e164s(ProductType="SipMediaApplicationDialIn") == dial_in
    assert e164s(FilterName="VoiceConnectorId", FilterValue=first) == sorted(numbers[:2])
    assert e164s(page_size=1, FilterName="VoiceConnectorId", FilterValue=first) == sorted(
        numbers[:2]
    )
    assert e164s(FilterName="VoiceConnectorId", FilterValue=second, Status="Assigned") == [
        numbers[2]
    ]
    assert e164s(FilterName="VoiceConnectorId", FilterValue=second, Status="Unassigned") == []
    listed = {p["E164PhoneNumber"]: p for p in list_numbers(owner)}
    assert listed[numbers[0]] == phone(owner, numbers[0])


def test_list_phone_numbers_filter_name_needs_a_value(client: Any) -> None:
    with refused(400, "BadRequestException", "FilterName and FilterValue"):
        client.list_phone_numbers(FilterName="VoiceConnectorId")


def test_update_phone_number_name_and_calling_name(server: ChimeProxyServer, client: Any) -> None:
    number = order_numbers(client, 1)[0]
    before = phone(client, number)
    server.advance(3)
    updated = client.update_phone_number(
        PhoneNumberId=number, Name="front desk", CallingName="Acme Corp"
    )["PhoneNumber"]
    assert updated["Name"] == "front desk"
    assert updated["CallingName"] == "Acme Corp"
    assert updated["UpdatedTimestamp"] - before["UpdatedTimestamp"] >= timedelta(seconds=3)
    assert updated["CreatedTimestamp"] == before["CreatedTimestamp"]
    assert phone(client, number) == updated
    # Only what is sent changes.
    renamed = client.update_phone_number(PhoneNumberId=number, Name="back office")["PhoneNumber"]
    assert (renamed["Name"], renamed["CallingName"]) == ("back office", "Acme Corp")


def test_update_with_invalid_calling_name_is_a_bad_request(client: Any) -> None:
    number = order_numbers(client, 1)[0]
    before = phone(client, number)
    with refused(400, "BadRequestException", "CallingName"):
        client.update_phone_number(PhoneNumberId=number, CallingName="Acme & Sons!")
    assert phone(client, number) == before
    assert before.get("CallingName") is None


def test_delete_queues_the_number_and_restore_brings_it_back(
    server: ChimeProxyServer, client: Any
) -> None:
    number = order_numbers(client, 1)[0]
    answer = client.delete_phone_number(PhoneNumberId=number)
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 204
    queued = phone(client, number)
    assert queued["Status"] == "DeleteInProgress"
    assert queued["DeletionTimestamp"] is not None
    assert queued["DeletionTimestamp"] == queued["UpdatedTimestamp"]
    # Deleting again changes nothing: the number keeps its place in the queue.
    server.advance(2)
    client.delete_phone_number(PhoneNumberId=number)
    assert phone(client, number) == queued
    # Still owned while queued: nobody else may order it.
    order = fresh_client(server).create_phone_number_order(
        ProductType="VoiceConnector", E164PhoneNumbers=[number]
    )["PhoneNumberOrder"]
    assert order["Status"] == "Failed"
    # A queued number cannot be associated.
    connector_id = make_connector(client)
    errors = associate(client, connector_id, [number])
    assert [e["PhoneNumberId"] for e in errors] == [number]
    assert phone(client, number)["Status"] == "DeleteInProgress"

    restored = client.restore_phone_number(PhoneNumberId=number)["PhoneNumber"]
    assert restored["Status"] == "Unassigned"
    assert restored.get("DeletionTimestamp") is None
    assert phone(client, number) == restored
    with refused(400, "BadRequestException", "Only a phone number in the deletion queue"):
        client.restore_phone_number(PhoneNumberId=number)
    assert phone(client, number) == restored
    assert associate(client, connector_id, [number]) == []


def test_deleting_an_associated_number_is_a_bad_request(client: Any) -> None:
    number = order_numbers(client, 1)[0]
    connector_id = make_connector(client)
    assert associate(client, connector_id, [number]) == []
    before = phone(client, number)
    with refused(400, "BadRequestException", "associated with a voice connector"):
        client.delete_phone_number(PhoneNumberId=number)
    assert phone(client, number) == before
    assert before["Status"] == "Assigned"


def test_numbers_percent_encoded_in_the_path(client: Any) -> None:
    number = order_numbers(client, 1)[0]
    # boto3 sends `+` as %2B; without the plus the id still names the number.
    assert phone(client, number)["PhoneNumberId"] == number
    assert phone(client, number[1:])["PhoneNumberId"] == number
    client.update_phone_number(PhoneNumberId=number[1:], Name="no plus")
    assert phone(client, number)["Name"] == "no plus"


# Association.


def test_associate_and_disassociate(client: Any) -> None:
    numbers = order_numbers(client, 2)
    connector_id = make_connector(client)
    assert associate(client, connector_id, numbers) == []
    for number in numbers:
        owned = phone(client, number)
        assert owned["Status"] == "Assigned"
        assert len(owned["Associations"]) == 1
        association = owned["Associations"][0]
        assert association["Name"] == "VoiceConnectorId"
        assert association["Value"] == connector_id
        assert association["AssociatedTimestamp"] is not None
    # Associating again with the same connector is a no-op, not an error.
    assert associate(client, connector_id, numbers[:1]) == []

    assert disassociate(client, connector_id, numbers[:1]) == []
    freed = phone(client, numbers[0])
    assert freed["Status"] == "Unassigned"
    assert freed["Associations"] == []
    assert phone(client, numbers[1])["Status"] == "Assigned"
    errors = disassociate(client, connector_id, numbers[:1])
    assert [e["PhoneNumberId"] for e in errors] == numbers[:1]


def test_associate_unknown_number_reports_it(server: ChimeProxyServer, client: Any) -> None:
    mine = order_numbers(client, 1)[0]
    theirs = order_numbers(fresh_client(server), 1)[0]
    connector_id = make_connector(client)
    errors = associate(client, connector_id, [mine, theirs, "+19995550100"])
    assert {e["PhoneNumberId"]: e["ErrorCode"] for e in errors} == {
        theirs: "NotFound",
        "+19995550100": "NotFound",
    }
    assert connector_of(client, mine) == connector_id


def test_an_empty_list_of_numbers_is_refused_as_ordering_one_is(client: Any) -> None:
    connector_id = make_connector(client)
    calls = (
        lambda: client.create_phone_number_order(ProductType="VoiceConnector", E164PhoneNumbers=[]),
        lambda: associate(client, connector_id, []),
        lambda: disassociate(client, connector_id, []),
    )
    for call in calls:
        with pytest.raises(client.exceptions.BadRequestException, match="E164PhoneNumbers"):
            call()


def test_associate_with_unknown_connector_is_not_found(client: Any) -> None:
    number = order_numbers(client, 1)[0]
    before = phone(client, number)
    with refused(404, "NotFoundException", "d" * 22):
        associate(client, "d" * 22, [number])
    with refused(404, "NotFoundException", "d" * 22):
        disassociate(client, "d" * 22, [number])
    assert phone(client, number) == before
    assert before["Status"] == "Unassigned"


def test_a_number_belongs_to_one_connector_unless_forced(client: Any) -> None:
    numbers = order_numbers(client, 2)
    first, second = make_connector(client), make_connector(client)
    assert associate(client, first, numbers) == []
    errors = associate(client, second, numbers)
    assert [e["PhoneNumberId"] for e in errors] == numbers
    assert {e["ErrorCode"] for e in errors} == {"PhoneNumberAssociationsExist"}
    assert all(connector_of(client, n) == first for n in numbers)

    assert associate(client, second, numbers[:1], ForceAssociate=True) == []
    assert connector_of(client, numbers[0]) == second
    assert connector_of(client, numbers[1]) == first
    listed = list_numbers(client, FilterName="VoiceConnectorId", FilterValue=first)
    assert [p["E164PhoneNumber"] for p in listed] == numbers[1:]
    # The old connector no longer holds it, so it may be deleted once its other number leaves.
    assert disassociate(client, first, numbers[1:]) == []
    client.delete_voice_connector(VoiceConnectorId=first)
    assert connector_of(client, numbers[0]) == second


def test_a_number_in_an_open_session_stays_put(server: ChimeProxyServer, client: Any) -> None:
    connector_id, numbers = proxy_connector(client, pool=2, AreaCode="702")
    session = client.create_proxy_session(
        VoiceConnectorId=connector_id,
        ParticipantPhoneNumbers=PARTICIPANTS,
        Capabilities=["Voice", "SMS"],
    )["ProxySession"]
    busy = session["Participants"][0]["ProxyPhoneNumber"]
    idle = next(n for n in numbers if n != busy)
    other = make_connector(client)

    errors = disassociate(client, connector_id, [busy])
    assert [e["PhoneNumberId"] for e in errors] == [busy]
    assert connector_of(client, busy) == connector_id
    errors = associate(client, other, [busy], ForceAssociate=True)
    assert [e["PhoneNumberId"] for e in errors] == [busy]
    assert connector_of(client, busy) == connector_id
    assert phone(client, busy)["Status"] == "Assigned"
    with refused(409, "ConflictException", connector_id):
        client.delete_voice_connector(VoiceConnectorId=connector_id)
    assert client.get_voice_connector(VoiceConnectorId=connector_id)["VoiceConnector"]
    assert all_sessions(client, connector_id) == [session]

    # ForceAssociate still moves the number no session uses.
    assert associate(client, other, [idle], ForceAssociate=True) == []
    assert connector_of(client, idle) == other

    client.delete_proxy_session(
        VoiceConnectorId=connector_id, ProxySessionId=session["ProxySessionId"]
    )
    assert associate(client, other, [busy], ForceAssociate=True) == []
    assert connector_of(client, busy) == other


def test_an_expired_session_no_longer_holds_its_number(
    server: ChimeProxyServer, client: Any
) -> None:
    connector_id, numbers = proxy_connector(client, pool=1, expiry=5, AreaCode="702")
    client.create_proxy_session(
        VoiceConnectorId=connector_id,
        ParticipantPhoneNumbers=PARTICIPANTS,
        Capabilities=["Voice"],
    )
    assert len(disassociate(client, connector_id, numbers)) == 1
    server.advance(5 * 60 + 1)
    assert disassociate(client, connector_id, numbers) == []
    assert phone(client, numbers[0])["Status"] == "Unassigned"


# Accounts and regions.


def test_numbers_and_orders_are_invisible_to_other_accounts_and_regions(
    server: ChimeProxyServer,
) -> None:
    owner = make_client(server.url, aws_access_key_id="111111111111", region_name="us-east-1")
    number = owner.search_available_phone_numbers(Country="US", AreaCode="702", MaxResults=1)[
        "E164PhoneNumbers"
    ][0]
    order = owner.create_phone_number_order(
        ProductType="VoiceConnector", E164PhoneNumbers=[number]
    )["PhoneNumberOrder"]
    order_id = order["PhoneNumberOrderId"]
    outsiders = [
        make_client(server.url, aws_access_key_id="222222222222", region_name="us-east-1"),
        make_client(server.url, aws_access_key_id="111111111111", region_name="us-west-2"),
    ]
    before = phone(owner, number)
    for outsider in outsiders:
        with refused(404, "NotFoundException", "Phone number not found"):
            outsider.get_phone_number(PhoneNumberId=number)
        with refused(404, "NotFoundException", "Phone number not found"):
            outsider.update_phone_number(PhoneNumberId=number, Name="stolen")
        with refused(404, "NotFoundException", "Phone number not found"):
            outsider.delete_phone_number(PhoneNumberId=number)
        with refused(404, "NotFoundException", "Phone number not found"):
            outsider.restore_phone_number(PhoneNumberId=number)
        with refused(404, "NotFoundException", order_id):
            outsider.get_phone_number_order(PhoneNumberOrderId=order_id)
        assert number not in [p["E164PhoneNumber"] for p in list_numbers(outsider)]
        orders = outsider.list_phone_number_orders()["PhoneNumberOrders"]
        assert order_id not in [o["PhoneNumberOrderId"] for o in orders]
        their_connector = make_connector(outsider)
        errors = associate(outsider, their_connector, [number], ForceAssociate=True)
        assert [e["ErrorCode"] for e in errors] == ["NotFound"]
        again = outsider.create_phone_number_order(
            ProductType="VoiceConnector", E164PhoneNumbers=[number]
        )["PhoneNumberOrder"]
        assert again["Status"] == "Failed"

    owned = phone(owner, number)
    assert owned == before
    assert owned["Status"] == "Unassigned"
    assert owned.get("Name") is None
    assert owner.get_phone_number_order(PhoneNumberOrderId=order_id)["PhoneNumberOrder"] == order


# The deletion queue purge.


@pytest.fixture
def sweeping_server(tmp_path: Path) -> Iterator[ChimeProxyServer]:
    """A server of this test's own whose sweeper runs every 0.2 s, with clock control."""
    running = ChimeProxyServer(
        database=database_url(tmp_path),
        extra_args=["--sweep-interval", "0.2", "--clock-control"],
        log_path=tmp_path / "server.log",
    )
    running.start()
    yield running
    running.stop()


def wait_until_gone(client: Any, number: str, timeout: float = 20.0) -> None:
    """Poll GetPhoneNumber until the sweeper has purged the number."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client.get_phone_number(PhoneNumberId=number)
        except client.exceptions.NotFoundException:
            return
        time.sleep(0.1)
    raise AssertionError(f"{number} was not purged within {timeout}s")


def test_deleted_numbers_are_released_after_seven_days(sweeping_server: ChimeProxyServer) -> None:
    owner = make_client(sweeping_server.url, aws_access_key_id="111111111111")
    old, recent, kept = order_numbers(owner, 3, AreaCode="702")
    owner.delete_phone_number(PhoneNumberId=old)
    sweeping_server.advance(6 * 86400)
    owner.delete_phone_number(PhoneNumberId=recent)
    time.sleep(0.6)  # a few sweeps: six days is not enough
    assert phone(owner, old)["Status"] == "DeleteInProgress"

    sweeping_server.advance(2 * 86400)
    wait_until_gone(owner, old)
    time.sleep(0.4)
    assert phone(owner, recent)["Status"] == "DeleteInProgress"
    assert phone(owner, kept)["Status"] == "Unassigned"
    with refused(404, "NotFoundException", "Phone number not found"):
        owner.restore_phone_number(PhoneNumberId=old)
    assert old not in [p["E164PhoneNumber"] for p in list_numbers(owner)]

    # Back at the carrier: offered again, and anyone may order it.
    offered = search_all(owner, 100, Country="US", AreaCode="702")[0]
    assert old in offered
    assert recent not in offered
    assert kept not in offered
    buyer = make_client(sweeping_server.url, aws_access_key_id="222222222222")
    order = buyer.create_phone_number_order(ProductType="VoiceConnector", E164PhoneNumbers=[old])
    assert order["PhoneNumberOrder"]["Status"] == "Successful"
    assert phone(buyer, old)["Status"] == "Unassigned"

    # A restored number leaves the queue and is never purged.
    owner.restore_phone_number(PhoneNumberId=recent)
    sweeping_server.advance(30 * 86400)
    time.sleep(0.6)
    assert phone(owner, recent)["Status"] == "Unassigned"


# Races on PostgreSQL, where writers do not queue up as they do on SQLite.


@pytest.fixture
def postgres_server(tmp_path: Path) -> Iterator[ChimeProxyServer]:
    """A server over a PostgreSQL database of this test's own, whatever the pass's backend."""
    with postgres_database() as database:
        running = ChimeProxyServer(database=database, log_path=tmp_path / "server.log")
        try:
            running.start()
            yield running
        finally:
            running.stop()


def at_once(work: list[Callable[[], Any]]) -> list[Any]:
    """Run every callable at the same moment in its own thread; their results or exceptions."""
    barrier = threading.Barrier(len(work))

    def start(job: Callable[[], Any]) -> Any:
        barrier.wait()
        try:
            return job()
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(len(work)) as pool:
        return list(pool.map(start, work))


def test_concurrent_orders_sell_each_number_once(postgres_server: ChimeProxyServer) -> None:
    buyers = [fresh_client(postgres_server) for _ in range(6)]
    for _ in range(5):
        wanted = buyers[0].search_available_phone_numbers(
            Country="US", AreaCode="415", MaxResults=3
        )["E164PhoneNumbers"]
        orders = at_once(
            [
                partial(
                    b.create_phone_number_order,
                    ProductType="VoiceConnector",
                    E164PhoneNumbers=wanted,
                )
                for b in buyers
            ]
        )
        errors = [o for o in orders if isinstance(o, Exception)]
        assert errors == []
        statuses = sorted(o["PhoneNumberOrder"]["Status"] for o in orders)
        assert statuses == ["Failed"] * 5 + ["Successful"]


def test_concurrent_associations_give_a_number_one_connector(
    postgres_server: ChimeProxyServer,
) -> None:
    owner = fresh_client(postgres_server)
    for _ in range(8):
        numbers = order_numbers(owner, 2, AreaCode="617")
        connectors = [make_connector(owner) for _ in range(5)]
        results = at_once([partial(associate, owner, c, numbers) for c in connectors])
        assert not [r for r in results if isinstance(r, Exception)]
        successes = sum(len(numbers) - len(errors) for errors in results)
        assert successes == len(numbers)
        for number in numbers:
            disassociate(owner, connector_of(owner, number), [number])


def test_disassociation_racing_session_creation_never_strands_a_session(
    postgres_server: ChimeProxyServer,
) -> None:
    owner = fresh_client(postgres_server)
    for _ in range(10):
        connector_id, numbers = proxy_connector(owner, pool=1, AreaCode="718")
        created, detached = at_once(
            [
                partial(
                    owner.create_proxy_session,
                    VoiceConnectorId=connector_id,
                    ParticipantPhoneNumbers=PARTICIPANTS,
                    Capabilities=["Voice"],
                ),
                partial(disassociate, owner, connector_id, numbers),
            ]
        )
        assert not isinstance(detached, Exception)
        if isinstance(created, Exception):
            assert_client_error(created, 400, "BadRequestException", "exhausted")
            assert detached == []
            assert all_sessions(owner, connector_id) == []
            continue
        # The session won: its number must still be on the connector.
        assert [e["PhoneNumberId"] for e in detached] == numbers
        assert connector_of(owner, numbers[0]) == connector_id
        owner.delete_proxy_session(
            VoiceConnectorId=connector_id, ProxySessionId=created["ProxySession"]["ProxySessionId"]
        )
