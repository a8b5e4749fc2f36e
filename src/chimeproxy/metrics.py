"""Prometheus metrics for `GET /_chimeproxy/metrics`.

Two kinds, kept apart on purpose:

- Per-process counters and histograms (requests by operation and status, latency, pool
  exhaustion refusals), counted by a middleware. With `serve --workers N` they use
  prometheus_client's multiprocess mode: every worker writes its values to files in
  PROMETHEUS_MULTIPROC_DIR (set up by `chimeproxy serve`), and whichever worker answers a scrape
  adds up all of them, so one scrape of the host sees the whole host.
- Gauges computed from the database at scrape time (sessions by status, proxy-number pool use
  per voice connector): the same answer from every process and every host, since the database
  is the only state. A few aggregate queries over indexed columns.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import Connection, case, func, select

from chimeproxy.domain.lifecycle import CLOSED, IN_PROGRESS, OPEN
from chimeproxy.domain.selection import PoolExhausted
from chimeproxy.protocol.errors import ServiceError, ServiceUnavailableException
from chimeproxy.protocol.http import Handler, Request, Response
from chimeproxy.store.database import Database
from chimeproxy.store.schema import (
    active_routes,
    phone_numbers,
    proxy_configs,
    proxy_sessions,
    voice_connectors,
)

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The classic text format, which every Prometheus version (and most other scrapers) reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Latency buckets from a point query on SQLite (well under a millisecond) to a slow PostgreSQL.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# CreateProxySession's path; its label is the voice connector whose pool ran dry.
_SESSIONS_PATH = re.compile(r"^/voice-connectors/([^/?]+)/proxy-sessions(?:[/?]|$)")

ps = proxy_sessions.c
ar = active_routes.c
pn = phone_numbers.c
pc = proxy_configs.c
vc = voice_connectors.c


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROCESS_ENV))


@dataclass
class PoolUse:
    """One voice connector's proxy-number pool at one instant."""

    account: str
    voice_connector: str
    numbers: int = 0  # assigned numbers of the pool countries
    in_use: int = 0  # of those, numbers with at least one active session
    active_sessions: int = 0
    busiest_participant: int = 0  # most active sessions any one participant has


@dataclass
class Snapshot:
    """What the database says at scrape time."""

    sessions: dict[str, int] = field(default_factory=dict)
    pools: list[PoolUse] = field(default_factory=list)


def database_snapshot(connection: Connection, now: int) -> Snapshot:
    """Session counts by status (as a read would show them at `now`) and pool use per voice
    connector that has a proxy configuration."""
    # Grouped through a subquery: PostgreSQL would not match a GROUP BY expression whose
    # parameters are bound separately from the same expression in the SELECT list.
    effective = (
        select(case((ps.expires_at <= now, CLOSED), else_=ps.status).label("status"))
        .select_from(proxy_sessions)
        .subquery()
    )
    sessions = dict.fromkeys((OPEN, IN_PROGRESS, CLOSED), 0)
    for status, count in connection.execute(
        select(effective.c.status, func.count()).group_by(effective.c.status)
    ).all():
        sessions[status] = sessions.get(status, 0) + count

    configured = connection.execute(
        select(vc.pk, vc.account, vc.id, pc.countries).join(
            proxy_configs, pc.voice_connector_pk == vc.pk
        )
    ).all()
    if not configured:
        return Snapshot(sessions)
    numbers: dict[tuple[int, str], int] = {}
    for pk, country, count in connection.execute(
        select(pn.voice_connector_pk, pn.country, func.count())
        .where(pn.status == "Assigned", pn.voice_connector_pk.is_not(None))
        .group_by(pn.voice_connector_pk, pn.country)
    ):
        numbers[(pk, country)] = count
    live = ar.expires_at > now
    in_use: dict[tuple[int, str], int] = {}
    for pk, country, count in connection.execute(
        select(ar.voice_connector_pk, pn.country, func.count(ar.proxy_number.distinct()))
        .join(
            phone_numbers,
            (pn.e164 == ar.proxy_number)
            & (pn.voice_connector_pk == ar.voice_connector_pk)
            & (pn.status == "Assigned"),
        )
        .where(live)
        .group_by(ar.voice_connector_pk, pn.country)
    ):
        in_use[(pk, country)] = count
    # Every active session has one route per participant.
    routes = dict(
        connection.execute(
            select(ar.voice_connector_pk, func.count()).where(live).group_by(ar.voice_connector_pk)
        ).all()
    )
    per_participant = (
        select(ar.voice_connector_pk.label("pk"), func.count().label("n"))
        .where(live)
        .group_by(ar.voice_connector_pk, ar.participant)
        .subquery()
    )
    busiest = dict(
        connection.execute(
            select(per_participant.c.pk, func.max(per_participant.c.n)).group_by(
                per_participant.c.pk
            )
        ).all()
    )
    pools = []
    for pk, account, connector_id, countries in configured:
        pool = PoolUse(account, connector_id)
        for country in countries.split(","):
            pool.numbers += numbers.get((pk, country), 0)
            pool.in_use += in_use.get((pk, country), 0)
        pool.active_sessions = routes.get(pk, 0) // 2
        pool.busiest_participant = busiest.get(pk, 0)
        pools.append(pool)
    return Snapshot(sessions, pools)


class _SnapshotCollector(Collector):
    """Gauges from one database snapshot (or only `database_up 0` when there is none)."""

    def __init__(self, snapshot: Snapshot | None) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "chimeproxy_database_up", "1 when the database answered the scrape's queries."
        )
        up.add_metric([], 0 if self.snapshot is None else 1)
        yield up
        if self.snapshot is None:
            return
        sessions = GaugeMetricFamily(
            "chimeproxy_proxy_sessions",
            "Proxy sessions by status as reads show them now (Closed: not yet purged).",
            labels=["status"],
        )
        for status, count in sorted(self.snapshot.sessions.items()):
            sessions.add_metric([status], count)
        yield sessions
        labels = ["account", "voice_connector"]
        numbers = GaugeMetricFamily(
            "chimeproxy_proxy_pool_numbers",
            "Proxy numbers of a voice connector's pool (assigned, of its pool countries): "
            "free (no active session) or in_use.",
            labels=[*labels, "state"],
        )
        active = GaugeMetricFamily(
            "chimeproxy_proxy_pool_active_sessions",
            "Open and InProgress sessions of the voice connector.",
            labels=labels,
        )
        busiest = GaugeMetricFamily(
            "chimeproxy_proxy_pool_busiest_participant_sessions",
            "The most active sessions any one participant has on the voice connector; each "
            "needs its own proxy number, so new sessions for that participant are refused "
            "once this reaches chimeproxy_proxy_pool_numbers (free + in_use).",
            labels=labels,
        )
        for pool in self.snapshot.pools:
            key = [pool.account, pool.voice_connector]
            numbers.add_metric([*key, "free"], pool.numbers - pool.in_use)
            numbers.add_metric([*key, "in_use"], pool.in_use)
            active.add_metric(key, pool.active_sessions)
            busiest.add_metric(key, pool.busiest_participant)
        yield from (numbers, active, busiest)


class Metrics:
    """The counters of this process, the middleware that counts, and the exposition."""

    def __init__(self) -> None:
        self.multiprocess = multiprocess_mode()
        # In multiprocess mode the values live in per-process files, read back at scrape time;
        # otherwise in this registry (one per application, so tests may build several apps).
        self.registry = None if self.multiprocess else CollectorRegistry()
        self.requests = Counter(
            "chimeproxy_requests",
            "API requests answered, by operation and HTTP status.",
            ["operation", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "chimeproxy_request_duration_seconds",
            "Time to answer an API request, by operation.",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.exhausted = Counter(
            "chimeproxy_proxy_pool_exhausted",
            "CreateProxySession refusals because no proxy number was available for the "
            "participants.",
            ["account", "voice_connector"],
            registry=self.registry,
        )

    async def middleware(self, request: Request, call_next: Handler) -> Response:
        """Count every API request (internal endpoints are answered before this runs)."""
        started = time.perf_counter()
        status = 500  # an exception other than a ServiceError becomes 500
        try:
            response = await call_next(request)
            status = response.status
            return response
        except ServiceError as error:
            status = error.status
            if isinstance(error.__cause__, PoolExhausted):
                self.exhausted.labels(request.account, _connector_of(request.raw_path)).inc()
            raise
        finally:
            operation = request.operation or "unknown"
            self.requests.labels(operation, str(status)).inc()
            self.latency.labels(operation).observe(time.perf_counter() - started)

    def exposition(self, snapshot: Snapshot | None) -> bytes:
        """The text exposition: this process's (or this host's) counters and the gauges."""
        registry = CollectorRegistry(auto_describe=False)
        if self.multiprocess:
            MultiProcessCollector(registry)
        else:
            assert self.registry is not None
            registry.register(_RegistryCollector(self.registry))
        registry.register(_SnapshotCollector(snapshot))
        return generate_latest(registry)


def scrape_snapshot(db: Database, now: int) -> Snapshot | None:
    """The database gauges, or None when the database does not answer."""
    try:
        with db.read() as connection:
            return database_snapshot(connection, now)
    except ServiceUnavailableException:
        return None


class _RegistryCollector(Collector):
    """Exposes another registry's metrics inside the scrape's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        return iter(self.registry.collect())


def _connector_of(raw_path: str) -> str:
    match = _SESSIONS_PATH.match(raw_path)
    return match.group(1) if match else "unknown"
