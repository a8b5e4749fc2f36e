"""The routing service behind `POST /_chimeproxy/route` and the SMS relay: look up the facts,
decide (domain.routing), record the interaction and move the session to InProgress, all in one
transaction; events are published once it has committed."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, RowMapping

from chimeproxy import events, shapes
from chimeproxy.domain.lifecycle import SessionStatus
from chimeproxy.domain.phone import InvalidPhoneNumber, normalize_e164
from chimeproxy.domain.routing import Action, Decision, RouteFacts, decide
from chimeproxy.store import interactions as store

if TYPE_CHECKING:
    from chimeproxy.services import Services

# Outcomes of /end (what the SIP edge saw of a call).
CALL_OUTCOMES = ("completed", "failed", "cancelled", "busy", "no-answer")
REJECTED = "rejected"  # a refused contact, recorded as ended when it happened


def normalize(raw: object) -> str | None:
    """The E.164 form of a number as the edge or a provider wrote it, or None."""
    if not isinstance(raw, str):
        return None
    try:
        return normalize_e164(raw.strip().replace(" ", "").replace("-", ""))
    except InvalidPhoneNumber:
        return None


@dataclass
class Routed:
    """A routing decision and what was recorded for it."""

    decision: Decision
    caller: str | None
    called: str | None
    interaction: dict[str, Any] | None = None  # the interaction as listed (None: not recorded)
    connector_pk: int | None = None
    account: str | None = None
    region: str | None = None
    pending_events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def interaction_id(self) -> str | None:
        return self.interaction["InteractionId"] if self.interaction else None

    def answer(self) -> dict[str, Any]:
        """The /route answer: the contract the SIP edge is built against."""
        d = self.decision
        if d.action is Action.CONNECT:
            assert d.session is not None and self.interaction is not None
            return {
                "action": "connect",
                "target": d.target,
                "caller_id": d.caller_id,
                "session_id": d.session.id,
                "voice_connector_id": self.interaction["VoiceConnectorId"],
                "interaction_id": self.interaction_id,
            }
        if d.action is Action.FALLBACK:
            return {
                "action": "fallback",
                "target": d.target,
                "caller_id": d.caller_id,
                "interaction_id": self.interaction_id,
            }
        return {"action": "reject", "status": d.status, "reason": d.reason}

    def publish(self, services: Services) -> None:
        for event_type, data in self.pending_events:
            services.events.publish(event_type, data, account=self.account, region=self.region)
        self.pending_events.clear()


def decide_in(
    connection: Connection, services: Services, caller_raw: object, called_raw: object, kind: str
) -> tuple[Routed, RowMapping | None]:
    """Look up the facts and decide, inside the caller's transaction; records nothing."""
    now = services.clock.now_ms()
    caller, called = normalize(caller_raw), normalize(called_raw)
    if called is None:
        facts, row = RouteFacts(proxy=None), None
    else:
        facts, row = store.route_facts(
            connection, caller, called, now, services.settings.retention_ms
        )
    routed = Routed(decide(caller, called or "", kind, facts, now), caller, called)
    if row is not None:
        routed.connector_pk = row["connector_pk"]
        routed.account = row["connector_account"]
        routed.region = row["connector_region"]
    return routed, row


def record(
    connection: Connection,
    services: Services,
    routed: Routed,
    row: RowMapping | None,
    *,
    kind: str,
    caller_raw: object,
    call_id: str | None = None,
    body: str | None = None,
    outcome: str | None = None,
    reason: str | None = None,
    ended: bool = False,
    start_session: bool = True,
) -> None:
    """Record the contact as an interaction (a refusal as ended at once) and, when it is the
    session's first routed contact and `start_session`, move the session to InProgress.
    Nothing is recorded for a number that is no proxy number (there is no owner to show it to).
    """
    decision = routed.decision
    if row is None or routed.connector_pk is None:
        return
    now = services.clock.now_ms()
    settings = services.settings
    rejected = decision.action is Action.REJECT
    session = decision.session if decision.action is Action.CONNECT else None
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "voice_connector_pk": routed.connector_pk,
        "session_pk": session.pk if session else None,
        "kind": kind,
        "action": decision.action.value,
        "direction": decision.direction,
        "out_of_session": decision.out_of_session.value if decision.out_of_session else None,
        "caller": routed.caller or (str(caller_raw)[:32] if caller_raw else "unknown"),
        "proxy_number": routed.called,
        "target": decision.target,
        "reject_status": decision.status,
        "reason": reason or decision.reason,
        "call_id": call_id[:256] if call_id else None,
        "outcome": outcome or (REJECTED if rejected else None),
        "duration_seconds": None,
        "body": body if body is not None and settings.store_message_bodies else None,
        "started_at": now,
        "ended_at": now if (ended or rejected) else None,
    }
    store.insert_interaction(connection, values)
    shape = shapes.interaction(
        values, row["connector_id"], session.id if session else None, with_body=True
    )
    routed.interaction = shape
    starts = session is not None and decision.starts_session and start_session
    if starts and store.mark_in_progress(connection, session.pk, now):  # type: ignore[union-attr]
        started = shapes.proxy_session(
            {**row, "status": SessionStatus.IN_PROGRESS}, row["connector_id"], now
        )
        routed.pending_events.append((events.SESSION_UPDATED, shapes.with_iso_timestamps(started)))
    public = shapes.event_interaction(shape, settings.store_message_bodies)
    if decision.out_of_session is not None:
        routed.pending_events.append((events.OUT_OF_SESSION_CONTACT, public))
    if not rejected:
        routed.pending_events.append((events.INTERACTION_STARTED, public))


def route_call(
    services: Services,
    caller_raw: object,
    called_raw: object,
    kind: str,
    call_id: str | None = None,
) -> Routed:
    """Route one contact for the SIP edge and record it."""

    def work(connection: Connection) -> Routed:
        routed, row = decide_in(connection, services, caller_raw, called_raw, kind)
        record(connection, services, routed, row, kind=kind, caller_raw=caller_raw, call_id=call_id)
        return routed

    # Retried from the start if the session is deleted between the look-up and the insert
    # (PostgreSQL: the interaction's foreign key then fails); the retry sees it gone.
    routed = services.db.write_retrying(work)
    routed.publish(services)
    return routed


def end_interaction(
    services: Services, interaction_id: str, outcome: str, duration_seconds: float | None
) -> bool | None:
    """Record how an interaction ended. None: no such interaction; False: it had ended already
    (the first end wins, so an edge may safely repeat itself)."""
    now = services.clock.now_ms()
    with services.db.write() as connection:
        row = store.find_interaction(connection, interaction_id)
        if row is None:
            return None
        if not store.end_interaction(connection, interaction_id, outcome, duration_seconds, now):
            return False
    values = {**row, "outcome": outcome, "duration_seconds": duration_seconds, "ended_at": now}
    shape = shapes.interaction(
        values,
        row["connector_id"],
        row["session_id"],
        with_body=services.settings.store_message_bodies,
    )
    services.events.publish(
        events.INTERACTION_ENDED,
        shape,
        account=row["connector_account"],
        region=row["connector_region"],
    )
    return True
