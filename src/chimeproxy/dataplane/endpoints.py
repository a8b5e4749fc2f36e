"""The data plane's HTTP endpoints (the app's endpoint table gives each its access rule):

- POST /_chimeproxy/route                           routing decision for the SIP edge
- POST /_chimeproxy/interactions/{id}/end           the edge reports how a call ended
- POST /_chimeproxy/calls/check                     which of the edge's calls must end now
- POST /_chimeproxy/sms/inbound                     generic inbound-SMS webhook
- POST /_chimeproxy/sms/sns                         inbound SMS through Amazon SNS

The first four need the route secret (or loopback when none is set); /sms/sns trusts SNS
message signatures. A caller that gives up after a few seconds (the SIP edge) says so in
`X-Chimeproxy-Deadline-Ms`: database work still running then is rolled back, never committed
after the caller has failed the call.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from chimeproxy.dataplane import route, sms
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
from chimeproxy.domain.routing import KINDS, SMS, Media
from chimeproxy.protocol.endpoints import Access, Endpoint
from chimeproxy.protocol.errors import BadRequestException, NotFoundException
from chimeproxy.protocol.http import Request, Response
from chimeproxy.services import Services

log = logging.getLogger("chimeproxy.dataplane")

DEADLINE_HEADER = "x-chimeproxy-deadline-ms"
MAX_CHECKED = 5000  # calls one check may ask about (the edge sends them in batches)


class Dataplane:
    """Routes calls and messages through proxy sessions."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings
        self.provider: SmsProvider | None = provider_from_settings(services.settings)
        self.sns = SnsVerifier.from_settings(services.settings)

    def endpoints(self) -> list[tuple[str, str, Endpoint]]:
        """(method, path template, endpoint) of each data-plane endpoint."""
        secret = Access.ROUTE_SECRET
        return [
            ("POST", "/_chimeproxy/route", Endpoint("Route", secret, self.route)),
            (
                "POST",
                "/_chimeproxy/interactions/{interactionId}/end",
                Endpoint("EndInteraction", secret, self.end),
            ),
            ("POST", "/_chimeproxy/calls/check", Endpoint("CheckCalls", secret, self.check_calls)),
            ("POST", "/_chimeproxy/sms/inbound", Endpoint("InboundSms", secret, self.sms_inbound)),
            ("POST", "/_chimeproxy/sms/sns", Endpoint("InboundSmsSns", Access.NONE, self.sms_sns)),
        ]

    def _deadline(self, request: Request) -> float:
        """The caller's deadline when it gave one (never longer than the server's own)."""
        limit = self.settings.db_deadline
        given = request.headers.get(DEADLINE_HEADER, "")
        if given.isdigit() and int(given) > 0:
            return min(limit, int(given) / 1000)
        return limit

    async def route(self, request: Request, labels: dict[str, str]) -> Response:
        document = _json_object(request.body)
        caller, called, kind = document.get("caller"), document.get("called"), document.get("kind")
        call_id, media, body = document.get("call_id"), document.get("media"), document.get("body")
        if not isinstance(caller, str) or not isinstance(called, str):
            raise BadRequestException(
                "caller and called must be strings (numbers, or sip:/tel: URIs)."
            )
        if kind not in KINDS:
            raise BadRequestException(f"kind must be one of {', '.join(KINDS)}.")
        if call_id is not None and not isinstance(call_id, str):
            raise BadRequestException("call_id must be a string when given.")
        if media is not None and media not in set(Media):
            raise BadRequestException(f"media must be one of {', '.join(Media)} when given.")
        if body is not None and not isinstance(body, str):
            raise BadRequestException("body must be a string when given.")
        deadline = self._deadline(request)
        if kind == SMS:
            # A SIP MESSAGE: the same keywords, opt-outs and outcomes as the SMS webhooks.
            prepared = await self.services.db.run(
                lambda: sms.route_message(self.services, caller, called, body or "", call_id),
                deadline,
            )
            return Response.json(200, sms.edge_answer(prepared))
        routed = await route.route_call(
            self.services,
            caller,
            called,
            call_id,
            Media(media) if media else None,
            deadline,
        )
        return Response.json(200, routed.answer())

    async def end(self, request: Request, labels: dict[str, str]) -> Response:
        interaction_id = labels["interactionId"]
        document = _json_object(request.body)
        outcome = document.get("outcome")
        duration = document.get("duration_seconds")
        outcomes = dict.fromkeys(route.CALL_OUTCOMES + route.MESSAGE_OUTCOMES)
        if outcome not in outcomes:
            raise BadRequestException(f"outcome must be one of {', '.join(outcomes)}.")
        if duration is not None and (
            isinstance(duration, bool) or not isinstance(duration, int | float) or duration < 0
        ):
            raise BadRequestException("duration_seconds must be a number of seconds, or null.")
        seconds = float(duration) if duration is not None else None
        try:
            ended = await self.services.db.run(
                lambda: route.end_interaction(self.services, interaction_id, outcome, seconds),
                self._deadline(request),
            )
        except ValueError as exc:
            raise BadRequestException(f"Invalid value for outcome: {exc}.") from exc
        if ended is None:
            raise NotFoundException(f"Interaction {interaction_id} not found.")
        return Response(204)

    async def check_calls(self, request: Request, labels: dict[str, str]) -> Response:
        """The edge's calls in progress (`{"interaction_ids": [...]}`, at most MAX_CHECKED):
        answers `{"end": [{"interaction_id", "reason"}]}` for those that must end now."""
        document = _json_object(request.body)
        ids = document.get("interaction_ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise BadRequestException("interaction_ids must be a list of strings.")
        if len(ids) > MAX_CHECKED:
            raise BadRequestException(f"interaction_ids may hold at most {MAX_CHECKED} ids.")
        ending = await self.services.db.run(
            lambda: route.calls_to_end(self.services, list(dict.fromkeys(ids))),
            self._deadline(request),
        )
        return Response.json(200, {"end": ending})

    async def sms_inbound(self, request: Request, labels: dict[str, str]) -> Response:
        document = _json_object(request.body)
        sender, to, body = document.get("from"), document.get("to"), document.get("body")
        if not isinstance(sender, str) or not isinstance(to, str) or not isinstance(body, str):
            raise BadRequestException("from, to and body must be strings.")
        return await self._relay(sender, to, body, self._deadline(request))

    async def sms_sns(self, request: Request, labels: dict[str, str]) -> Response:
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
        response = await self._relay(sender, to, body, self.settings.db_deadline)
        if response.status < 500:
            self.sns.remember(message_id)
        return response

    async def _relay(self, sender: str, to: str, body: str, deadline: float) -> Response:
        prepared = await sms.relay(self.services, self.provider, sender, to, body, deadline)
        # 502 asks the webhook's sender (SNS, a provider) to try again later.
        status = 502 if prepared.send is not None and prepared.outcome == sms.FAILED else 200
        return Response.json(status, sms.answer(prepared))


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError as exc:
        raise BadRequestException("The body must be a JSON object.") from exc
    if not isinstance(document, dict):
        raise BadRequestException("The body must be a JSON object.")
    return document
