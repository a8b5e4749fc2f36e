"""Phone numbers: the carrier catalog, orders, owned numbers and their association with voice
connectors."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, RowMapping

from chimeproxy import shapes
from chimeproxy.domain.catalog import CatalogNumber
from chimeproxy.domain.phone import InvalidPhoneNumber, normalize_e164
from chimeproxy.domain.phone_numbers import PhoneNumberStatus
from chimeproxy.operations.common import (
    DEFAULT_PAGE,
    e164_members,
    next_token,
    page_after,
    require_connector,
)
from chimeproxy.operations.registry import Context, Output, operation
from chimeproxy.protocol.errors import BadRequestException, NotFoundException
from chimeproxy.store import phone_numbers
from chimeproxy.uuids import random_uuid

SEARCH_PAGE = 100


def _require_number(connection: Connection, context: Context, raw_id: str) -> RowMapping:
    try:
        e164 = normalize_e164(raw_id)
    except InvalidPhoneNumber:
        e164 = None
    row = phone_numbers.find(connection, context.account, context.region, e164) if e164 else None
    if row is None:
        raise NotFoundException("Phone number not found.")
    return row


@operation("ListSupportedPhoneNumberCountries")
def list_supported_phone_number_countries(context: Context, params: dict[str, Any]) -> Output:
    countries = context.services.catalog().countries()
    return {
        "PhoneNumberCountries": [
            {"CountryCode": country, "SupportedPhoneNumberTypes": sorted(types)}
            for country, types in sorted(countries.items())
        ]
    }


@operation("SearchAvailablePhoneNumbers")
def search_available_phone_numbers(context: Context, params: dict[str, Any]) -> Output:
    if params.get("City") and not params.get("State"):
        raise BadRequestException("Invalid value for City: State is required with City.")
    limit = params.get("MaxResults", SEARCH_PAGE)
    after = page_after(context, "search", params.get("NextToken"))
    filters = {
        "country": params.get("Country") or ("US" if params.get("TollFreePrefix") else None),
        "area_code": params.get("AreaCode"),
        "city": params.get("City"),
        "state": params.get("State"),
        "toll_free_prefix": params.get("TollFreePrefix"),
        "number_type": params.get("PhoneNumberType"),
    }
    catalog = context.services.catalog()
    found: list[CatalogNumber] = []
    cursor = str(after[0]) if after else None
    with context.services.db.read() as connection:
        # Skip numbers someone already owns, a chunk at a time, until one more than a page.
        while len(found) <= limit:
            chunk = catalog.search(**filters, after=cursor, limit=limit + 1)
            if not chunk:
                break
            owned = phone_numbers.owned_among(connection, (n.e164 for n in chunk))
            found.extend(n for n in chunk if n.e164 not in owned)
            cursor = chunk[-1].e164
    return {
        "E164PhoneNumbers": [n.e164 for n in found[:limit]],
        "NextToken": next_token(context, "search", found, limit, lambda n: [n.e164]),
    }


@operation("CreatePhoneNumberOrder")
def create_phone_number_order(context: Context, params: dict[str, Any]) -> Output:
    requested = e164_members(params["E164PhoneNumbers"], "E164PhoneNumbers")
    catalog = context.services.catalog()
    services = context.services

    def place(connection: Connection) -> dict[str, Any]:
        # A concurrent order that took one of these numbers first makes the unique constraint
        # fail the insert; the whole order then runs again and reports that number Failed.
        now = services.clock.now_ms()
        order_id = random_uuid()
        owned = phone_numbers.owned_among(connection, requested)
        results: list[tuple[str, str]] = []
        rows = []
        for e164 in requested:
            entry = catalog.get(e164)
            if entry is None or e164 in owned:
                results.append((e164, "Failed"))
                continue
            results.append((e164, "Acquired"))
            rows.append(
                {
                    "account": context.account,
                    "region": context.region,
                    "e164": e164,
                    "country": entry.country,
                    "area_code": entry.area_code,
                    "number_type": entry.number_type,
                    "product_type": params["ProductType"],
                    "status": PhoneNumberStatus.UNASSIGNED,
                    "capabilities": ",".join(sorted(entry.capabilities)),
                    "name": params.get("Name"),
                    "order_id": order_id,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        phone_numbers.insert_many(connection, rows)
        acquired = len(rows)
        status = "Successful" if acquired == len(requested) else "Partial" if acquired else "Failed"
        order = {
            "account": context.account,
            "region": context.region,
            "id": order_id,
            "product_type": params["ProductType"],
            "order_type": "New",
            "status": status,
            "numbers": orjson.dumps(results).decode(),
            "created_at": now,
            "updated_at": now,
        }
        phone_numbers.insert_order(connection, order)
        return order

    order = services.db.write_retrying(place)
    return {"PhoneNumberOrder": shapes.phone_number_order(order)}  # type: ignore[arg-type]


@operation("GetPhoneNumberOrder")
def get_phone_number_order(context: Context, params: dict[str, Any]) -> Output:
    with context.services.db.read() as connection:
        row = phone_numbers.find_order(
            connection, context.account, context.region, params["PhoneNumberOrderId"]
        )
    if row is None:
        raise NotFoundException(f"Phone number order {params['PhoneNumberOrderId']} not found.")
    return {"PhoneNumberOrder": shapes.phone_number_order(row)}


@operation("ListPhoneNumberOrders")
def list_phone_number_orders(context: Context, params: dict[str, Any]) -> Output:
    limit = params.get("MaxResults", DEFAULT_PAGE)
    after = page_after(context, "orders", params.get("NextToken"))
    with context.services.db.read() as connection:
        rows = phone_numbers.order_page(
            connection, context.account, context.region, tuple(after) if after else None, limit + 1
        )
    return {
        "PhoneNumberOrders": [shapes.phone_number_order(row) for row in rows[:limit]],
        "NextToken": next_token(
            context, "orders", rows, limit, lambda r: [r["created_at"], r["id"]]
        ),
    }


@operation("GetPhoneNumber")
def get_phone_number(context: Context, params: dict[str, Any]) -> Output:
    with context.services.db.read() as connection:
        row = _require_number(connection, context, params["PhoneNumberId"])
    return {"PhoneNumber": shapes.phone_number(row)}


@operation("ListPhoneNumbers")
def list_phone_numbers(context: Context, params: dict[str, Any]) -> Output:
    limit = params.get("MaxResults", DEFAULT_PAGE)
    after = page_after(context, "phone-numbers", params.get("NextToken"))
    filter_name, filter_value = params.get("FilterName"), params.get("FilterValue")
    if (filter_name is None) != (filter_value is None):
        raise BadRequestException("FilterName and FilterValue must be given together.")
    with context.services.db.read() as connection:
        connector_pk = None
        if filter_name is not None:
            if filter_name != shapes.VOICE_CONNECTOR_ASSOCIATION:
                return {"PhoneNumbers": [], "NextToken": None}
            connector = require_connector(connection, context, filter_value)
            connector_pk = connector["pk"]
        rows = phone_numbers.page(
            connection,
            context.account,
            context.region,
            status=params.get("Status"),
            product_type=params.get("ProductType"),
            connector_pk=connector_pk,
            after=str(after[0]) if after else None,
            limit=limit + 1,
        )
    return {
        "PhoneNumbers": [shapes.phone_number(row) for row in rows[:limit]],
        "NextToken": next_token(context, "phone-numbers", rows, limit, lambda r: [r["e164"]]),
    }


@operation("UpdatePhoneNumber")
def update_phone_number(context: Context, params: dict[str, Any]) -> Output:
    now = context.services.clock.now_ms()
    with context.services.db.write() as connection:
        row = _require_number(connection, context, params["PhoneNumberId"])
        changes: dict[str, Any] = {"updated_at": now}
        for member, column in (
            ("Name", "name"),
            ("CallingName", "calling_name"),
            ("ProductType", "product_type"),
        ):
            if member in params:
                changes[column] = params[member] or None
        phone_numbers.update_number(connection, row["pk"], changes)
        row = _require_number(connection, context, row["e164"])
    return {"PhoneNumber": shapes.phone_number(row)}


@operation("DeletePhoneNumber")
def delete_phone_number(context: Context, params: dict[str, Any]) -> Output:
    now = context.services.clock.now_ms()
    with context.services.db.write() as connection:
        row = _require_number(connection, context, params["PhoneNumberId"])
        if row["voice_connector_pk"] is not None:
            raise BadRequestException(
                "The phone number is associated with a voice connector; disassociate it first."
            )
        if row["status"] != PhoneNumberStatus.DELETE_IN_PROGRESS:
            phone_numbers.update_number(
                connection,
                row["pk"],
                {
                    "status": PhoneNumberStatus.DELETE_IN_PROGRESS,
                    "deletion_at": now,
                    "updated_at": now,
                },
            )
    return None


@operation("RestorePhoneNumber")
def restore_phone_number(context: Context, params: dict[str, Any]) -> Output:
    now = context.services.clock.now_ms()
    with context.services.db.write() as connection:
        row = _require_number(connection, context, params["PhoneNumberId"])
        if row["status"] != PhoneNumberStatus.DELETE_IN_PROGRESS:
            raise BadRequestException("Only a phone number in the deletion queue can be restored.")
        phone_numbers.update_number(
            connection,
            row["pk"],
            {"status": PhoneNumberStatus.UNASSIGNED, "deletion_at": None, "updated_at": now},
        )
        row = _require_number(connection, context, row["e164"])
    return {"PhoneNumber": shapes.phone_number(row)}


def _number_error(e164: str, code: str, message: str) -> dict[str, str]:
    return {"PhoneNumberId": e164, "ErrorCode": code, "ErrorMessage": message}


@operation("AssociatePhoneNumbersWithVoiceConnector")
def associate_phone_numbers(context: Context, params: dict[str, Any]) -> Output:
    now = context.services.clock.now_ms()
    force = bool(params.get("ForceAssociate"))
    requested = e164_members(params["E164PhoneNumbers"], "E164PhoneNumbers")
    errors = []
    with context.services.db.write() as connection:
        connector = require_connector(connection, context, params["VoiceConnectorId"])
        rows = phone_numbers.find_many(
            connection, context.account, context.region, requested, for_update=True
        )
        for e164 in dict.fromkeys(requested):
            row = rows.get(e164)
            if row is None:
                errors.append(_number_error(e164, "NotFound", "Phone number not found."))
                continue
            if row["status"] == PhoneNumberStatus.DELETE_IN_PROGRESS:
                errors.append(
                    _number_error(e164, "BadRequest", "The phone number is being deleted.")
                )
                continue
            current = row["voice_connector_pk"]
            if current == connector["pk"]:
                continue
            if current is not None:
                if not force:
                    errors.append(
                        _number_error(
                            e164,
                            "PhoneNumberAssociationsExist",
                            "The phone number is associated with another voice connector; "
                            "use ForceAssociate to move it.",
                        )
                    )
                    continue
                if phone_numbers.in_active_session(connection, e164, now):
                    errors.append(
                        _number_error(
                            e164,
                            "Conflict",
                            "An active proxy session uses this phone number; ForceAssociate "
                            "does not move numbers in use.",
                        )
                    )
                    continue
            phone_numbers.update_number(
                connection,
                row["pk"],
                {
                    "voice_connector_pk": connector["pk"],
                    "status": PhoneNumberStatus.ASSIGNED,
                    "associated_at": now,
                    "updated_at": now,
                },
            )
    return {"PhoneNumberErrors": errors}


@operation("DisassociatePhoneNumbersFromVoiceConnector")
def disassociate_phone_numbers(context: Context, params: dict[str, Any]) -> Output:
    now = context.services.clock.now_ms()
    requested = e164_members(params["E164PhoneNumbers"], "E164PhoneNumbers")
    errors = []
    with context.services.db.write() as connection:
        connector = require_connector(connection, context, params["VoiceConnectorId"])
        rows = phone_numbers.find_many(
            connection, context.account, context.region, requested, for_update=True
        )
        for e164 in dict.fromkeys(requested):
            row = rows.get(e164)
            if row is None or row["voice_connector_pk"] != connector["pk"]:
                errors.append(
                    _number_error(
                        e164, "NotFound", "The phone number is not associated with this connector."
                    )
                )
                continue
            if phone_numbers.in_active_session(connection, e164, now):
                errors.append(
                    _number_error(
                        e164,
                        "Conflict",
                        "An Open or InProgress proxy session uses this phone number; "
                        "disassociating it would cut off calls.",
                    )
                )
                continue
            phone_numbers.update_number(
                connection,
                row["pk"],
                {
                    "voice_connector_pk": None,
                    "status": PhoneNumberStatus.UNASSIGNED,
                    "associated_at": None,
                    "updated_at": now,
                },
            )
    return {"PhoneNumberErrors": errors}
