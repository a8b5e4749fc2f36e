"""Proxy configuration and proxy sessions: Put/Get/DeleteVoiceConnectorProxy and
Create/Get/List/Update/DeleteProxySession."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, RowMapping

from chimeproxy import events, shapes
from chimeproxy.domain import lifecycle
from chimeproxy.domain.lifecycle import SessionStatus
from chimeproxy.domain.phone import is_country, number_facts, why_not_valid
from chimeproxy.domain.selection import (
    Candidate,
    PoolExhausted,
    SelectionRequest,
    available_in_order,
    covers,
    required_number_capabilities,
    resolve_geo,
)
from chimeproxy.operations.common import (
    DEFAULT_PAGE,
    e164_member,
    next_token,
    page_after,
    require_connector,
)
from chimeproxy.operations.registry import Context, Output, operation
from chimeproxy.protocol.errors import BadRequestException, NotFoundException
from chimeproxy.protocol.serializer import Encoded
from chimeproxy.store import prepared, proxy
from chimeproxy.store.prepared import Statements
from chimeproxy.uuids import time_ordered_uuid

DEFAULT_BEHAVIOR = "PreferSticky"
MIN_DEADLINE_S = 0.001  # a rerun whose request's deadline has passed fails at once


# Input checks the model cannot express.


def _expiry(context: Context, minutes: int, member: str) -> int:
    limit = context.services.settings.max_session_minutes
    if not 1 <= minutes <= limit:
        raise BadRequestException(
            f"Invalid value for {member}: must be between 1 and {limit} minutes."
        )
    return minutes


PARTICIPANT_MEMBER = "ParticipantPhoneNumbers"
_ORDINALS = ("first", "second")


def _participant(index: int) -> str:
    """A participant named by its place in the request."""
    return f"the {_ORDINALS[index]} participant ({PARTICIPANT_MEMBER}[{index}])"


def _participants(values: list[str]) -> tuple[str, str]:
    """The two participants in E.164, each a valid number of its country, and different."""
    participants = tuple(e164_member(value, PARTICIPANT_MEMBER) for value in values)
    for index, number in enumerate(participants):
        if problem := why_not_valid(number):
            # The number is named (the caller sent it; it is no secret to them), and its place,
            # so the caller knows which of the two to fix.
            raise BadRequestException(
                f"Invalid value for {PARTICIPANT_MEMBER}: {_participant(index)}, {number}, "
                f"{problem}."
            )
    if participants[0] == participants[1]:
        raise BadRequestException(
            f"Invalid value for {PARTICIPANT_MEMBER}: the two participants must differ."
        )
    return participants  # type: ignore[return-value]


def _pool_countries(values: list[str]) -> list[str]:
    countries = list(dict.fromkeys(values))
    for country in countries:
        if not country:
            raise BadRequestException(
                "Invalid value for PhoneNumberPoolCountries: country codes must not be empty."
            )
        if not is_country(country):
            raise BadRequestException(
                f"Invalid value for PhoneNumberPoolCountries: {country} is not an ISO 3166-1 "
                "alpha-2 country code with phone numbers (US, CA, GB, ...)."
            )
    return countries


def _capabilities(values: list[str]) -> list[str]:
    unique = list(dict.fromkeys(values))
    if not unique:
        raise BadRequestException("Invalid value for Capabilities: give Voice, SMS or both.")
    return unique


def _require_config(connection: Connection, connector: RowMapping) -> RowMapping:
    config = proxy.find_config(connection, connector["pk"])
    if config is None:
        raise NotFoundException(f"Voice connector {connector['id']} has no proxy configuration.")
    return config


def _require_session(
    connection: Connection,
    context: Context,
    connector: RowMapping,
    session_id: str,
    now: int,
    *,
    lock: bool = False,
) -> RowMapping:
    row = proxy.find_session(
        connection,
        connector["pk"],
        session_id,
        now,
        context.services.settings.retention_ms,
        lock=lock,
    )
    if row is None:
        raise NotFoundException(f"Proxy session {session_id} not found.")
    return row


# Number selection.

# Candidates the SQL pre-filter reads beyond the pair's own numbers; the choice is always the
# first of them (or a pair number), the rest only keep the ranking meaningful.
PREFILTER_LIMIT = 8


def ranked_numbers(
    connection: Statements | Connection,
    connector_pk: int,
    request: SelectionRequest,
    now: int,
    *,
    prefilter: bool = True,
    limit: int = PREFILTER_LIMIT,
    known: tuple[set[str], dict[str, int]] | None = None,
) -> list[Candidate]:
    """The available numbers, best first (domain/selection.py decides). With `prefilter`, SQL
    reads only the few rows that can win instead of the connector's whole pool; when none
    passes, the full pool is read so that PoolExhausted names the rule exactly as before.
    `known`: the participants' busy numbers and the pair's history, when already read."""
    if known is not None:
        busy, history = known
    else:
        busy = proxy.busy_numbers(connection, connector_pk, request.participants, now)
        pair = proxy.pair_key(*request.participants)
        history = proxy.pair_numbers(connection, connector_pk, pair)
    rows: list[Mapping[str, Any]] = []
    if prefilter:
        geo = request.geo
        rows = proxy.candidate_numbers(
            connection,
            connector_pk,
            busy=busy,
            had=history.keys(),
            countries=request.pool_countries,
            needed=required_number_capabilities(request.capabilities),
            geo_country=geo.country if geo else None,
            geo_area_code=geo.area_code if geo and geo.level == "AreaCode" else None,
            limit=limit,
        )
    if not rows:
        rows = proxy.connector_numbers(connection, connector_pk)
    candidates = [
        Candidate(
            e164=row["e164"],
            country=row["country"],
            area_code=row["area_code"],
            capabilities=frozenset(row["capabilities"].split(",")),
            last_allocated_at=row["last_allocated_at"],
        )
        for row in rows
    ]
    return available_in_order(request, candidates, busy, history)


# Proxy configuration.


@operation("PutVoiceConnectorProxy")
def put_voice_connector_proxy(context: Context, params: dict[str, Any]) -> Output:
    expiry = _expiry(context, params["DefaultSessionExpiryMinutes"], "DefaultSessionExpiryMinutes")
    countries = _pool_countries(params["PhoneNumberPoolCountries"])
    fallback = params.get("FallBackPhoneNumber")
    values = {
        "default_expiry_minutes": expiry,
        "countries": ",".join(countries),
        "fallback_number": e164_member(fallback, "FallBackPhoneNumber") if fallback else None,
        "disabled": bool(params.get("Disabled", False)),
        "updated_at": context.services.clock.now_ms(),
    }
    with context.services.db.write() as connection:
        connector = require_connector(connection, context, params["VoiceConnectorId"])
        proxy.put_config(connection, {"voice_connector_pk": connector["pk"], **values})
    return {"Proxy": shapes.proxy_config(values)}  # type: ignore[arg-type]


@operation("GetVoiceConnectorProxy")
def get_voice_connector_proxy(context: Context, params: dict[str, Any]) -> Output:
    with context.services.db.read() as connection:
        connector = require_connector(connection, context, params["VoiceConnectorId"])
        config = _require_config(connection, connector)
    return {"Proxy": shapes.proxy_config(config)}


@operation("DeleteVoiceConnectorProxy")
def delete_voice_connector_proxy(context: Context, params: dict[str, Any]) -> Output:
    now = context.services.clock.now_ms()
    with context.services.db.write() as connection:
        connector = require_connector(connection, context, params["VoiceConnectorId"])
        _require_config(connection, connector)
        if proxy.has_active_sessions(connection, connector["pk"], now):
            raise BadRequestException(
                "The proxy configuration has Open or InProgress sessions; delete them or let "
                "them expire first."
            )
        proxy.delete_config(connection, connector["pk"])
    return None


# Sessions.


@operation("CreateProxySession")
async def create_proxy_session(context: Context, params: dict[str, Any]) -> Output:
    participants = _participants(params[PARTICIPANT_MEMBER])
    capabilities = _capabilities(params["Capabilities"])
    level = params.get("GeoMatchLevel")
    geo_params = params.get("GeoMatchParams")
    if geo_params is not None and level is None:
        raise BadRequestException("GeoMatchParams needs GeoMatchLevel.")
    first = number_facts(participants[0])
    try:
        geo = resolve_geo(
            level,
            geo_params.get("Country") or None if geo_params else None,
            geo_params.get("AreaCode") or None if geo_params else None,
            first.country,
            first.area_code,
        )
    except ValueError as exc:
        raise BadRequestException(f"Invalid value for GeoMatchLevel: {exc}") from exc
    expiry_given = "ExpiryMinutes" in params
    behavior = params.get("NumberSelectionBehavior")
    services = context.services

    def allocate(connection: Statements | Connection) -> dict[str, Any]:
        now = services.clock.now_ms()
        connector_id = params["VoiceConnectorId"]
        # The connector, its configuration and the participants-are-its-numbers check in one
        # statement; busy numbers and the pair's history in another (store/prepared.py).
        facts = proxy.create_facts(
            connection, context.account, context.region, connector_id, participants
        )
        if facts is None:
            raise NotFoundException(f"Voice connector {connector_id} not found.")
        connector = {"pk": facts["pk"], "id": facts["id"]}
        if facts["config_pk"] is None:
            raise BadRequestException(
                f"Voice connector {connector['id']} has no proxy configuration; "
                "call PutVoiceConnectorProxy first."
            )
        if facts["disabled"]:
            raise BadRequestException(
                f"Proxy sessions are disabled on voice connector {connector['id']}."
            )
        expiry = _expiry(
            context,
            params["ExpiryMinutes"] if expiry_given else facts["default_expiry_minutes"],
            "ExpiryMinutes",
        )
        own = {
            n
            for n, mine in zip(participants, (facts["own_1"], facts["own_2"]), strict=True)
            if mine
        }
        if own:
            which = " and ".join(
                _participant(index) for index, number in enumerate(participants) if number in own
            )
            raise BadRequestException(
                f"Invalid value for {PARTICIPANT_MEMBER}: {which} "
                f"{'is a phone number' if len(own) == 1 else 'are phone numbers'} of voice "
                f"connector {connector['id']}; participants are the people to connect, not its "
                "proxy numbers."
            )
        routes, history = proxy.routes_and_history(connection, connector["pk"], participants)
        if any(expires_at <= now for _, expires_at in routes):
            if isinstance(connection, Statements):
                raise _ExpiredRoutes
            proxy.release_expired_routes(connection, connector["pk"], participants, now)
        busy = {number for number, expires_at in routes if expires_at > now}
        request = SelectionRequest(
            participants=participants,
            capabilities=frozenset(capabilities),
            pool_countries=frozenset(facts["countries"].split(",")),
            behavior=behavior or DEFAULT_BEHAVIOR,
            geo=geo,
        )
        try:
            ranked = ranked_numbers(
                connection, connector["pk"], request, now, known=(busy, history)
            )
        except PoolExhausted as exc:
            raise BadRequestException(str(exc)) from exc
        created_at = proxy.creation_stamp(connection, connector["pk"], now)
        session = {
            "voice_connector_pk": connector["pk"],
            # Time-ordered: on SQLite the session is stored under a key made from it
            # (store.proxy.stored_key), next to the sessions created just before.
            "id": time_ordered_uuid(created_at),
            "name": params.get("Name"),
            "status": SessionStatus.OPEN,
            "capabilities": ",".join(capabilities),
            "expiry_minutes": expiry,
            "expiry_minutes_given": expiry_given,
            "number_selection_behavior": behavior,
            "geo_match_level": level,
            "geo_country": geo_params.get("Country") if geo_params else None,
            "geo_area_code": geo_params.get("AreaCode") if geo_params else None,
            "participant_1": participants[0],
            "participant_2": participants[1],
            "proxy_number": ranked[0].e164,
            "created_at": created_at,
            "updated_at": created_at,
            "expires_at": lifecycle.expires_at(created_at, expiry),
            "ended_at": None,
        }
        session_pk = proxy.insert_session(connection, session)
        # A concurrent create that won this number makes the unique constraint fail here;
        # the whole transaction then runs again and sees that number as busy.
        proxy.record_allocation(connection, connector["pk"], session, session_pk)
        return shapes.proxy_session(session, connector["id"], now)  # type: ignore[arg-type]

    # Prepared statements on the driver's connection, sharing their commit with the other
    # writes of this turn of the event loop (`Services.writes`). Closing sessions that expired
    # unseen is written for SQLAlchemy's Connection, so a create that meets one (rare: the
    # sweeper closes them within a minute) runs again on that path.
    deadline = services.settings.db_deadline
    started = time.monotonic()
    try:
        created = await services.writes.write(allocate, deadline)
    except _ExpiredRoutes:
        # One deadline for the whole request: the rerun has what the first attempt left.
        left = max(deadline - (time.monotonic() - started), MIN_DEADLINE_S)
        created = await services.db.run(lambda: services.db.write_retrying(allocate), left)
    return {"ProxySession": _announce(context, events.SESSION_CREATED, created)}


class _ExpiredRoutes(Exception):
    """A participant's route belongs to a session that expired unseen (see above)."""


@operation("GetProxySession")
def get_proxy_session(context: Context, params: dict[str, Any]) -> Output:
    now = context.services.clock.now_ms()
    # One prepared statement (docs/performance.md); on a miss the path below words the error.
    found = proxy.find_session_by_ids(
        context.services.db,
        context.account,
        context.region,
        params["VoiceConnectorId"],
        params["ProxySessionId"],
        now,
        context.services.settings.retention_ms,
    )
    if found is not None:
        *shown, connector_id = found
        return Encoded(ProxySession=shapes.proxy_session_wire(shown, connector_id, now))
    with context.services.db.read() as connection:
        connector = require_connector(connection, context, params["VoiceConnectorId"])
        row = _require_session(connection, context, connector, params["ProxySessionId"], now)
    shown = shapes.shown_session(row)
    return Encoded(ProxySession=shapes.proxy_session_wire(shown, connector["id"], now))


@operation("ListProxySessions")
def list_proxy_sessions(context: Context, params: dict[str, Any]) -> Output:
    now = context.services.clock.now_ms()
    limit = params.get("MaxResults", DEFAULT_PAGE)
    connector_id = params["VoiceConnectorId"]
    listing = f"proxy-sessions:{connector_id}:{params.get('Status')}"
    after = page_after(context, listing, params.get("NextToken"))
    # One prepared statement (store/prepared.py); only an empty page asks whether the connector
    # exists at all.
    with prepared.statement(context.services.db) as run:
        rows = proxy.session_page(
            run,
            context.account,
            context.region,
            connector_id,
            status=params.get("Status"),
            after=tuple(after) if after else None,  # type: ignore[arg-type]
            limit=limit + 1,
            now=now,
            retention_ms=context.services.settings.retention_ms,
        )
        if (
            not rows
            and proxy.connector_pk(run, context.account, context.region, connector_id) is None
        ):
            raise NotFoundException(f"Voice connector {connector_id} not found.")
    token = next_token(
        context, listing, rows, limit, lambda r: [r[proxy.SHOWN_CREATED_AT], r[proxy.SHOWN_ID]]
    )
    wire = shapes.proxy_session_wire
    # Encoded: every member, in the model's order.
    return Encoded(
        NextToken=token, ProxySessions=[wire(row, connector_id, now) for row in rows[:limit]]
    )


def _session_to_change(run: Statements, context: Context, params: dict[str, Any], now: int) -> Any:
    """The session named by the request, locked until the transaction ends (a concurrent sweep
    must not close it between a check and the write); NotFound naming the connector or the
    session otherwise."""
    connector_id, session_id = params["VoiceConnectorId"], params["ProxySessionId"]
    row = proxy.session_to_change(
        run,
        context.account,
        context.region,
        connector_id,
        session_id,
        now,
        context.services.settings.retention_ms,
    )
    if row is not None:
        return row
    if proxy.connector_pk(run, context.account, context.region, connector_id) is None:
        raise NotFoundException(f"Voice connector {connector_id} not found.")
    raise NotFoundException(f"Proxy session {session_id} not found.")


@operation("UpdateProxySession")
async def update_proxy_session(context: Context, params: dict[str, Any]) -> Output:
    capabilities = _capabilities(params["Capabilities"])
    now = context.services.clock.now_ms()

    def change(run: Statements) -> tuple[Any, dict[str, Any]]:
        row = _session_to_change(run, context, params, now)
        status, _ = lifecycle.effective(row["status"], row["expires_at"], row["ended_at"], now)
        if status == SessionStatus.CLOSED:
            raise BadRequestException(f"Proxy session {row['id']} is Closed and cannot change.")
        number_capabilities = frozenset(filter(None, (row["number_capabilities"] or "").split(",")))
        if not covers(number_capabilities, frozenset(capabilities)):
            raise BadRequestException(
                "Invalid value for Capabilities: the session's proxy number cannot serve "
                f"{' and '.join(capabilities)}."
            )
        changes: dict[str, Any] = {"capabilities": ",".join(capabilities), "updated_at": now}
        if "ExpiryMinutes" in params:
            minutes = _expiry(context, params["ExpiryMinutes"], "ExpiryMinutes")
            expires, closed_at = lifecycle.after_update(row["created_at"], minutes, now)
            changes |= {
                "expiry_minutes": minutes,
                "expiry_minutes_given": True,
                "expires_at": expires,
            }
            if closed_at is not None:
                changes |= {"status": SessionStatus.CLOSED, "ended_at": closed_at}
                proxy.release_routes(run, row["pk"])
            else:
                proxy.set_route_expiry(run, row["pk"], expires)
        proxy.update_session(run, row["pk"], changes)
        return row, changes

    # Prepared statements on the driver's connection, sharing their commit (`Services.writes`).
    row, changes = await context.services.writes.write(
        change, context.services.settings.db_deadline
    )
    updated = shapes.proxy_session({**row, **changes}, row["voice_connector_id"], now)
    return {"ProxySession": _announce(context, events.SESSION_UPDATED, updated)}


@operation("DeleteProxySession")
async def delete_proxy_session(context: Context, params: dict[str, Any]) -> Output:
    now = context.services.clock.now_ms()

    def delete(run: Statements) -> Any:
        row = _session_to_change(run, context, params, now)
        proxy.delete_session(run, row["pk"])
        return row

    row = await context.services.writes.write(delete, context.services.settings.db_deadline)
    shape = shapes.proxy_session(row, row["voice_connector_id"], now)
    _announce(context, events.SESSION_DELETED, shape)
    return None


def _announce(context: Context, event_type: str, session: dict[str, Any]) -> dict[str, Any]:
    """Publish a session change; answers `session` unchanged."""
    events.announce_session(
        context.services.events,
        event_type,
        session,
        account=context.account,
        region=context.region,
    )
    return session
