"""Rows and statement records shared by the unit tests that read the store directly."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, event, insert

from chimeproxy.store.database import Database
from chimeproxy.store.schema import voice_connectors

ACCOUNT = "111122223333"
CONNECTOR_ID = "abcdefghijklmnopqrstuv"


def add_voice_connector(connection: Connection, *, name: str, pk: int = 1) -> None:
    """Voice connector `pk` of ACCOUNT in us-east-1, id CONNECTOR_ID, without encryption."""
    connection.execute(
        insert(voice_connectors).values(
            pk=pk,
            account=ACCOUNT,
            region="us-east-1",
            id=CONNECTOR_ID,
            name=name,
            aws_region="us-east-1",
            require_encryption=False,
            created_at=0,
            updated_at=0,
        )
    )


@contextmanager
def recorded_statements(db: Database) -> Iterator[list[tuple[str, Any]]]:
    """The statements (and their parameters) the database runs while the block runs."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def session_row(
    connector_pk: int, session_id: str, number: int, created_at: int
) -> dict[str, object]:
    """An Open Voice session of connector `connector_pk` between two numbers made from
    `number`, on +19135550100, for an hour from `created_at`."""
    return {
        "voice_connector_pk": connector_pk,
        "id": session_id,
        "status": "Open",
        "capabilities": "Voice",
        "expiry_minutes": 60,
        "expiry_minutes_given": False,
        "participant_1": f"+1206555{number:04d}",
        "participant_2": f"+1401555{number:04d}",
        "proxy_number": "+19135550100",
        "created_at": created_at,
        "updated_at": created_at,
        "expires_at": created_at + 3_600_000,
    }
