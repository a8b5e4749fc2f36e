"""The answers' shapes: what the API operations, the data plane's endpoints, the events and
the console show of each resource, built from store rows. One place, so that every reader of a
session or an interaction sees the same members written the same way."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from chimeproxy.domain import ids, lifecycle
from chimeproxy.protocol.serializer import format_millis, format_timestamp
from chimeproxy.store.proxy import SHOWN_SESSION_COLUMNS

Row = Mapping[str, Any]

CAPABILITY_NAMES = (
    "InboundCall",
    "OutboundCall",
    "InboundSMS",
    "OutboundSMS",
    "InboundMMS",
    "OutboundMMS",
)
VOICE_CONNECTOR_ASSOCIATION = "VoiceConnectorId"


def voice_connector(row: Row, region: str, account: str) -> dict[str, Any]:
    return {
        "VoiceConnectorId": row["id"],
        "AwsRegion": row["aws_region"],
        "Name": row["name"],
        "OutboundHostName": ids.outbound_host_name(row["id"]),
        "RequireEncryption": row["require_encryption"],
        "CreatedTimestamp": row["created_at"],
        "UpdatedTimestamp": row["updated_at"],
        "VoiceConnectorArn": ids.voice_connector_arn(region, account, row["id"]),
        "IntegrationType": row["integration_type"],
        "NetworkType": row["network_type"],
    }


def phone_number(row: Row) -> dict[str, Any]:
    held = set(row["capabilities"].split(","))
    associations = []
    if row["voice_connector_id"] is not None:
        associations.append(
            {
                "Name": VOICE_CONNECTOR_ASSOCIATION,
                "Value": row["voice_connector_id"],
                "AssociatedTimestamp": row["associated_at"],
            }
        )
    return {
        "PhoneNumberId": row["e164"],
        "E164PhoneNumber": row["e164"],
        "Country": row["country"],
        "Type": row["number_type"],
        "ProductType": row["product_type"],
        "Status": row["status"],
        "Capabilities": {name: name in held for name in CAPABILITY_NAMES},
        "Associations": associations,
        "CallingName": row["calling_name"],
        "CallingNameStatus": "UpdateSucceeded" if row["calling_name"] else "Unassigned",
        "CreatedTimestamp": row["created_at"],
        "UpdatedTimestamp": row["updated_at"],
        "DeletionTimestamp": row["deletion_at"],
        "OrderId": row["order_id"],
        "Name": row["name"],
    }


def phone_number_order(row: Row) -> dict[str, Any]:
    return {
        "PhoneNumberOrderId": row["id"],
        "ProductType": row["product_type"],
        "Status": row["status"],
        "OrderType": row["order_type"],
        "OrderedPhoneNumbers": [
            {"E164PhoneNumber": number, "Status": status}
            for number, status in orjson.loads(row["numbers"])
        ],
        "CreatedTimestamp": row["created_at"],
        "UpdatedTimestamp": row["updated_at"],
        "FocDate": None,
    }


def proxy_config(row: Row) -> dict[str, Any]:
    return {
        "DefaultSessionExpiryMinutes": row["default_expiry_minutes"],
        "Disabled": row["disabled"],
        "FallBackPhoneNumber": row["fallback_number"],
        "PhoneNumberCountries": row["countries"].split(","),
    }


def proxy_session(row: Row, connector_id: str, now: int) -> dict[str, Any]:
    status, ended = lifecycle.effective(row["status"], row["expires_at"], row["ended_at"], now)
    geo_params = None
    if row["geo_country"] is not None or row["geo_area_code"] is not None:
        geo_params = {"Country": row["geo_country"], "AreaCode": row["geo_area_code"]}
    number = row["proxy_number"]
    # The hosted service's canonical order, whatever order the request used (docs/behaviour.md):
    # capabilities sorted, participants by number; ExpiryMinutes is the effective expiry.
    participants = sorted((row["participant_1"], row["participant_2"]))
    return {
        "VoiceConnectorId": connector_id,
        "ProxySessionId": row["id"],
        "Name": row["name"],
        "Status": status,
        "ExpiryMinutes": row["expiry_minutes"],
        "Capabilities": sorted(row["capabilities"].split(",")),
        "CreatedTimestamp": row["created_at"],
        "UpdatedTimestamp": row["updated_at"],
        "EndedTimestamp": ended,
        "Participants": [
            {"PhoneNumber": participant, "ProxyPhoneNumber": number} for participant in participants
        ],
        "NumberSelectionBehavior": row["number_selection_behavior"],
        "GeoMatchLevel": row["geo_match_level"],
        "GeoMatchParams": geo_params,
    }


def proxy_session_wire(values: Sequence[Any], connector_id: str, now: int) -> dict[str, Any]:
    """`proxy_session` already in wire form, for Get and List (a page holds 100), from the
    session's SHOWN_SESSION_COLUMNS as the driver reads them: the same members with the same
    values, in the model's order, timestamps formatted, in one pass instead of a shape and then
    the model-driven encoder (docs/performance.md). A plain dict, which the encoder passes
    through inside an `Encoded` output. A unit test holds it to `OutputSerializer`'s encoding
    of `proxy_session` for any row."""
    (
        session_id,
        name,
        status,
        capabilities,
        expiry_minutes,
        behavior,
        level,
        country,
        area_code,
        first,
        second,
        number,
        created_at,
        updated_at,
        expires_at,
        ended_at,
    ) = values
    status, ended = lifecycle.effective(status, expires_at, ended_at, now)
    if second < first:
        first, second = second, first
    shown = capabilities.split(",")
    if len(shown) > 1:
        shown.sort()
    created = format_millis(created_at)
    return {
        "Capabilities": shown,
        "CreatedTimestamp": created,
        "EndedTimestamp": None if ended is None else format_millis(ended),
        "ExpiryMinutes": expiry_minutes,
        "GeoMatchLevel": level,
        "GeoMatchParams": (
            None
            if country is None and area_code is None
            else {"AreaCode": area_code, "Country": country}
        ),
        "Name": name,
        "NumberSelectionBehavior": behavior,
        "Participants": [
            {"PhoneNumber": first, "ProxyPhoneNumber": number},
            {"PhoneNumber": second, "ProxyPhoneNumber": number},
        ],
        "ProxySessionId": session_id,
        "Status": status,
        # Most sessions were never updated: one string serves both.
        "UpdatedTimestamp": created if updated_at == created_at else format_millis(updated_at),
        "VoiceConnectorId": connector_id,
    }


def shown_session(row: Row) -> tuple[Any, ...]:
    """A session row's SHOWN_SESSION_COLUMNS, for `proxy_session_wire`."""
    return tuple(row[name] for name in SHOWN_SESSION_COLUMNS)


def interaction(
    values: dict[str, Any] | Row,
    connector_id: str,
    session_id: str | None,
    *,
    with_body: bool,
) -> dict[str, Any]:
    """An interaction as the listing endpoint and the events show it (keys sorted)."""
    ended = values["ended_at"]
    return {
        "Action": values["action"],
        "CallId": values["call_id"],
        "Direction": values["direction"],
        "DurationSeconds": values["duration_seconds"],
        "EndedTimestamp": format_timestamp(ended) if ended is not None else None,
        "FromPhoneNumber": values["caller"],
        "InteractionId": values["id"],
        "Kind": values["kind"],
        "MessageBody": values["body"] if with_body else None,
        "OutOfSession": values["out_of_session"],
        "Outcome": values["outcome"],
        "ProxyPhoneNumber": values["proxy_number"],
        "ProxySessionId": session_id,
        "Reason": values["reason"],
        "RejectStatus": values["reject_status"],
        "StartedTimestamp": format_timestamp(values["started_at"]),
        "ToPhoneNumber": values["target"],
        "VoiceConnectorId": connector_id,
    }


def event_interaction(shape: dict[str, Any], with_body: bool) -> dict[str, Any]:
    """Events carry a message body only when bodies are stored (--store-message-bodies)."""
    return shape if with_body else {**shape, "MessageBody": None}


def with_iso_timestamps(shape: dict[str, Any]) -> dict[str, Any]:
    """An API shape with its `...Timestamp` members as the API writes them."""
    return {
        key: format_timestamp(value) if key.endswith("Timestamp") and value is not None else value
        for key, value in shape.items()
    }
