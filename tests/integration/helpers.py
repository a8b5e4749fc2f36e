"""Set-up steps many tests share, done through the public API as a user would."""

from __future__ import annotations

import itertools
from typing import Any

_names = itertools.count()
_participants = itertools.count()


def person(area_code: str = "206") -> str:
    """A fresh participant number, unique in this test process; never a catalog number (the
    catalog sells only 555 numbers) nor one of a connector's."""
    return f"+1{area_code}{2_000_000 + next(_participants):07d}"


def order_numbers(client: Any, count: int, **search: Any) -> list[str]:
    """Search the catalog and order `count` numbers (all or nothing)."""
    search.setdefault("Country", "US")
    found: list[str] = []
    token = None
    while len(found) < count:
        page = client.search_available_phone_numbers(
            MaxResults=min(100, count - len(found)),
            **search,
            **({"NextToken": token} if token else {}),
        )
        found += page["E164PhoneNumbers"]
        token = page.get("NextToken")
        if not token:
            break
    assert len(found) >= count, f"catalog has only {len(found)} numbers for {search}"
    found = found[:count]
    for start in range(0, count, 100):
        order = client.create_phone_number_order(
            ProductType="VoiceConnector", E164PhoneNumbers=found[start : start + 100]
        )["PhoneNumberOrder"]
        assert order["Status"] == "Successful"
    return found


def make_connector(client: Any, name: str | None = None) -> str:
    connector = client.create_voice_connector(
        Name=name or f"connector {next(_names)}", RequireEncryption=False
    )["VoiceConnector"]
    return connector["VoiceConnectorId"]


def proxy_connector(
    client: Any,
    pool: int = 5,
    *,
    countries: tuple[str, ...] = ("US",),
    expiry: int = 60,
    numbers: list[str] | None = None,
    **search: Any,
) -> tuple[str, list[str]]:
    """A voice connector with `pool` numbers associated and a proxy configuration."""
    connector_id = make_connector(client)
    numbers = numbers if numbers is not None else order_numbers(client, pool, **search)
    errors = client.associate_phone_numbers_with_voice_connector(
        VoiceConnectorId=connector_id, E164PhoneNumbers=numbers
    )["PhoneNumberErrors"]
    assert errors == []
    client.put_voice_connector_proxy(
        VoiceConnectorId=connector_id,
        DefaultSessionExpiryMinutes=expiry,
        PhoneNumberPoolCountries=list(countries),
    )
    return connector_id, numbers
