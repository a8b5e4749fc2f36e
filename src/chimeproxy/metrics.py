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
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import Any

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
        # One process: what `observe` counts is tallied in plain lists and added to the
        # counters when a scrape asks (`exposition`), in bulk. prometheus_client's own calls
        # (checks, a lock per value, a walk of the buckets) took 1.9 µs per request. Several
        # workers: each answer is written through to the shared files at once, as before, so
        # that any worker's scrape sees every answer already given.
        self._tallies: dict[tuple[str, int], _Tally] = {}
        self._bounds = tuple(self.latency._upper_bounds)  # type: ignore[attr-defined]
        if not self.multiprocess and _tallies_apply():
            self.observe = self._tally  # type: ignore[method-assign]

    def observe(self, operation: str, status: int, seconds: float) -> None:
        """Count one answered request under its operation or endpoint name."""
        counter, histogram = self._children_of(operation, status)
        counter.inc()
        histogram.observe(seconds)

    def _tally(self, operation: str, status: int, seconds: float) -> None:
        """`observe`, tallied until the next scrape."""
        tally = self._tallies.get((operation, status))
        if tally is None:
            tally = self._tallies[(operation, status)] = [0, 0.0, [0] * len(self._bounds)]
        tally[0] += 1
        tally[1] += seconds
        tally[2][bisect_left(self._bounds, seconds)] += 1  # the first bucket it fits, as theirs

    def _apply_tallies(self) -> None:
        tallies, self._tallies = self._tallies, {}
        for (operation, status), (count, total, buckets) in tallies.items():
            counter, histogram = self._children_of(operation, status)
            counter.inc(count)
            histogram._sum.inc(total)  # type: ignore[attr-defined]
            for bucket, observed in zip(histogram._buckets, buckets, strict=True):  # type: ignore[attr-defined]
                if observed:
                    bucket.inc(observed)

    def _children_of(self, operation: str, status: int) -> tuple[Counter, Histogram]:
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
        return children

    def database_failure(self, cause: str) -> None:
        """Database work failed for `cause` (store/health.py classifies)."""
        self.database_failures.labels(cause).inc()

    def pool_exhausted(self, request: Request) -> None:
        """A CreateProxySession refused because no proxy number was available."""
        connector = request.labels.get("voiceConnectorId", "unknown")
        self.exhausted.labels(request.account, connector).inc()

    def exposition(self, snapshot: Snapshot | None) -> bytes:
        """The text exposition: this process's (or this host's) counters and the gauges."""
        self._apply_tallies()
        registry = CollectorRegistry(auto_describe=False)
        if self.multiprocess:
            MultiProcessCollector(registry)
        else:
            assert self.registry is not None
            registry.register(_RegistryCollector(self.registry))
        registry.register(_SnapshotCollector(snapshot))
        return generate_latest(registry)


# Requests, seconds, and requests per latency bucket (not cumulative).
_Tally = list[Any]


def _tallies_apply() -> bool:
    """Whether this prometheus_client keeps a histogram's values where `_apply_tallies` adds to
    them (it has for years; a version that does not is counted through its own calls)."""
    probe = Histogram("chimeproxy_probe", "", buckets=LATENCY_BUCKETS, registry=None)
    return all(hasattr(probe, name) for name in ("_sum", "_buckets", "_upper_bounds"))


class _RegistryCollector(Collector):
    """Exposes another registry's metrics inside the scrape's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        return iter(self.registry.collect())
