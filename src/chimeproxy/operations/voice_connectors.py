"""CreateVoiceConnector, GetVoiceConnector, ListVoiceConnectors, UpdateVoiceConnector,
DeleteVoiceConnector."""

from __future__ import annotations

from typing import Any

from chimeproxy import shapes
from chimeproxy.domain import ids
from chimeproxy.operations.common import DEFAULT_PAGE, next_token, page_after, require_connector
from chimeproxy.operations.registry import Context, Output, operation
from chimeproxy.protocol.errors import ConflictException
from chimeproxy.store import voice_connectors


@operation("CreateVoiceConnector")
def create_voice_connector(context: Context, params: dict[str, Any]) -> Output:
    now = context.services.clock.now_ms()
    values = {
        "account": context.account,
        "region": context.region,
        "id": ids.voice_connector_id(),
        "name": params["Name"],
        "aws_region": params.get("AwsRegion") or context.region,
        "require_encryption": params["RequireEncryption"],
        "integration_type": params.get("IntegrationType"),
        "network_type": params.get("NetworkType"),
        "created_at": now,
        "updated_at": now,
    }
    with context.services.db.write() as connection:
        voice_connectors.insert(connection, values)
    return {"VoiceConnector": shapes.voice_connector(values, context.region, context.account)}  # type: ignore[arg-type]


@operation("GetVoiceConnector")
def get_voice_connector(context: Context, params: dict[str, Any]) -> Output:
    with context.services.db.read() as connection:
        row = require_connector(connection, context, params["VoiceConnectorId"])
    return {"VoiceConnector": shapes.voice_connector(row, context.region, context.account)}


@operation("ListVoiceConnectors")
def list_voice_connectors(context: Context, params: dict[str, Any]) -> Output:
    limit = params.get("MaxResults", DEFAULT_PAGE)
    after = page_after(context, "voice-connectors", params.get("NextToken"))
    with context.services.db.read() as connection:
        rows = voice_connectors.page(
            connection, context.account, context.region, tuple(after) if after else None, limit + 1
        )
    return {
        "VoiceConnectors": [
            shapes.voice_connector(row, context.region, context.account) for row in rows[:limit]
        ],
        "NextToken": next_token(
            context, "voice-connectors", rows, limit, lambda r: [r["created_at"], r["id"]]
        ),
    }


@operation("UpdateVoiceConnector")
def update_voice_connector(context: Context, params: dict[str, Any]) -> Output:
    now = context.services.clock.now_ms()
    with context.services.db.write() as connection:
        row = require_connector(connection, context, params["VoiceConnectorId"])
        changes = {
            "name": params["Name"],
            "require_encryption": params["RequireEncryption"],
            "updated_at": now,
        }
        voice_connectors.update(connection, row["pk"], changes)
    return {
        "VoiceConnector": shapes.voice_connector(
            {**row, **changes}, context.region, context.account
        )
    }  # type: ignore[arg-type]


@operation("DeleteVoiceConnector")
def delete_voice_connector(context: Context, params: dict[str, Any]) -> Output:
    with context.services.db.write() as connection:
        row = require_connector(connection, context, params["VoiceConnectorId"])
        if voice_connectors.associated_number_count(connection, row["pk"]):
            raise ConflictException(
                f"Voice connector {row['id']} still has phone numbers associated; "
                "disassociate them first."
            )
        voice_connectors.delete(connection, row["pk"])
    return None
