"""Prometheus metrics for `GET /_chimeproxy/metrics`.

Two kinds, kept apart on purpose:

- Per-process counters and histograms (requests by operation and status, latency, pool
  exhaustion refusals), counted for every request whatever endpoint answers it (app.py). With `serve --workers N` they use
  prometheus_client's multiprocess mode: every worker writes its values to files in
  PROMETHEUS_MULTIPROC_DIR (set up by `chimeproxy serve`), and whichever worker answers a scrape
  adds up all of them, so one scrape of the host sees the whole host.
- Gauges computed from the database at scrape time (sessions by status, proxy-number pool use
  per voice connector): the same answer from every process and every host, since the database
  is the only state. A few aggregate queries over indexed columns.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from chimeproxy.protocol.http import Request
from chimeproxy.store.health import Cause
from chimeproxy.store.stats import Snapshot

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The classic text format, which every Prometheus version (and most other scrapers) reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Latency buckets from a point query on SQLite (well under a millisecond) to a slow PostgreSQL.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROCESS_ENV))


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
            "Requests answered, by operation (or chimeproxy endpoint) and HTTP status.",
            ["operation", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "chimeproxy_request_duration_seconds",
            "Time to answer a request, by operation (or chimeproxy endpoint).",
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
        self.database_failures = Counter(
            "chimeproxy_database_failures",
            "Database work that failed, by cause: disk_full, read_only, unavailable, timeout "
            "(or busy), other.",
            ["cause"],
            registry=self.registry,
        )
        for cause in Cause:  # every cause shows from the start, at 0, so rates need no gap
            self.database_failures.labels(cause.value)
        self._children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}

    def observe(self, operation: str, status: int, seconds: float) -> None:
        """Count one answered request under its operation or endpoint name."""
        key = (operation, status)
        children = self._children.get(key)
        if children is None:
            # `labels` costs a few µs a call (argument checks, a lock); operations and statuses
            # are a fixed few, so each pair's children are looked up once.
            children = (
                self.requests.labels(operation, str(status)),
                self.latency.labels(operation),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def database_failure(self, cause: str) -> None:
        """Database work failed for `cause` (store/health.py classifies)."""
        self.database_failures.labels(cause).inc()

    def pool_exhausted(self, request: Request) -> None:
        """A CreateProxySession refused because no proxy number was available."""
        connector = request.labels.get("voiceConnectorId", "unknown")
        self.exhausted.labels(request.account, connector).inc()

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


class _RegistryCollector(Collector):
    """Exposes another registry's metrics inside the scrape's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        return iter(self.registry.collect())
