"""Text messages: a message that arrived at proxy number P is routed like a call (kind sms)
and sent on from P, through the configured provider (the SMS webhooks) or by the SIP edge (a
SIP MESSAGE): one path, so both get the same keywords, opt-outs and outcomes.

Keywords (the whole message, case and surrounding spaces/punctuation ignored) are never relayed:
- opt-out (STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, OPTOUT): recorded; from then on no
  message is relayed from P to the sender, until
- opt-in (START, UNSTOP): recorded; relaying to the sender resumes;
- help (HELP, INFO): recorded only; the carrier or End User Messaging answers HELP itself.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from chimeproxy import events, shapes
from chimeproxy.dataplane.providers import SendError, SmsProvider
from chimeproxy.dataplane.route import REJECTED, Routed, decide_in, record
from chimeproxy.domain.routing import SMS, Action
from chimeproxy.store import interactions as store

if TYPE_CHECKING:
    from chimeproxy.services import Services

log = logging.getLogger("chimeproxy.sms")


class Keyword(StrEnum):
    """A keyword message, named by the outcome it is recorded with."""

    OPT_OUT = "opted-out"
    OPT_IN = "opted-in"
    HELP = "help"


KEYWORDS: dict[str, Keyword] = {
    **dict.fromkeys(
        ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT"), Keyword.OPT_OUT
    ),
    **dict.fromkeys(("START", "UNSTOP"), Keyword.OPT_IN),
    **dict.fromkeys(("HELP", "INFO"), Keyword.HELP),
}
_NOT_WORD = re.compile(r"[\s\W_]+")

# Outcomes of relayed messages (besides the keyword outcomes and "rejected").
SENT = "sent"
FAILED = "failed"
RECIPIENT_OPTED_OUT = "recipient-opted-out"


def keyword(body: str) -> Keyword | None:
    """The keyword a whole message is, if any ("Stop.", " stop " and "OPT-OUT" count)."""
    if len(body) > 32:
        return None
    return KEYWORDS.get(_NOT_WORD.sub("", body).upper())


@dataclass
class Prepared:
    routed: Routed
    outcome: str | None  # set when nothing is to be sent
    send: tuple[str, str] | None = None  # (from P, to target)


def prepare(
    services: Services,
    sender: object,
    to: object,
    body: str,
    *,
    can_send: bool,
    by_edge: bool = False,
    call_id: str | None = None,
) -> Prepared:
    """Route and record the message in one transaction; say what, if anything, to send.
    `by_edge`: the SIP edge relays it (and reports its end); otherwise a provider sends it
    now and the interaction is over at once."""
    word = keyword(body)
    # Retried like route_call when a concurrent delete removes the session mid-way.
    return services.db.write_retrying(
        lambda connection: _prepare_in(
            connection, services, sender, body, to, word, can_send, by_edge, call_id
        )
    )


def _prepare_in(
    connection: Connection,
    services: Services,
    sender: object,
    body: str,
    to: object,
    word: Keyword | None,
    can_send: bool,
    by_edge: bool,
    call_id: str | None,
) -> Prepared:
    routed, row = decide_in(connection, services, sender, to, SMS)
    decision = routed.decision
    proxy = routed.called

    def save(outcome: str | None = None, reason: str | None = None, *, sending: bool) -> None:
        # Only a message really handed to the provider starts the session (and is "started"
        # before it is sent); anything else is over at once.
        record(
            connection,
            services,
            routed,
            row,
            kind=SMS,
            caller_raw=sender,
            body=body,
            outcome=outcome,
            reason=reason,
            call_id=call_id,
            # The edge reports how a message it relays ended; anything else is over now.
            ended=not (by_edge and sending),
            start_session=sending,
        )

    if word is not None:
        if routed.connector_pk is not None and proxy is not None and routed.caller is not None:
            if word is Keyword.OPT_OUT:
                store.opt_out(connection, proxy, routed.caller, services.clock.now_ms())
            elif word is Keyword.OPT_IN:
                store.opt_in(connection, proxy, routed.caller)
        save(word.value, sending=False)
        return Prepared(routed, word.value)
    if decision.action is Action.REJECT:
        save(sending=False)
        return Prepared(routed, REJECTED)
    assert decision.target is not None and proxy is not None
    if store.is_opted_out(connection, proxy, decision.target):
        save(RECIPIENT_OPTED_OUT, sending=False)
        return Prepared(routed, RECIPIENT_OPTED_OUT)
    if not can_send:
        save(FAILED, "no SMS provider is configured", sending=False)
        return Prepared(routed, FAILED)
    save(sending=True)
    return Prepared(routed, None, (proxy, decision.target))


def finish(services: Services, prepared: Prepared, outcome: str, reason: str | None) -> None:
    """Store the sending's outcome (the interaction was recorded before sending)."""
    interaction_id = prepared.routed.interaction_id
    if interaction_id is None:
        return
    with services.db.write() as connection:
        store.set_outcome(connection, interaction_id, outcome, reason)


async def relay(
    services: Services,
    provider: SmsProvider | None,
    sender: object,
    to: object,
    body: str,
    deadline: float,
) -> Prepared:
    """Route, record and send one inbound message; the answer carries the outcome. Each
    database step is bounded by `deadline` seconds (Database.run)."""
    prepared = await services.db.run(
        lambda: prepare(services, sender, to, body, can_send=provider is not None), deadline
    )
    routed = prepared.routed
    if prepared.send is not None:
        assert provider is not None
        origination, destination = prepared.send
        reason = None
        try:
            await asyncio.to_thread(provider.send, origination, destination, body)
            prepared.outcome = SENT
        except SendError as exc:
            prepared.outcome, reason = FAILED, str(exc)
            log.warning(
                "SMS not sent",
                extra={"interaction_id": routed.interaction_id, "problem": reason},
            )
        outcome = prepared.outcome
        await services.db.run(lambda: finish(services, prepared, outcome, reason), deadline)
        if routed.interaction is not None:
            routed.interaction = {
                **routed.interaction,
                "Outcome": prepared.outcome,
                "Reason": reason,
            }
    if routed.interaction is not None and routed.decision.action is not Action.REJECT:
        shape = shapes.event_interaction(routed.interaction, services.settings.store_message_bodies)
        routed.pending_events.append((events.INTERACTION_ENDED, shape))
    routed.publish(services)
    return prepared


def answer(prepared: Prepared) -> dict[str, Any]:
    """The inbound webhooks' answer: what happened to the message (no numbers, no body)."""
    routed = prepared.routed
    document: dict[str, Any] = {
        "action": routed.decision.action.value,
        "interaction_id": routed.interaction_id,
        "outcome": prepared.outcome,
    }
    if routed.decision.action is Action.REJECT:
        document |= {"status": routed.decision.status, "reason": routed.decision.reason}
    return document


def route_message(
    services: Services, sender: object, to: object, body: str, call_id: str | None
) -> Prepared:
    """A SIP MESSAGE the edge asks about: routed, recorded and, unless it is a keyword or its
    recipient opted out, relayed by the edge itself."""
    prepared = prepare(services, sender, to, body, can_send=True, by_edge=True, call_id=call_id)
    prepared.routed.publish(services)
    return prepared


OPTED_OUT_REASON = "The recipient has opted out of messages from this number."


def edge_answer(prepared: Prepared) -> dict[str, Any]:
    """The SIP edge's answer for a MESSAGE: relay it (connect/fallback), take it without
    relaying (a keyword: `absorb`, answered 200), or refuse it."""
    routed = prepared.routed
    if prepared.send is not None:
        return routed.answer()
    if prepared.outcome in {word.value for word in Keyword}:
        return {
            "action": "absorb",
            "interaction_id": routed.interaction_id,
            "outcome": prepared.outcome,
        }
    if prepared.outcome == RECIPIENT_OPTED_OUT:
        return {"action": "reject", "status": 403, "reason": OPTED_OUT_REASON}
    return routed.answer()
