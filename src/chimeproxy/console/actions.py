"""The console's two actions on a session, with the API's semantics and events:

- close now: what an UpdateProxySession whose new expiry is already past does (Closed,
  EndedTimestamp the moment of the action, its proxy number free again), except that
  ExpiryMinutes stays as it was (the API could not close a session younger than a minute);
- delete: DeleteProxySession.

Both use the store's functions the operations use, and publish the events they publish.
"""

from __future__ import annotations

from typing import Any

from chimeproxy import events, shapes
from chimeproxy.console.pages import NotFound, Viewer
from chimeproxy.domain import lifecycle
from chimeproxy.domain.lifecycle import SessionStatus
from chimeproxy.services import Services
from chimeproxy.store import console as store
from chimeproxy.store import proxy


def close(services: Services, viewer: Viewer, connector_id: str, session_id: str) -> bool:
    """Close the session now; False when it was Closed already."""
    now = services.clock.now_ms()
    with services.db.write() as connection:
        # Locked: a concurrent sweep or update must not change it between check and write.
        row = _require(services, connection, viewer, connector_id, session_id, now)
        status, _ = lifecycle.effective(row["status"], row["expires_at"], row["ended_at"], now)
        if status == SessionStatus.CLOSED:
            return False
        changes: dict[str, Any] = {
            "status": SessionStatus.CLOSED,
            "ended_at": now,
            "updated_at": now,
        }
        proxy.release_routes(connection, row["pk"])
        proxy.update_session(connection, row["pk"], changes)
    _announce(services, viewer, row, {**row, **changes}, now, events.SESSION_UPDATED)
    return True


def delete(services: Services, viewer: Viewer, connector_id: str, session_id: str) -> None:
    now = services.clock.now_ms()
    with services.db.write() as connection:
        row = _require(services, connection, viewer, connector_id, session_id, now)
        proxy.delete_session(connection, row["pk"])
    _announce(services, viewer, row, row, now, events.SESSION_DELETED)


def _require(
    services: Services,
    connection: Any,
    viewer: Viewer,
    connector_id: str,
    session_id: str,
    now: int,
) -> Any:
    row = store.find_session(
        connection,
        viewer.account,
        connector_id,
        session_id,
        now,
        services.settings.retention_ms,
        lock=True,
    )
    if row is None:
        raise NotFound(f"No session {session_id} on voice connector {connector_id}.")
    return row


def _announce(
    services: Services,
    viewer: Viewer,
    row: Any,
    values: Any,
    now: int,
    event_type: str,
) -> None:
    """As the API announces it (events.announce_session)."""
    events.announce_session(
        services.events,
        event_type,
        shapes.proxy_session(values, row["connector_id"], now),
        account=viewer.account,
        region=row["connector_region"],
    )
