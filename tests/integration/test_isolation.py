"""Account and region isolation: for every implemented operation, another account and the same
account in another region try to read, list, change or delete the owner's voice connectors,
phone numbers, orders, proxy configuration and sessions, and the owner's state stays exactly as
it was."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from chimeproxy.operations import load_operations
from chimeproxy.operations.registry import OPERATIONS
from chimeproxy.testing import ChimeProxyServer
from tests.conftest import make_client
from tests.integration.helpers import every_item, order_numbers, refused

OWNER_ACCOUNT = "333333333333"
STRANGERS = {
    "other-account": {"aws_access_key_id": "444444444444", "region_name": "us-east-1"},
    "other-region": {"aws_access_key_id": OWNER_ACCOUNT, "region_name": "us-west-2"},
}
AREA_CODE = "307"


@dataclass
class World:
    """The owner's resources, and a NextToken the owner got from each paginated listing."""

    owner: Any
    connector: str
    empty_connector: str
    pool: list[str]
    spare: str
    deleted: str
    orders: list[str]
    sessions: list[str]
    tokens: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def world(server: ChimeProxyServer) -> World:
    owner = make_client(server.url, aws_access_key_id=OWNER_ACCOUNT, region_name="us-east-1")
    numbers = order_numbers(owner, 5, AreaCode=AREA_CODE)
    extra = order_numbers(owner, 1, AreaCode=AREA_CODE)
    pool, spare, deleted = numbers[:3], numbers[3], numbers[4]
    connector = owner.create_voice_connector(Name="owner", RequireEncryption=False)[
        "VoiceConnector"
    ]["VoiceConnectorId"]
    empty = owner.create_voice_connector(Name="owner empty", RequireEncryption=False)[
        "VoiceConnector"
    ]["VoiceConnectorId"]
    assert not owner.associate_phone_numbers_with_voice_connector(
        VoiceConnectorId=connector, E164PhoneNumbers=pool
    )["PhoneNumberErrors"]
    owner.put_voice_connector_proxy(
        VoiceConnectorId=connector, DefaultSessionExpiryMinutes=600, PhoneNumberPoolCountries=["US"]
    )
    sessions = [
        owner.create_proxy_session(
            VoiceConnectorId=connector,
            ParticipantPhoneNumbers=pair,
            Capabilities=["Voice", "SMS"],
        )["ProxySession"]["ProxySessionId"]
        for pair in (["+13035550111", "+13035550112"], ["+13035550113", "+13035550114"])
    ]
    owner.delete_phone_number(PhoneNumberId=deleted)
    orders = [
        o["PhoneNumberOrderId"] for o in owner.list_phone_number_orders()["PhoneNumberOrders"]
    ]
    assert len(orders) == 2 and extra
    tokens = {
        "ListVoiceConnectors": owner.list_voice_connectors(MaxResults=1)["NextToken"],
        "ListPhoneNumbers": owner.list_phone_numbers(MaxResults=1)["NextToken"],
        "ListPhoneNumberOrders": owner.list_phone_number_orders(MaxResults=1)["NextToken"],
        "ListProxySessions": owner.list_proxy_sessions(VoiceConnectorId=connector, MaxResults=1)[
            "NextToken"
        ],
        "SearchAvailablePhoneNumbers": owner.search_available_phone_numbers(
            Country="US", MaxResults=1
        )["NextToken"],
    }
    return World(owner, connector, empty, pool, spare, deleted, orders, sessions, tokens)


def snapshot(world: World) -> dict[str, Any]:
    """Everything the owner can see, read back through the API."""
    owner = world.owner

    def strip(answer: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in answer.items() if k != "ResponseMetadata"}

    numbers = strip(owner.list_phone_numbers())
    return {
        "connectors": strip(owner.list_voice_connectors()),
        "connector": strip(owner.get_voice_connector(VoiceConnectorId=world.connector)),
        "proxy": strip(owner.get_voice_connector_proxy(VoiceConnectorId=world.connector)),
        "numbers": numbers,
        "each number": [
            strip(owner.get_phone_number(PhoneNumberId=n["PhoneNumberId"]))
            for n in numbers["PhoneNumbers"]
        ],
        "orders": strip(owner.list_phone_number_orders()),
        "order": [strip(owner.get_phone_number_order(PhoneNumberOrderId=o)) for o in world.orders],
        "sessions": strip(owner.list_proxy_sessions(VoiceConnectorId=world.connector)),
        "each session": [
            strip(owner.get_proxy_session(VoiceConnectorId=world.connector, ProxySessionId=s))
            for s in world.sessions
        ],
    }


_own_connectors: dict[str, str] = {}


def own_connector(name: str, stranger: Any) -> str:
    """The stranger's own voice connector, created once per stranger."""
    if name not in _own_connectors:
        _own_connectors[name] = stranger.create_voice_connector(
            Name=f"{name} own", RequireEncryption=False
        )["VoiceConnector"]["VoiceConnectorId"]
    return _own_connectors[name]


# One case per operation: what the stranger tries, and what it must get. The owner's things do
# not exist for a stranger (404 NotFoundException), and the owner's page tokens are not tokens
# of the stranger's listings (400 BadRequestException).

Case = Callable[[World, Any, str], None]
CASES: dict[str, Case] = {}
NOT_FOUND = (404, "NotFoundException")
BAD_TOKEN = (400, "BadRequestException", "NextToken")


def case(name: str) -> Callable[[Case], Case]:
    def register(function: Case) -> Case:
        CASES[name] = function
        return function

    return register


@case("GetVoiceConnector")
def _(w: World, s: Any, who: str) -> None:
    with refused(*NOT_FOUND, w.connector):
        s.get_voice_connector(VoiceConnectorId=w.connector)


@case("UpdateVoiceConnector")
def _(w: World, s: Any, who: str) -> None:
    with refused(*NOT_FOUND, w.connector):
        s.update_voice_connector(
            VoiceConnectorId=w.connector, Name="hijacked", RequireEncryption=True
        )


@case("DeleteVoiceConnector")
def _(w: World, s: Any, who: str) -> None:
    for connector in (w.empty_connector, w.connector):
        with refused(*NOT_FOUND, connector):
            s.delete_voice_connector(VoiceConnectorId=connector)


@case("ListVoiceConnectors")
def _(w: World, s: Any, who: str) -> None:
    own_connector(who, s)
    ids = {c["VoiceConnectorId"] for c in every_item(s.list_voice_connectors, "VoiceConnectors")}
    assert ids and not ids & {w.connector, w.empty_connector}
    with refused(*BAD_TOKEN):
        s.list_voice_connectors(NextToken=w.tokens["ListVoiceConnectors"])


@case("CreateVoiceConnector")
def _(w: World, s: Any, who: str) -> None:
    created = s.create_voice_connector(Name="owner", RequireEncryption=False)["VoiceConnector"]
    assert f":{OWNER_ACCOUNT}:" not in created["VoiceConnectorArn"] or who == "other-region"
    assert ":us-east-1:" not in created["VoiceConnectorArn"] or who == "other-account"


@case("GetPhoneNumber")
def _(w: World, s: Any, who: str) -> None:
    for number in (w.pool[0], w.spare, w.deleted, w.spare.lstrip("+")):
        with refused(*NOT_FOUND):
            s.get_phone_number(PhoneNumberId=number)


@case("UpdatePhoneNumber")
def _(w: World, s: Any, who: str) -> None:
    for number in (w.pool[0], w.spare):
        with refused(*NOT_FOUND):
            s.update_phone_number(PhoneNumberId=number, CallingName="X Y")


@case("DeletePhoneNumber")
def _(w: World, s: Any, who: str) -> None:
    with refused(*NOT_FOUND):
        s.delete_phone_number(PhoneNumberId=w.spare)


@case("RestorePhoneNumber")
def _(w: World, s: Any, who: str) -> None:
    with refused(*NOT_FOUND):
        s.restore_phone_number(PhoneNumberId=w.deleted)


@case("ListPhoneNumbers")
def _(w: World, s: Any, who: str) -> None:
    listed = {n["E164PhoneNumber"] for n in every_item(s.list_phone_numbers, "PhoneNumbers")}
    assert not listed & {*w.pool, w.spare, w.deleted}
    with refused(*NOT_FOUND, w.connector):
        s.list_phone_numbers(FilterName="VoiceConnectorId", FilterValue=w.connector)
    with refused(*BAD_TOKEN):
        s.list_phone_numbers(NextToken=w.tokens["ListPhoneNumbers"])


@case("CreatePhoneNumberOrder")
def _(w: World, s: Any, who: str) -> None:
    order = s.create_phone_number_order(
        ProductType="VoiceConnector", E164PhoneNumbers=[*w.pool, w.spare, w.deleted]
    )["PhoneNumberOrder"]
    assert order["Status"] == "Failed"
    assert {n["Status"] for n in order["OrderedPhoneNumbers"]} == {"Failed"}


@case("GetPhoneNumberOrder")
def _(w: World, s: Any, who: str) -> None:
    for order in w.orders:
        with refused(*NOT_FOUND, order):
            s.get_phone_number_order(PhoneNumberOrderId=order)


@case("ListPhoneNumberOrders")
def _(w: World, s: Any, who: str) -> None:
    listed = every_item(s.list_phone_number_orders, "PhoneNumberOrders")
    assert not {o["PhoneNumberOrderId"] for o in listed} & set(w.orders)
    with refused(*BAD_TOKEN):
        s.list_phone_number_orders(NextToken=w.tokens["ListPhoneNumberOrders"])


@case("SearchAvailablePhoneNumbers")
def _(w: World, s: Any, who: str) -> None:
    offered = every_item(
        s.search_available_phone_numbers, "E164PhoneNumbers", Country="US", AreaCode=AREA_CODE
    )
    assert offered and not set(offered) & {*w.pool, w.spare, w.deleted}
    with refused(*BAD_TOKEN):
        s.search_available_phone_numbers(
            Country="US", NextToken=w.tokens["SearchAvailablePhoneNumbers"]
        )


@case("ListSupportedPhoneNumberCountries")
def _(w: World, s: Any, who: str) -> None:
    # Nothing of the owner's is in this answer; it must still leave the owner's state alone.
    assert s.list_supported_phone_number_countries(ProductType="VoiceConnector")[
        "PhoneNumberCountries"
    ]


@case("AssociatePhoneNumbersWithVoiceConnector")
def _(w: World, s: Any, who: str) -> None:
    with refused(*NOT_FOUND, w.empty_connector):
        s.associate_phone_numbers_with_voice_connector(
            VoiceConnectorId=w.empty_connector, E164PhoneNumbers=w.pool
        )
    # The owner's numbers onto the stranger's own connector, even forced: per-number errors.
    errors = s.associate_phone_numbers_with_voice_connector(
        VoiceConnectorId=own_connector(who, s),
        E164PhoneNumbers=[*w.pool, w.spare],
        ForceAssociate=True,
    )["PhoneNumberErrors"]
    assert {e["PhoneNumberId"] for e in errors} == {*w.pool, w.spare}
    assert {e["ErrorCode"] for e in errors} == {"NotFound"}


@case("DisassociatePhoneNumbersFromVoiceConnector")
def _(w: World, s: Any, who: str) -> None:
    with refused(*NOT_FOUND, w.connector):
        s.disassociate_phone_numbers_from_voice_connector(
            VoiceConnectorId=w.connector, E164PhoneNumbers=w.pool
        )
    errors = s.disassociate_phone_numbers_from_voice_connector(
        VoiceConnectorId=own_connector(who, s), E164PhoneNumbers=w.pool
    )["PhoneNumberErrors"]
    assert {e["PhoneNumberId"] for e in errors} == set(w.pool)


@case("PutVoiceConnectorProxy")
def _(w: World, s: Any, who: str) -> None:
    for connector in (w.connector, w.empty_connector):
        with refused(*NOT_FOUND, connector):
            s.put_voice_connector_proxy(
                VoiceConnectorId=connector,
                DefaultSessionExpiryMinutes=1,
                PhoneNumberPoolCountries=["GB"],
                Disabled=True,
            )


@case("GetVoiceConnectorProxy")
def _(w: World, s: Any, who: str) -> None:
    with refused(*NOT_FOUND, w.connector):
        s.get_voice_connector_proxy(VoiceConnectorId=w.connector)


@case("DeleteVoiceConnectorProxy")
def _(w: World, s: Any, who: str) -> None:
    with refused(*NOT_FOUND, w.connector):
        s.delete_voice_connector_proxy(VoiceConnectorId=w.connector)


@case("CreateProxySession")
def _(w: World, s: Any, who: str) -> None:
    with refused(*NOT_FOUND, w.connector):
        s.create_proxy_session(
            VoiceConnectorId=w.connector,
            ParticipantPhoneNumbers=["+13035550121", "+13035550122"],
            Capabilities=["Voice"],
        )


def _session_targets(w: World, s: Any, who: str) -> list[tuple[str, str]]:
    # The owner's connector, and the stranger's own connector with the owner's session id.
    own = own_connector(who, s)
    return [(connector, session) for connector in (w.connector, own) for session in w.sessions]


@case("GetProxySession")
def _(w: World, s: Any, who: str) -> None:
    for connector, session in _session_targets(w, s, who):
        with refused(*NOT_FOUND):
            s.get_proxy_session(VoiceConnectorId=connector, ProxySessionId=session)


@case("UpdateProxySession")
def _(w: World, s: Any, who: str) -> None:
    for connector, session in _session_targets(w, s, who):
        with refused(*NOT_FOUND):
            s.update_proxy_session(
                VoiceConnectorId=connector,
                ProxySessionId=session,
                Capabilities=["Voice"],
                ExpiryMinutes=1,
            )


@case("DeleteProxySession")
def _(w: World, s: Any, who: str) -> None:
    for connector, session in _session_targets(w, s, who):
        with refused(*NOT_FOUND):
            s.delete_proxy_session(VoiceConnectorId=connector, ProxySessionId=session)


@case("ListProxySessions")
def _(w: World, s: Any, who: str) -> None:
    with refused(*NOT_FOUND, w.connector):
        s.list_proxy_sessions(VoiceConnectorId=w.connector)
    own = own_connector(who, s)
    assert s.list_proxy_sessions(VoiceConnectorId=own)["ProxySessions"] == []
    with refused(*BAD_TOKEN):
        s.list_proxy_sessions(VoiceConnectorId=own, NextToken=w.tokens["ListProxySessions"])


load_operations()


def test_every_implemented_operation_has_an_isolation_case() -> None:
    assert sorted(set(OPERATIONS) - set(CASES)) == []


@pytest.fixture(scope="module")
def strangers(server: ChimeProxyServer) -> dict[str, Any]:
    return {name: make_client(server.url, **options) for name, options in STRANGERS.items()}


@pytest.fixture
def unchanged(world: World) -> Iterator[None]:
    """Assert after the test that the owner sees exactly what it saw before."""
    before = snapshot(world)
    yield
    assert snapshot(world) == before


@pytest.mark.parametrize("who", sorted(STRANGERS))
@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_no_operation_crosses_accounts_or_regions(
    world: World, strangers: dict[str, Any], unchanged: None, operation: str, who: str
) -> None:
    if operation not in CASES:
        pytest.fail(f"no isolation case for {operation}")
    CASES[operation](world, strangers[who], who)
