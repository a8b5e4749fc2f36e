"""What each console page shows: the data a template needs, read in one transaction, always
scoped to the viewer's account (and region, when one is chosen)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, RowMapping

from chimeproxy import shapes
from chimeproxy.console import charts
from chimeproxy.domain.lifecycle import SessionStatus
from chimeproxy.domain.phone import InvalidPhoneNumber, normalize_e164
from chimeproxy.services import Services
from chimeproxy.store import console as store
from chimeproxy.store import interactions as interaction_store
from chimeproxy.store import phone_numbers as phone_number_store
from chimeproxy.store import stats
from chimeproxy.store.catalog import revision as catalog_revision

PAGE = 50
NUMBERS_PAGE = 100
FOUND_LIMIT = 200
HOUR_MS = 3_600_000
STATUSES = tuple(SessionStatus)
# An interaction commits a moment after its start time: the live view asks again for this much
# of the past, and the page skips rows it already shows.
LIVE_OVERLAP_MS = 10_000
_INTERACTION_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


# What a page reads: (connection, services, viewer, query) -> the template's data.
Reader = Callable[[Connection, Services, "Viewer", dict[str, str]], dict[str, Any]]


class NotFound(Exception):
    """A session (or page) the viewer's account does not have."""


@dataclass
class Viewer:
    """Who looks, at what: the signed-in account, the region shown (None: every region) and
    whether phone numbers are revealed on this view."""

    token_hash: str
    account: str
    access_key_id: str | None
    region: str | None
    csrf: str
    reveal: bool = False
    set_cookies: list[str] = field(default_factory=list)


@dataclass
class Scope:
    """The viewer's voice connectors, by pk."""

    connectors: dict[int, RowMapping]

    @property
    def pks(self) -> list[int]:
        return list(self.connectors)

    def by_id(self, connector_id: str | None) -> RowMapping | None:
        return next((c for c in self.connectors.values() if c["id"] == connector_id), None)


def scope(connection: Connection, viewer: Viewer) -> Scope:
    rows = store.connectors(connection, viewer.account, viewer.region)
    return Scope({row["pk"]: row for row in rows})


def position(text: str | None) -> tuple[int, str] | None:
    """A page position `created_at:id` from a link; None when absent or not one."""
    if not text:
        return None
    at, _, ident = text.partition(":")
    if not (at.isdigit() and len(at) <= 15 and 0 < len(ident) <= 64):
        return None
    return int(at), ident


def instant(text: str | None) -> int | None:
    """Milliseconds since the epoch from a link or a script; None when absent or not one."""
    return int(text) if text and text.isdigit() and len(text) <= 15 else None


def parse_number(text: str | None) -> str | None:
    """A number as someone types it (spaces, dashes, dots, brackets), in E.164; None when it
    cannot be one."""
    if not text:
        return None
    cleaned = "".join(c for c in text if c not in " -.()/\t")
    try:
        return normalize_e164(cleaned)
    except InvalidPhoneNumber:
        return None


def overview(
    connection: Connection, services: Services, viewer: Viewer, query: dict[str, str]
) -> dict[str, Any]:
    now = services.clock.now_ms()
    mine = scope(connection, viewer)
    pks = mine.pks
    start = charts.window_start(now)
    pools = stats.pool_use(connection, now, pks)
    active = store.active_sessions(connection, pks, now)
    created = store.created_per_hour(connection, pks, start)
    refused = store.refused_per_hour(connection, pks, start)
    outcomes = store.outcomes_since(connection, pks, now - HOUR_MS)
    cards = []
    for pk, connector in mine.connectors.items():
        pool = pools.get(pk)
        counts = active.get(pk, {})
        cards.append(
            {
                "connector": connector,
                "pool": pool,
                "open": counts.get(SessionStatus.OPEN, 0),
                "in_progress": counts.get(SessionStatus.IN_PROGRESS, 0),
                "chart": charts.hourly(created.get(pk, {}), refused.get(pk, {}), start),
                "outcomes": sorted(
                    outcomes.get(pk, {}).items(), key=lambda item: (-item[1], item[0] or "")
                ),
            }
        )
    return {"cards": cards, "now": now}


def session_list(
    connection: Connection, services: Services, viewer: Viewer, query: dict[str, str]
) -> dict[str, Any]:
    now = services.clock.now_ms()
    mine = scope(connection, viewer)
    status = query.get("status") if query.get("status") in STATUSES else None
    connector = mine.by_id(query.get("connector"))
    typed = query.get("number", "").strip()
    participant = parse_number(typed)
    name = query.get("name", "").strip()[:64]
    before, after = position(query.get("before")), position(query.get("after"))
    pks = [connector["pk"]] if connector is not None else mine.pks
    if typed and participant is None:
        pks = []  # a number that cannot be one matches nothing
    rows = store.session_page(
        connection,
        pks,
        now=now,
        retention_ms=services.settings.retention_ms,
        status=status,
        participant=participant,
        name=name or None,
        before=before,
        after=after,
        limit=PAGE + 1,
    )
    # One row more than a page says whether there is more in the direction of travel.
    more = len(rows) > PAGE
    if after is not None:
        rows = rows[-PAGE:] if more else rows
        has_newer, has_older = more, True
    else:
        rows = rows[:PAGE]
        has_newer, has_older = before is not None, more
    sessions = [_session(row, mine.connectors[row["voice_connector_pk"]], now) for row in rows]
    return {
        "sessions": sessions,
        "connectors": list(mine.connectors.values()),
        "filters": {
            "status": status or "",
            "connector": connector["id"] if connector is not None else "",
            "number": typed,
            "name": name,
        },
        "bad_number": bool(typed) and participant is None,
        "newer": f"{rows[0]['created_at']}:{rows[0]['id']}" if rows and has_newer else None,
        "older": f"{rows[-1]['created_at']}:{rows[-1]['id']}" if rows and has_older else None,
        "statuses": STATUSES,
        "now": now,
    }


def _session(row: RowMapping | dict[str, Any], connector: Any, now: int) -> dict[str, Any]:
    """A session as the pages show it: the API's shape, plus where it lives and when it ends."""
    shape = shapes.proxy_session(row, connector["id"], now)
    shape["Region"] = connector["region"]
    shape["ConnectorName"] = connector["name"]
    shape["ExpiresAt"] = row["expires_at"]
    shape["ExpiryMinutesEffective"] = row["expiry_minutes"]
    shape["ProxyPhoneNumber"] = row["proxy_number"]
    return shape


def session_detail(
    connection: Connection, services: Services, viewer: Viewer, connector_id: str, session_id: str
) -> dict[str, Any]:
    now = services.clock.now_ms()
    row = store.find_session(
        connection, viewer.account, connector_id, session_id, now, services.settings.retention_ms
    )
    if row is None:
        raise NotFound(f"No session {session_id} on voice connector {connector_id}.")
    connector = {"id": row["connector_id"], "region": row["connector_region"], "name": None}
    found = interaction_store.interaction_page(
        connection, row["voice_connector_pk"], session_pk=row["pk"], after=None, limit=FOUND_LIMIT
    )
    return {
        "session": _session(row, connector, now),
        "interactions": [_interaction(r, row["connector_id"]) for r in found],
        "now": now,
    }


def find(
    connection: Connection, services: Services, viewer: Viewer, query: dict[str, str]
) -> dict[str, Any]:
    now = services.clock.now_ms()
    typed = query.get("number", "").strip()
    number = parse_number(typed)
    result: dict[str, Any] = {"typed": typed, "number": number, "searched": bool(typed)}
    if number is None:
        return result | {"sessions": [], "interactions": []}
    mine = scope(connection, viewer)
    rows = store.sessions_of_number(
        connection, mine.pks, number, now, services.settings.retention_ms, FOUND_LIMIT
    )
    found = store.interactions_of_number(connection, mine.pks, number, FOUND_LIMIT)
    return result | {
        "sessions": [_session(r, mine.connectors[r["voice_connector_pk"]], now) for r in rows],
        "interactions": [_interaction(r) for r in found],
        "now": now,
    }


def numbers(
    connection: Connection, services: Services, viewer: Viewer, query: dict[str, str]
) -> dict[str, Any]:
    now = services.clock.now_ms()
    mine = scope(connection, viewer)
    connector = mine.by_id(query.get("connector"))
    after = query.get("after") or None
    rows = phone_number_store.page(
        connection,
        viewer.account,
        viewer.region,
        status=None,
        product_type=None,
        connector_pk=connector["pk"] if connector is not None else None,
        after=after,
        limit=NUMBERS_PAGE + 1,
    )
    more = len(rows) > NUMBERS_PAGE
    rows = rows[:NUMBERS_PAGE]
    busy = store.active_sessions_per_number(connection, [r["e164"] for r in rows], now)
    catalog = services.catalog()
    return {
        "numbers": [
            {**r, "capabilities": r["capabilities"].split(","), "sessions": busy.get(r["e164"], 0)}
            for r in rows
        ],
        "connectors": list(mine.connectors.values()),
        "connector": connector["id"] if connector is not None else "",
        "next": rows[-1]["e164"] if more and rows else None,
        "paged": after is not None,
        "catalog": {
            "imported": catalog_revision(connection) is not None,
            "size": len(catalog),
            "countries": sorted(catalog.countries()),
        },
    }


def live(
    connection: Connection, services: Services, viewer: Viewer, query: dict[str, str]
) -> dict[str, Any]:
    """The newest interactions (since the query's `since`, less the overlap; else within
    retention), and of those the query's `open` names (the rows a live view still shows in
    progress), the ones that have ended since."""
    now = services.clock.now_ms()
    since = instant(query.get("since"))
    mine = scope(connection, viewer)
    start = since - LIVE_OVERLAP_MS if since is not None else now - services.settings.retention_ms
    rows = store.recent_interactions(connection, mine.pks, start, PAGE)
    ended = store.ended_interactions(connection, mine.pks, interaction_ids(query.get("open")))
    return {
        "interactions": [_interaction(r) for r in rows],
        "ended": [_interaction(r) for r in ended],
        "now": now,
    }


def interaction_ids(text: str | None) -> list[str]:
    """The interaction ids of a comma-separated list from a script: at most a page of them,
    each shaped like one (anything else is dropped, never looked up)."""
    if not text:
        return []
    ids = [part for part in text.split(",", PAGE)[:PAGE] if _INTERACTION_ID.fullmatch(part)]
    return list(dict.fromkeys(ids))


def _interaction(row: RowMapping, connector_id: str | None = None) -> dict[str, Any]:
    connector_id = connector_id or row["connector_id"]
    shape = shapes.interaction(row, connector_id, row["session_id"], with_body=False)
    shape["StartedAt"] = row["started_at"]
    return shape


def scope_choices(connection: Connection, viewer: Viewer, open_mode: bool) -> dict[str, Any]:
    """The region switch (and in open mode the account switch)."""
    return {
        "regions": store.regions(connection, viewer.account),
        "accounts": store.accounts(connection) if open_mode else [],
    }
