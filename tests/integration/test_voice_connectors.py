"""Voice connectors end to end through boto3: create, get, list, update, delete, isolation between
accounts and regions, and persistence across a server restart."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from botocore.config import Config

from chimeproxy.testing import ChimeProxyServer
from tests.conftest import database_url, make_client
from tests.integration.helpers import fresh_client, make_connector, order_numbers, refused

ID_RE = re.compile(r"[a-z0-9]{22}")
TIMESTAMP_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
OWNER = "111111111111"
STRANGER = "222222222222"


def server_now(server: ChimeProxyServer) -> datetime:
    """The server's clock (which clock control may have moved ahead of ours)."""
    return datetime.fromtimestamp(server.advance(0) / 1000, UTC)


def create_connectors(client: Any, count: int, prefix: str = "listed") -> list[str]:
    """Create `count` connectors; their ids in listing order (CreatedTimestamp, then id), which
    is creation order except among connectors created within the same millisecond."""
    created = [
        client.create_voice_connector(Name=f"{prefix} {i}", RequireEncryption=False)[
            "VoiceConnector"
        ]
        for i in range(count)
    ]
    created.sort(key=lambda c: (c["CreatedTimestamp"], c["VoiceConnectorId"]))
    return [c["VoiceConnectorId"] for c in created]


def list_all(client: Any, page_size: int) -> tuple[list[str], int]:
    """Every voice connector id of the caller, page by page; also the number of pages."""
    ids: list[str] = []
    pages = 0
    token: str | None = None
    while True:
        page = client.list_voice_connectors(
            MaxResults=page_size, **({"NextToken": token} if token else {})
        )
        pages += 1
        assert len(page["VoiceConnectors"]) <= page_size
        ids += [c["VoiceConnectorId"] for c in page["VoiceConnectors"]]
        token = page.get("NextToken")
        if not token:
            return ids, pages


# Create and get.


def test_create_answers_the_hosted_shapes(server: ChimeProxyServer, client: Any) -> None:
    before = server_now(server)
    answer = client.create_voice_connector(Name="shape check", RequireEncryption=True)
    after = server_now(server)
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 201
    connector = answer["VoiceConnector"]
    connector_id = connector["VoiceConnectorId"]
    assert ID_RE.fullmatch(connector_id)
    assert (
        connector["VoiceConnectorArn"] == f"arn:aws:chime:us-east-1:123456789012:vc/{connector_id}"
    )
    assert connector["OutboundHostName"] == f"{connector_id}.voiceconnector.chime.aws"
    assert connector["AwsRegion"] == "us-east-1"
    assert connector["Name"] == "shape check"
    assert connector["RequireEncryption"] is True
    created = connector["CreatedTimestamp"]
    assert created.tzinfo is not None
    assert before - timedelta(milliseconds=1) <= created <= after + timedelta(milliseconds=1)
    assert connector["UpdatedTimestamp"] == created

    fetched = client.get_voice_connector(VoiceConnectorId=connector_id)["VoiceConnector"]
    assert fetched == connector


def test_ids_are_unique(client: Any) -> None:
    ids = {make_connector(client) for _ in range(10)}
    assert len(ids) == 10
    assert all(ID_RE.fullmatch(i) for i in ids)


def test_arn_and_region_follow_the_caller(server: ChimeProxyServer) -> None:
    west = make_client(server.url, aws_access_key_id=OWNER, region_name="us-west-2")
    connector = west.create_voice_connector(Name="west", RequireEncryption=False)["VoiceConnector"]
    connector_id = connector["VoiceConnectorId"]
    assert connector["VoiceConnectorArn"] == f"arn:aws:chime:us-west-2:{OWNER}:vc/{connector_id}"
    assert connector["AwsRegion"] == "us-west-2"


def test_explicit_aws_region_is_kept(client: Any) -> None:
    connector = client.create_voice_connector(
        Name="frankfurt", RequireEncryption=False, AwsRegion="eu-central-1"
    )["VoiceConnector"]
    assert connector["AwsRegion"] == "eu-central-1"
    # The ARN names the region the resource lives in (the request's), not the media region.
    assert connector["VoiceConnectorArn"].startswith("arn:aws:chime:us-east-1:")
    fetched = client.get_voice_connector(VoiceConnectorId=connector["VoiceConnectorId"])
    assert fetched["VoiceConnector"]["AwsRegion"] == "eu-central-1"


def test_wire_body_has_every_member_sorted_with_millisecond_timestamps(client: Any) -> None:
    seen: dict[str, Any] = {}

    def capture(http_response: Any, **_: Any) -> None:
        seen["body"] = http_response.content
        seen["headers"] = http_response.headers

    event = "after-call.chime-sdk-voice.CreateVoiceConnector"
    client.meta.events.register(event, capture)
    try:
        client.create_voice_connector(Name="wire", RequireEncryption=False)
    finally:
        client.meta.events.unregister(event, capture)
    assert seen["headers"]["Content-Type"] == "application/json"
    assert seen["headers"]["x-amzn-RequestId"]
    connector = orjson.loads(seen["body"])["VoiceConnector"]
    assert list(connector) == sorted(connector)
    assert set(connector) == {
        "AwsRegion",
        "CreatedTimestamp",
        "IntegrationType",
        "Name",
        "NetworkType",
        "OutboundHostName",
        "RequireEncryption",
        "UpdatedTimestamp",
        "VoiceConnectorArn",
        "VoiceConnectorId",
    }
    assert connector["IntegrationType"] is None
    assert connector["NetworkType"] is None
    assert TIMESTAMP_RE.fullmatch(connector["CreatedTimestamp"])


def test_get_unknown_connector_is_not_found(client: Any) -> None:
    with refused(404, "NotFoundException", "a" * 22):
        client.get_voice_connector(VoiceConnectorId="a" * 22)


def test_error_body_carries_the_model_error_code(client: Any) -> None:
    seen: dict[str, Any] = {}

    def capture(http_response: Any, **_: Any) -> None:
        seen["body"] = http_response.content

    event = "after-call.chime-sdk-voice.DeleteVoiceConnector"
    client.meta.events.register(event, capture)
    try:
        with refused(404, "NotFoundException", "c" * 22):
            client.delete_voice_connector(VoiceConnectorId="c" * 22)
    finally:
        client.meta.events.unregister(event, capture)
    body = orjson.loads(seen["body"])
    assert body["Code"] == "NotFound"
    assert "c" * 22 in body["Message"]


def test_invalid_name_is_a_bad_request(server: ChimeProxyServer) -> None:
    caller = fresh_client(server)
    with refused(400, "BadRequestException", "Name", "pattern"):
        caller.create_voice_connector(Name="no/slashes", RequireEncryption=False)
    assert caller.list_voice_connectors()["VoiceConnectors"] == []


# List.


@pytest.mark.parametrize("page_size", [1, 2, 3])
def test_list_pages_through_everything_once_in_creation_order(
    server: ChimeProxyServer, page_size: int
) -> None:
    caller = fresh_client(server)
    created = create_connectors(caller, 7)
    ids, pages = list_all(caller, page_size)
    assert ids == created
    assert pages == -(-len(created) // page_size)


def test_list_without_max_results_returns_all(server: ChimeProxyServer) -> None:
    caller = fresh_client(server)
    created = create_connectors(caller, 4)
    page = caller.list_voice_connectors()
    assert [c["VoiceConnectorId"] for c in page["VoiceConnectors"]] == created
    assert "NextToken" not in page or page["NextToken"] is None


def test_list_of_new_account_is_empty(server: ChimeProxyServer) -> None:
    assert fresh_client(server).list_voice_connectors()["VoiceConnectors"] == []


def test_list_pagination_survives_inserts_between_pages(server: ChimeProxyServer) -> None:
    caller = fresh_client(server)
    created = create_connectors(caller, 4)
    first = caller.list_voice_connectors(MaxResults=2)
    server.advance(1)  # strictly after every connector of the first page
    later = make_connector(caller)
    rest: list[str] = []
    token = first["NextToken"]
    while token:
        page = caller.list_voice_connectors(MaxResults=2, NextToken=token)
        rest += [c["VoiceConnectorId"] for c in page["VoiceConnectors"]]
        token = page.get("NextToken")
    assert [c["VoiceConnectorId"] for c in first["VoiceConnectors"]] + rest == [*created, later]


def test_forged_next_token_is_a_bad_request(server: ChimeProxyServer) -> None:
    caller = fresh_client(server)
    for _ in range(3):
        make_connector(caller)
    token = caller.list_voice_connectors(MaxResults=1)["NextToken"]
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for forged in ("not-a-token", tampered, "eyJhIjoxfQ", "A" * 3000):
        with refused(400, "BadRequestException", "NextToken"):
            caller.list_voice_connectors(MaxResults=1, NextToken=forged)


def test_next_token_of_another_listing_or_account_is_a_bad_request(
    server: ChimeProxyServer,
) -> None:
    caller = fresh_client(server)
    for _ in range(2):
        make_connector(caller)
    token = caller.list_voice_connectors(MaxResults=1)["NextToken"]
    with refused(400, "BadRequestException", "NextToken"):
        caller.list_phone_number_orders(NextToken=token)
    with refused(400, "BadRequestException", "NextToken"):
        fresh_client(server).list_voice_connectors(NextToken=token)


@pytest.mark.parametrize("size", [0, 101])
def test_max_results_out_of_range_is_a_bad_request(server: ChimeProxyServer, size: int) -> None:
    unchecked = make_client(
        server.url, config=Config(parameter_validation=False, retries={"max_attempts": 1})
    )
    with refused(400, "BadRequestException", "MaxResults"):
        unchecked.list_voice_connectors(MaxResults=size)


# Update.


def test_update_changes_name_and_encryption_and_moves_updated_timestamp(
    server: ChimeProxyServer, client: Any
) -> None:
    original = client.create_voice_connector(Name="before", RequireEncryption=False)[
        "VoiceConnector"
    ]
    connector_id = original["VoiceConnectorId"]
    server.advance(5)
    updated = client.update_voice_connector(
        VoiceConnectorId=connector_id, Name="after", RequireEncryption=True
    )["VoiceConnector"]
    assert updated["Name"] == "after"
    assert updated["RequireEncryption"] is True
    assert updated["CreatedTimestamp"] == original["CreatedTimestamp"]
    assert updated["UpdatedTimestamp"] - original["UpdatedTimestamp"] >= timedelta(seconds=5)
    for unchanged in ("VoiceConnectorArn", "OutboundHostName", "AwsRegion", "VoiceConnectorId"):
        assert updated[unchanged] == original[unchanged]
    assert client.get_voice_connector(VoiceConnectorId=connector_id)["VoiceConnector"] == updated


def test_update_unknown_connector_is_not_found(server: ChimeProxyServer) -> None:
    caller = fresh_client(server)
    with refused(404, "NotFoundException", "b" * 22):
        caller.update_voice_connector(
            VoiceConnectorId="b" * 22, Name="nobody", RequireEncryption=False
        )
    assert caller.list_voice_connectors()["VoiceConnectors"] == []


# Delete.


def test_delete_answers_204_and_the_connector_is_gone(server: ChimeProxyServer) -> None:
    caller = fresh_client(server)
    keep = make_connector(caller)
    doomed = make_connector(caller)
    answer = caller.delete_voice_connector(VoiceConnectorId=doomed)
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 204
    with refused(404, "NotFoundException", doomed):
        caller.get_voice_connector(VoiceConnectorId=doomed)
    with refused(404, "NotFoundException", doomed):
        caller.delete_voice_connector(VoiceConnectorId=doomed)
    with refused(404, "NotFoundException", doomed):
        caller.update_voice_connector(VoiceConnectorId=doomed, Name="x", RequireEncryption=False)
    assert list_all(caller, 100)[0] == [keep]


def test_delete_with_numbers_associated_is_a_conflict(server: ChimeProxyServer) -> None:
    caller = fresh_client(server)
    connector_id = make_connector(caller)
    numbers = order_numbers(caller, 2)
    assert (
        caller.associate_phone_numbers_with_voice_connector(
            VoiceConnectorId=connector_id, E164PhoneNumbers=numbers
        )["PhoneNumberErrors"]
        == []
    )
    connector = caller.get_voice_connector(VoiceConnectorId=connector_id)["VoiceConnector"]

    def associated() -> list[str]:
        listed = caller.list_phone_numbers(FilterName="VoiceConnectorId", FilterValue=connector_id)
        return sorted(n["E164PhoneNumber"] for n in listed["PhoneNumbers"])

    with refused(409, "ConflictException", "still has phone numbers associated"):
        caller.delete_voice_connector(VoiceConnectorId=connector_id)
    assert caller.get_voice_connector(VoiceConnectorId=connector_id)["VoiceConnector"] == connector
    assert associated() == sorted(numbers)

    caller.disassociate_phone_numbers_from_voice_connector(
        VoiceConnectorId=connector_id, E164PhoneNumbers=numbers[:1]
    )
    with refused(409, "ConflictException", connector_id):
        caller.delete_voice_connector(VoiceConnectorId=connector_id)
    assert caller.get_voice_connector(VoiceConnectorId=connector_id)["VoiceConnector"] == connector
    assert associated() == numbers[1:]

    caller.disassociate_phone_numbers_from_voice_connector(
        VoiceConnectorId=connector_id, E164PhoneNumbers=numbers[1:]
    )
    caller.delete_voice_connector(VoiceConnectorId=connector_id)
    for number in numbers:
        phone = caller.get_phone_number(PhoneNumberId=number)["PhoneNumber"]
        assert phone["Status"] == "Unassigned"
        assert phone["Associations"] == []


def test_delete_removes_proxy_configuration_and_sessions(server: ChimeProxyServer) -> None:
    caller = fresh_client(server)
    connector_id = make_connector(caller)
    numbers = order_numbers(caller, 1)
    caller.associate_phone_numbers_with_voice_connector(
        VoiceConnectorId=connector_id, E164PhoneNumbers=numbers
    )
    caller.put_voice_connector_proxy(
        VoiceConnectorId=connector_id,
        DefaultSessionExpiryMinutes=60,
        PhoneNumberPoolCountries=["US"],
    )
    session = caller.create_proxy_session(
        VoiceConnectorId=connector_id,
        ParticipantPhoneNumbers=["+12065550150", "+14015550101"],
        Capabilities=["Voice"],
    )["ProxySession"]
    caller.delete_proxy_session(
        VoiceConnectorId=connector_id, ProxySessionId=session["ProxySessionId"]
    )
    caller.disassociate_phone_numbers_from_voice_connector(
        VoiceConnectorId=connector_id, E164PhoneNumbers=numbers
    )
    caller.delete_voice_connector(VoiceConnectorId=connector_id)
    # A new connector can take the same number at once: nothing of the old one lingers.
    successor = make_connector(caller)
    assert (
        caller.associate_phone_numbers_with_voice_connector(
            VoiceConnectorId=successor, E164PhoneNumbers=numbers
        )["PhoneNumberErrors"]
        == []
    )
    with refused(404, "NotFoundException", successor):
        caller.get_voice_connector_proxy(VoiceConnectorId=successor)


# Accounts and regions.


@pytest.fixture(scope="module")
def owned_connector(server: ChimeProxyServer) -> str:
    owner = make_client(server.url, aws_access_key_id=OWNER, region_name="us-east-1")
    return make_connector(owner, "owned by 111111111111")


def outsiders(server: ChimeProxyServer) -> Iterator[Any]:
    """Another account in the same region, and the same account in another region."""
    yield make_client(server.url, aws_access_key_id=STRANGER, region_name="us-east-1")
    yield make_client(server.url, aws_access_key_id=OWNER, region_name="us-west-2")


def test_connector_is_invisible_to_other_accounts_and_regions(
    server: ChimeProxyServer, owned_connector: str
) -> None:
    owner = make_client(server.url, aws_access_key_id=OWNER, region_name="us-east-1")
    before = owner.get_voice_connector(VoiceConnectorId=owned_connector)["VoiceConnector"]
    for outsider in outsiders(server):
        with refused(404, "NotFoundException", owned_connector):
            outsider.get_voice_connector(VoiceConnectorId=owned_connector)
        with refused(404, "NotFoundException", owned_connector):
            outsider.update_voice_connector(
                VoiceConnectorId=owned_connector, Name="hijack", RequireEncryption=True
            )
        with refused(404, "NotFoundException", owned_connector):
            outsider.delete_voice_connector(VoiceConnectorId=owned_connector)
        with refused(404, "NotFoundException", owned_connector):
            outsider.put_voice_connector_proxy(
                VoiceConnectorId=owned_connector,
                DefaultSessionExpiryMinutes=5,
                PhoneNumberPoolCountries=["US"],
            )
        with refused(404, "NotFoundException", owned_connector):
            outsider.associate_phone_numbers_with_voice_connector(
                VoiceConnectorId=owned_connector, E164PhoneNumbers=["+12065550199"]
            )
        with refused(404, "NotFoundException", owned_connector):
            outsider.list_phone_numbers(FilterName="VoiceConnectorId", FilterValue=owned_connector)
        assert owned_connector not in list_all(outsider, 100)[0]

    connector = owner.get_voice_connector(VoiceConnectorId=owned_connector)["VoiceConnector"]
    assert connector == before
    assert connector["Name"] == "owned by 111111111111"
    assert connector["RequireEncryption"] is False
    assert owned_connector in list_all(owner, 100)[0]
    with refused(404, "NotFoundException", owned_connector):
        owner.get_voice_connector_proxy(VoiceConnectorId=owned_connector)
    listed = owner.list_phone_numbers(FilterName="VoiceConnectorId", FilterValue=owned_connector)
    assert listed["PhoneNumbers"] == []


def test_default_account_is_used_for_non_numeric_keys(server: ChimeProxyServer) -> None:
    connector = make_client(server.url).create_voice_connector(
        Name="default account", RequireEncryption=False
    )["VoiceConnector"]
    assert ":123456789012:vc/" in connector["VoiceConnectorArn"]
    other_key = make_client(server.url, aws_access_key_id="AKIDANOTHERKEY")
    assert other_key.get_voice_connector(VoiceConnectorId=connector["VoiceConnectorId"])


# Restart.


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ChimeProxyServer]:
    """A server of this test's own, over a database file that outlives its process."""
    running = ChimeProxyServer(database=database_url(tmp_path), log_path=tmp_path / "server.log")
    running.start()
    yield running
    running.stop()


def test_everything_survives_a_restart(own_server: ChimeProxyServer) -> None:
    before = make_client(own_server.url, aws_access_key_id=OWNER)
    kept = create_connectors(before, 3, "kept")
    before.update_voice_connector(VoiceConnectorId=kept[0], Name="renamed", RequireEncryption=True)
    deleted = make_connector(before, "deleted")
    before.delete_voice_connector(VoiceConnectorId=deleted)
    numbers = order_numbers(before, 3, AreaCode="312")
    before.associate_phone_numbers_with_voice_connector(
        VoiceConnectorId=kept[1], E164PhoneNumbers=numbers[:2]
    )
    before.update_phone_number(PhoneNumberId=numbers[2], CallingName="Acme Corp")
    before.delete_phone_number(PhoneNumberId=numbers[2])
    connectors = {i: before.get_voice_connector(VoiceConnectorId=i)["VoiceConnector"] for i in kept}
    phones = {n: before.get_phone_number(PhoneNumberId=n)["PhoneNumber"] for n in numbers}
    orders = before.list_phone_number_orders()["PhoneNumberOrders"]
    token = before.list_voice_connectors(MaxResults=1)["NextToken"]

    own_server.stop()
    own_server.start()

    after = make_client(own_server.url, aws_access_key_id=OWNER)
    for connector_id, connector in connectors.items():
        assert (
            after.get_voice_connector(VoiceConnectorId=connector_id)["VoiceConnector"] == connector
        )
    assert connectors[kept[0]]["Name"] == "renamed"
    with refused(404, "NotFoundException", deleted):
        after.get_voice_connector(VoiceConnectorId=deleted)
    assert list_all(after, 2)[0] == kept
    # A token issued before the restart still continues the listing.
    rest = after.list_voice_connectors(MaxResults=5, NextToken=token)["VoiceConnectors"]
    assert [c["VoiceConnectorId"] for c in rest] == kept[1:]
    for number, phone in phones.items():
        assert after.get_phone_number(PhoneNumberId=number)["PhoneNumber"] == phone
    assert phones[numbers[0]]["Status"] == "Assigned"
    assert phones[numbers[2]]["Status"] == "DeleteInProgress"
    assert after.list_phone_number_orders()["PhoneNumberOrders"] == orders
    # Numbers owned before the restart are still not offered to anyone.
    offered = after.search_available_phone_numbers(Country="US", AreaCode="312", MaxResults=100)
    assert not set(numbers) & set(offered["E164PhoneNumbers"])
    with refused(409, "ConflictException", kept[1]):
        after.delete_voice_connector(VoiceConnectorId=kept[1])
