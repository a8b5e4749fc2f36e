"""The routing service behind `POST /_chimeproxy/route` and the SMS relay: look up the facts,
decide (domain.routing), record the interaction and move the session to InProgress, all in one
transaction; events are published once it has committed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from chimeproxy import events, shapes
from chimeproxy.domain import calls, phone
from chimeproxy.domain.lifecycle import SessionStatus
from chimeproxy.domain.routing import SMS, VOICE, Action, Decision, Media, RouteFacts, decide
from chimeproxy.store import interactions as store
from chimeproxy.store.prepared import Statements
from chimeproxy.uuids import time_ordered_uuid

if TYPE_CHECKING:
    from chimeproxy.services import Services

# Outcomes of /end: what the SIP edge saw of a call, or of a message it relayed.
CALL_OUTCOMES = ("completed", "failed", "cancelled", "busy", "no-answer")
MESSAGE_OUTCOMES = ("sent", "failed")
END_OUTCOMES = {VOICE: CALL_OUTCOMES, SMS: MESSAGE_OUTCOMES}
REJECTED = "rejected"  # a refused contact, recorded as ended when it happened


@dataclass
class Routed:
    """A routing decision and what was recorded for it."""

    decision: Decision
    caller: str | None
    called: str | None
    interaction_id: str | None = None  # the interaction recorded (None: not recorded)
    voice_connector_id: str | None = None  # its connector's (None: not recorded)
    # The interaction as listed, for the events: built only when an event sink is on.
    interaction: dict[str, Any] | None = None
    connector_pk: int | None = None
    require_encryption: bool = False  # media to and from the trunk must be SRTP
    max_duration_seconds: int | None = None  # a call ends by then (its session, max length)
    account: str | None = None
    region: str | None = None
    pending_events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def answer(self) -> dict[str, Any]:
        """The /route answer: the contract the SIP edge is built against."""
        d = self.decision
        if d.action is Action.CONNECT:
            assert d.session is not None and self.interaction_id is not None
            return {
                "action": "connect",
                "target": d.target,
                "caller_id": d.caller_id,
                "session_id": d.session.id,
                "voice_connector_id": self.voice_connector_id,
                "interaction_id": self.interaction_id,
                "require_encryption": self.require_encryption,
                "max_duration_seconds": self.max_duration_seconds,
            }
        if d.action is Action.FALLBACK:
            return {
                "action": "fallback",
                "target": d.target,
                "caller_id": d.caller_id,
                "interaction_id": self.interaction_id,
                "require_encryption": self.require_encryption,
                "max_duration_seconds": self.max_duration_seconds,
            }
        return {"action": "reject", "status": d.status, "reason": d.reason}

    def publish(self, services: Services) -> None:
        for event_type, data in self.pending_events:
            services.events.publish(event_type, data, account=self.account, region=self.region)
        self.pending_events.clear()


def decide_in(
    connection: Statements | Connection,
    services: Services,
    caller_raw: object,
    called_raw: object,
    kind: str,
    media: Media | None = None,
) -> tuple[Routed, Mapping[str, Any] | None]:
    """Read the numbers, look up the facts and decide, inside the caller's transaction;
    records nothing. The dialled number is found among the proxy numbers (written
    internationally, or nationally in one of their countries); the caller is read in the
    proxy number's country."""
    now = services.clock.now_ms()
    called, country = locate_called(connection, called_raw)
    caller = phone.read_number(caller_raw, country)
    if called is None:
        facts, row = RouteFacts(proxy=None), None
    else:
        facts, row = store.route_facts(
            connection, caller, called, now, services.settings.retention_ms
        )
    decision = decide(caller, called or "", kind, facts, now, media)
    routed = Routed(decision, caller, called)
    routed.max_duration_seconds = calls.longest_duration(
        now,
        decision.session.expires_at if decision.session else None,
        services.settings.max_call_ms,
    )
    if row is not None:
        routed.connector_pk = row["connector_pk"]
        routed.require_encryption = bool(row["connector_require_encryption"])
        routed.account = row["connector_account"]
        routed.region = row["connector_region"]
    return routed, row


def locate_called(
    connection: Statements | Connection, called_raw: object
) -> tuple[str | None, str | None]:
    """(E.164, country) of the dialled number when it is one of the proxy numbers' forms; an
    international form needs no look-up (the route query itself says whether it is one)."""
    international = phone.read_number(called_raw, None)
    if international is not None:
        return international, phone.number_facts(international).country
    candidates = phone.called_candidates(called_raw, store.proxy_number_countries(connection))
    found = store.find_proxy_number(connection, candidates)
    return (found["e164"], found["country"]) if found else (None, None)


def record(
    connection: Statements | Connection,
    services: Services,
    routed: Routed,
    row: Mapping[str, Any] | None,
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
    # A call refused in its session (unencrypted media) is listed with the session too.
    session = decision.session if decision.out_of_session is None else None
    values: dict[str, Any] = {
        "id": time_ordered_uuid(now),
        "voice_connector_pk": routed.connector_pk,
        "session_pk": session.pk if session else None,
        "kind": kind,
        "action": decision.action.value,
        "direction": decision.direction,
        "out_of_session": decision.out_of_session.value if decision.out_of_session else None,
        "caller": routed.caller or _unread(caller_raw),
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
    routed.interaction_id, routed.voice_connector_id = values["id"], row["connector_id"]
    starts = session is not None and decision.starts_session and start_session
    began = starts and store.mark_in_progress(connection, session.pk, now)  # type: ignore[union-attr]
    if not services.events.enabled:
        return  # events go nowhere: their payloads are not built
    shape = routed.interaction = shapes.interaction(
        values, row["connector_id"], session.id if session else None, with_body=True
    )
    if began:
        started = shapes.proxy_session(
            {**row, "status": SessionStatus.IN_PROGRESS}, row["connector_id"], now
        )
        routed.pending_events.append((events.SESSION_UPDATED, shapes.with_iso_timestamps(started)))
    public = shapes.event_interaction(shape, settings.store_message_bodies)
    if decision.out_of_session is not None:
        routed.pending_events.append((events.OUT_OF_SESSION_CONTACT, public))
    if not rejected:
        routed.pending_events.append((events.INTERACTION_STARTED, public))


async def route_call(
    services: Services,
    caller_raw: object,
    called_raw: object,
    call_id: str | None,
    media: Media | None,
    deadline: float,
) -> Routed:
    """Route one call for the SIP edge and record it. Prepared statements on the driver's
    connection (store/prepared.py), since it is every call's setup; on SQLite the calls that
    arrive in one turn of the event loop share a transaction (`Services.writes`). Retried
    from the start if the session is deleted between the look-up and the insert (PostgreSQL:
    the interaction's foreign key then fails); the retry sees it gone."""
    routed = await services.writes.write(
        lambda run: call_work(run, services, caller_raw, called_raw, call_id, media), deadline
    )
    routed.publish(services)
    return routed


def call_work(
    connection: Statements,
    services: Services,
    caller_raw: object,
    called_raw: object,
    call_id: str | None,
    media: Media | None,
) -> Routed:
    """The routing decision for a call and its record, in the caller's transaction."""
    routed, row = decide_in(connection, services, caller_raw, called_raw, VOICE, media)
    record(connection, services, routed, row, kind=VOICE, caller_raw=caller_raw, call_id=call_id)
    return routed


def end_interaction(
    services: Services, interaction_id: str, outcome: str, duration_seconds: float | None
) -> bool | None:
    """Record how an interaction ended. None: no such interaction; False: it had ended already
    (the first end wins, so an edge may safely repeat itself). ValueError: an outcome that is
    not one of its kind's (a message is `sent` or `failed`)."""
    now = services.clock.now_ms()
    with services.db.write() as connection:
        row = store.find_interaction(connection, interaction_id)
        if row is None:
            return None
        allowed = END_OUTCOMES[row["kind"]]
        if outcome not in allowed:
            raise ValueError(
                f"outcome {outcome} does not fit a {row['kind']} interaction: one of "
                f"{', '.join(allowed)}"
            )
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


def _unread(raw: object) -> str:
    """How an unreadable caller is recorded: its user part as written (`anonymous`), cut."""
    text = phone.user_part(raw) if isinstance(raw, str) else ""
    return text.split(";", 1)[0][:32] or "unknown"


def calls_to_end(services: Services, interaction_ids: list[str]) -> list[dict[str, str]]:
    """Which of the edge's calls in progress must end now, and why (domain/calls.py)."""
    now = services.clock.now_ms()
    with services.db.read() as connection:
        known = store.calls_in_progress(connection, interaction_ids)
    ending = []
    for interaction_id in interaction_ids:
        why = calls.must_end(known.get(interaction_id), now, services.settings.max_call_ms)
        if why is not None:
            ending.append({"interaction_id": interaction_id, "reason": why.value})
    return ending
