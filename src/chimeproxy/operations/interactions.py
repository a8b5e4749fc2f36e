"""The interactions listings, chimeproxy's own read API beside the model's operations (SigV4
like them, one account and region):

- GET /_chimeproxy/voice-connectors/{voiceConnectorId}/proxy-sessions/{proxySessionId}/interactions
- GET /_chimeproxy/voice-connectors/{voiceConnectorId}/interactions[?out-of-session=true]

Query: `max-results` (1-100, default 100), `next-token`.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from sqlalchemy import RowMapping

from chimeproxy import shapes
from chimeproxy.operations.common import DEFAULT_PAGE, next_token, page_after, require_connector
from chimeproxy.operations.registry import Context
from chimeproxy.protocol.errors import BadRequestException, NotFoundException
from chimeproxy.protocol.http import Request, Response
from chimeproxy.services import Services
from chimeproxy.store import interactions as store
from chimeproxy.store import proxy as proxy_store

MAX_PAGE = 100
# Path labels named as the model names them (`voiceConnectorId`).
SESSION_LISTING = (
    "/_chimeproxy/voice-connectors/{voiceConnectorId}/proxy-sessions/{proxySessionId}/interactions"
)
CONNECTOR_LISTING = "/_chimeproxy/voice-connectors/{voiceConnectorId}/interactions"


class InteractionListing:
    def __init__(self, services: Services) -> None:
        self.services = services

    async def handle(self, request: Request, labels: dict[str, str]) -> Response:
        query = parse_qs(request.query_string, keep_blank_values=True)
        limit = _max_results(query)
        token = query.get("next-token", [None])[-1]
        out_of_session = query.get("out-of-session", ["false"])[-1].lower() == "true"
        connector_id = labels["voiceConnectorId"]
        session_id = labels.get("proxySessionId")
        context = Context(request.account, request.region, request.request_id, self.services)
        listing = f"interactions:{connector_id}:{session_id}:{out_of_session}"
        after = page_after(context, listing, token or None)
        page = await self.services.db.run(
            lambda: self._page(
                context,
                connector_id,
                session_id,
                out_of_session,
                tuple(after) if after else None,
                limit,
            ),
            self.services.settings.db_deadline,
        )
        with_body = self.services.settings.store_message_bodies
        document = {
            "Interactions": [
                shapes.interaction(row, connector_id, row["session_id"], with_body=with_body)
                for row in page[:limit]
            ],
            "NextToken": next_token(
                context, listing, page, limit, lambda r: [r["started_at"], r["id"]]
            ),
        }
        return Response.json(200, document)

    def _page(
        self,
        context: Context,
        connector_id: str,
        session_id: str | None,
        out_of_session: bool,
        after: tuple[int, str] | None,
        limit: int,
    ) -> list[RowMapping]:
        now = self.services.clock.now_ms()
        with self.services.db.read() as connection:
            connector = require_connector(connection, context, connector_id)
            session_pk = None
            if session_id is not None:
                session = proxy_store.find_session(
                    connection,
                    connector["pk"],
                    session_id,
                    now,
                    self.services.settings.retention_ms,
                )
                if session is None:
                    raise NotFoundException(f"Proxy session {session_id} not found.")
                session_pk = session["pk"]
            return store.interaction_page(
                connection,
                connector["pk"],
                session_pk=session_pk,
                out_of_session_only=out_of_session,
                after=after,
                limit=limit + 1,
            )


def _max_results(query: dict[str, list[str]]) -> int:
    raw = query.get("max-results", [None])[-1]
    if raw is None:
        return DEFAULT_PAGE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise BadRequestException(f"Invalid value for max-results: must be 1 to {MAX_PAGE}.")
    return int(raw)
