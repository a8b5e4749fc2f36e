"""The data plane's internal HTTP endpoints (under /_chimeproxy/, ahead of SigV4):

- POST /_chimeproxy/route                        routing decision for the SIP edge
- POST /_chimeproxy/interactions/{id}/end        the edge reports how a call ended
- POST /_chimeproxy/sms/inbound                  generic inbound-SMS webhook
- POST /_chimeproxy/sms/sns                      inbound SMS through Amazon SNS
- GET  /_chimeproxy/voice-connectors/{vc}/proxy-sessions/{sid}/interactions   (SigV4)
- GET  /_chimeproxy/voice-connectors/{vc}/interactions                        (SigV4)

The first three trust the route secret (or loopback when none is set); /sms/sns trusts SNS
message signatures; the listings authenticate like the API and see one account and region.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hmac
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote

import orjson

from chimeproxy.dataplane import events, route, sms
from chimeproxy.dataplane.events import EventBus
from chimeproxy.dataplane.providers import SmsProvider
from chimeproxy.dataplane.providers import from_settings as provider_from_settings
from chimeproxy.dataplane.sns import (
    NOTIFICATION,
    SUBSCRIPTION_CONFIRMATION,
    SnsError,
    SnsVerifier,
    inbound_sms,
    parse,
)
from chimeproxy.domain.routing import KINDS
from chimeproxy.operations.common import DEFAULT_PAGE, next_token, page_after, require_connector
from chimeproxy.operations.registry import Context
from chimeproxy.protocol.auth import Authenticator, is_loopback
from chimeproxy.protocol.errors import (
    BadRequestException,
    ForbiddenException,
    NotFoundException,
)
from chimeproxy.protocol.http import Handler, Request, Response
from chimeproxy.services import Services
from chimeproxy.store import interactions as store
from chimeproxy.store import proxy as proxy_store

log = logging.getLogger("chimeproxy.dataplane")
T = TypeVar("T")

ROUTE_SECRET_HEADER = "x-chimeproxy-route-secret"
MAX_PAGE = 100
_SEGMENT = r"([^/]+)"
_END = re.compile(r"/_chimeproxy/interactions/([A-Za-z0-9-]{1,64})/end")
_SESSION_LISTING = re.compile(
    rf"/_chimeproxy/voice-connectors/{_SEGMENT}/proxy-sessions/{_SEGMENT}/interactions"
)
_CONNECTOR_LISTING = re.compile(rf"/_chimeproxy/voice-connectors/{_SEGMENT}/interactions")


class Dataplane:
    """Routes calls and messages through proxy sessions; owns the event delivery task."""

    def __init__(self, services: Services, authenticator: Authenticator) -> None:
        self.services = services
        self.settings = services.settings
        self.authenticator = authenticator
        self.provider: SmsProvider | None = provider_from_settings(services.settings)
        self.sns = SnsVerifier.from_settings(services.settings)
        self.bus = EventBus.from_settings(services.settings)
        # As for API operations: SQLite work on the event loop, a network database's in threads.
        self._inline = services.db.dialect == "sqlite"

    def routes(self) -> dict[tuple[str, str], Handler]:
        """The endpoints with fixed paths, for the app's table of internal endpoints."""
        return {
            ("POST", "/_chimeproxy/route"): self.route,
            ("POST", "/_chimeproxy/sms/inbound"): self.sms_inbound,
            ("POST", "/_chimeproxy/sms/sns"): self.sms_sns,
        }

    def match(self, method: str, path: str) -> Handler | None:
        """The endpoint of a path with parameters, or None."""
        if method == "POST" and (found := _END.fullmatch(path)):
            return functools.partial(self.end, interaction_id=found[1])
        if method == "GET" and (found := _SESSION_LISTING.fullmatch(path)):
            return functools.partial(
                self.list_interactions, connector_id=unquote(found[1]), session_id=unquote(found[2])
            )
        if method == "GET" and (found := _CONNECTOR_LISTING.fullmatch(path)):
            return functools.partial(
                self.list_interactions, connector_id=unquote(found[1]), session_id=None
            )
        return None

    async def start(self) -> None:
        if self.bus is not None:
            await self.bus.start()
            events.attach(self.services, self.bus)

    async def stop(self) -> None:
        if self.bus is not None:
            events.detach(self.services)
            await self.bus.stop()

    async def _db(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._inline:
            return work(*args, **kwargs)
        return await asyncio.to_thread(work, *args, **kwargs)

    # Access.

    def _require_route_access(self, request: Request) -> None:
        """The route secret when the server has one (header, or the password of HTTP Basic
        auth, for SMS providers that can only put credentials in the URL); else loopback."""
        secret = self.settings.route_secret
        if secret:
            given = request.headers.get(ROUTE_SECRET_HEADER) or _basic_password(request)
            if given is None or not hmac.compare_digest(given.encode(), secret.encode()):
                raise ForbiddenException("A valid X-Chimeproxy-Route-Secret header is required.")
            return
        if request.client_host is None or not is_loopback(request.client_host):
            raise ForbiddenException(
                "This endpoint answers loopback callers only; set CHIMEPROXY_ROUTE_SECRET to "
                "serve other hosts."
            )

    # Endpoints.

    async def route(self, request: Request) -> Response:
        request.operation = "Route"
        self._require_route_access(request)
        document = _json_object(request.body)
        caller, called, kind = document.get("caller"), document.get("called"), document.get("kind")
        call_id = document.get("call_id")
        if not isinstance(caller, str) or not isinstance(called, str):
            raise BadRequestException("caller and called must be strings (E.164 numbers).")
        if kind not in KINDS:
            raise BadRequestException(f"kind must be one of {', '.join(KINDS)}.")
        if call_id is not None and not isinstance(call_id, str):
            raise BadRequestException("call_id must be a string when given.")
        routed = await self._db(route.route_call, self.services, caller, called, kind, call_id)
        return Response.json(200, routed.answer())

    async def end(self, request: Request, *, interaction_id: str) -> Response:
        request.operation = "EndInteraction"
        self._require_route_access(request)
        document = _json_object(request.body)
        outcome = document.get("outcome")
        duration = document.get("duration_seconds")
        if outcome not in route.CALL_OUTCOMES:
            raise BadRequestException(f"outcome must be one of {', '.join(route.CALL_OUTCOMES)}.")
        if duration is not None and (
            isinstance(duration, bool) or not isinstance(duration, int | float) or duration < 0
        ):
            raise BadRequestException("duration_seconds must be a number of seconds, or null.")
        seconds = float(duration) if duration is not None else None
        ended = await self._db(
            route.end_interaction, self.services, interaction_id, outcome, seconds
        )
        if ended is None:
            raise NotFoundException(f"Interaction {interaction_id} not found.")
        return Response(204)

    async def sms_inbound(self, request: Request) -> Response:
        request.operation = "InboundSms"
        self._require_route_access(request)
        document = _json_object(request.body)
        sender, to, body = document.get("from"), document.get("to"), document.get("body")
        if not all(isinstance(v, str) for v in (sender, to, body)):
            raise BadRequestException("from, to and body must be strings.")
        return await self._relay(sender, to, body)  # type: ignore[arg-type]

    async def sms_sns(self, request: Request) -> Response:
        request.operation = "InboundSmsSns"
        try:
            message = parse(request.body)
            await asyncio.to_thread(self.sns.verify, message)
            kind = message["Type"]
            if kind == SUBSCRIPTION_CONFIRMATION:
                await asyncio.to_thread(self.sns.confirm_subscription, message)
                log.info("SNS subscription confirmed", extra={"topic": message.get("TopicArn")})
                return Response.json(200, {"confirmed": True})
            if kind != NOTIFICATION:  # UnsubscribeConfirmation: nothing to do
                log.info("SNS message ignored", extra={"type": kind})
                return Response.json(200, {"ignored": kind})
            message_id = str(message.get("MessageId", ""))
            if self.sns.seen(message_id):
                return Response.json(200, {"duplicate": True})
            sender, to, body = inbound_sms(message)
        except SnsError as exc:
            log.warning("SNS message refused", extra={"status": exc.status, "problem": exc.message})
            return Response.json(exc.status, {"error": exc.message})
        response = await self._relay(sender, to, body)
        if response.status < 500:
            self.sns.remember(message_id)
        return response

    async def _relay(self, sender: str, to: str, body: str) -> Response:
        prepared = await sms.relay(self.services, self.provider, self._db, sender, to, body)
        # 502 asks the webhook's sender (SNS, a provider) to try again later.
        status = 502 if prepared.send is not None and prepared.outcome == sms.FAILED else 200
        return Response.json(status, sms.answer(prepared))

    async def list_interactions(
        self, request: Request, *, connector_id: str, session_id: str | None
    ) -> Response:
        request.operation = "ListInteractions"
        request.account, request.region = self.authenticator.authenticate(request)
        query = parse_qs(request.query_string, keep_blank_values=True)
        limit = _max_results(query)
        token = query.get("next-token", [None])[-1]
        out_of_session = query.get("out-of-session", ["false"])[-1].lower() == "true"
        context = Context(request.account, request.region, request.request_id, self.services)
        listing = f"interactions:{connector_id}:{session_id}:{out_of_session}"
        after = page_after(context, listing, token or None)
        page = await self._db(
            self._interaction_page,
            context,
            connector_id,
            session_id,
            out_of_session,
            tuple(after) if after else None,
            limit,
        )
        with_body = self.settings.store_message_bodies
        document = {
            "Interactions": [
                route.interaction_shape(row, connector_id, row["session_id"], with_body=with_body)
                for row in page[:limit]
            ],
            "NextToken": next_token(
                context, listing, page, limit, lambda r: [r["started_at"], r["id"]]
            ),
        }
        return Response.json(200, document)

    def _interaction_page(
        self,
        context: Context,
        connector_id: str,
        session_id: str | None,
        out_of_session: bool,
        after: tuple[int, str] | None,
        limit: int,
    ) -> list[Any]:
        now = self.services.clock.now_ms()
        with self.services.db.read() as connection:
            connector = require_connector(connection, context, connector_id)
            session_pk = None
            if session_id is not None:
                session = proxy_store.find_session(
                    connection, connector["pk"], session_id, now, self.settings.retention_ms
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


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError as exc:
        raise BadRequestException("The body must be a JSON object.") from exc
    if not isinstance(document, dict):
        raise BadRequestException("The body must be a JSON object.")
    return document


def _basic_password(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[2]


def _max_results(query: dict[str, list[str]]) -> int:
    raw = query.get("max-results", [None])[-1]
    if raw is None:
        return DEFAULT_PAGE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise BadRequestException(f"Invalid value for max-results: must be 1 to {MAX_PAGE}.")
    return int(raw)
