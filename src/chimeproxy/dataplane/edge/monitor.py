"""The edge's own health and metrics over HTTP (`--metrics-listen`):

- GET /health   200 {"status": "ok", ...} while Kamailio answers its RPC; else 503.
- GET /metrics  Prometheus text: requests routed and refused by reason, requests from outside
                the trunk, blocked sources, gateway states, calls in progress and ended,
                Kamailio and rtpengine restarts, media sessions, packets relayed and
                filtered, errors, end-of-call reports delivered and waiting.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from chimeproxy.dataplane.edge.rpc import KamailioRpc, RpcError
from chimeproxy.dataplane.edge.settings import HostPort

log = logging.getLogger("chimeproxy.sip_edge")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Kamailio's script counters (kamailio.cfg.in) by the metric and labels they become.
ROUTED = {
    "routed_connect": "connect",
    "routed_fallback": "fallback",
}
REFUSED = {
    "rejected_not_participant": "not-a-participant",
    "rejected_not_proxy_number": "not-a-proxy-number",
    "rejected_session_closed": "session-closed",
    "rejected_not_allowed": "kind-not-allowed",
    "rejected_other": "other",
    "routing_unavailable": "routing-unavailable",
    "routing_timeouts": "routing-timeout",
    "gateway_unavailable": "no-gateway",
    "gateway_auth_failed": "gateway-auth-failed",
}


class EdgeState:
    """What the monitor reports besides Kamailio's own counters."""

    def __init__(self, rpc: KamailioRpc) -> None:
        self.rpc = rpc
        self.restarts: Callable[[], int] = lambda: 0
        self.reports_pending: Callable[[], int] = lambda: 0
        self.reports_delivered: Callable[[], int] = lambda: 0
        self.calls_ended: Callable[[], int] = lambda: 0
        # The supervised rtpengine's own metrics (None with --rtpengine), its restarts, and
        # the packets the media filter stopped.
        self.media_url: str | None = None
        self.media_restarts: Callable[[], int] = lambda: 0
        self.media_filtered: Callable[[], int] | None = None

    def media_samples(self) -> dict[str, float] | None:
        """rtpengine's totals: sessions, packets and errors relayed; None when it does not
        answer."""
        if self.media_url is None:
            return None
        try:
            with urllib.request.urlopen(self.media_url, timeout=3) as answer:
                text = answer.read().decode()
        except (OSError, ValueError):
            return None
        found = {"sessions": 0.0, "packets": 0.0, "errors": 0.0}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "rtpengine_sessions" and sample.labels.get("type") == "own":
                    found["sessions"] = sample.value
                elif (
                    sample.name == "rtpengine_packets_total"
                    and sample.labels.get("type") == "userspace"
                ):
                    found["packets"] = sample.value
                elif (
                    sample.name == "rtpengine_errors_total"
                    and sample.labels.get("type") == "userspace"
                ):
                    found["errors"] = sample.value
        return found


class _EdgeCollector(Collector):
    def __init__(self, state: EdgeState) -> None:
        self.state = state

    def collect(self) -> Iterable[Metric]:
        rpc = self.state.rpc
        up = GaugeMetricFamily("chimeproxy_edge_up", "1 when Kamailio answers its RPC.")
        try:
            script = rpc.statistics("script")
            dialogs = rpc.statistics("dialog")
            gateways = rpc.gateways()
        except RpcError:
            up.add_metric([], 0)
            yield up
            yield from self._own()
            return
        up.add_metric([], 1)
        yield up
        routed = CounterMetricFamily(
            "chimeproxy_edge_calls_routed",
            "Calls and messages relayed, by the routing service's action.",
            labels=["action"],
        )
        for name, action in ROUTED.items():
            routed.add_metric([action], script.get(name, 0))
        yield routed
        refused = CounterMetricFamily(
            "chimeproxy_edge_calls_refused",
            "Calls and messages from the trunk refused, by reason.",
            labels=["reason"],
        )
        for name, reason in REFUSED.items():
            refused.add_metric([reason], script.get(name, 0))
        yield refused
        yield _counter(
            "chimeproxy_edge_untrusted_requests",
            "Requests from outside the trunk, refused without routing.",
            script.get("untrusted_rejected", 0),
        )
        yield _counter(
            "chimeproxy_edge_blocked_sources",
            "Sources blocked for flooding.",
            script.get("flood_blocked", 0),
        )
        yield _counter(
            "chimeproxy_edge_blocked_requests",
            "Requests dropped because their source was blocked.",
            script.get("flood_dropped", 0),
        )
        yield _counter(
            "chimeproxy_edge_gateway_failovers",
            "Calls moved to the next gateway because one did not answer or failed.",
            script.get("gateway_failovers", 0),
        )
        gateway_up = GaugeMetricFamily(
            "chimeproxy_edge_gateway_up",
            "1 while a gateway is in use, 0 while it is marked down (and probed).",
            labels=["gateway"],
        )
        for gateway in gateways:
            gateway_up.add_metric([str(gateway["uri"])], 1 if "A" in gateway["flags"] else 0)
        yield gateway_up
        yield _gauge(
            "chimeproxy_edge_calls_active", "Calls in progress.", dialogs.get("active_dialogs", 0)
        )
        yield from self._own()

    def _own(self) -> Iterable[Metric]:
        yield _counter(
            "chimeproxy_edge_kamailio_restarts",
            "Times the supervisor restarted Kamailio.",
            self.state.restarts(),
        )
        yield _counter(
            "chimeproxy_edge_calls_ended",
            "Calls ended by the edge because their session closed or they ran too long.",
            self.state.calls_ended(),
        )
        yield from self._media()
        yield _counter(
            "chimeproxy_edge_reports_delivered",
            "End-of-call reports the routing service acknowledged.",
            self.state.reports_delivered(),
        )
        pending = GaugeMetricFamily(
            "chimeproxy_edge_reports_pending",
            "End-of-call reports waiting for the routing service.",
        )
        try:
            pending.add_metric([], self.state.reports_pending())
        except Exception:  # an unreadable queue must not break the scrape
            pending.add_metric([], float("nan"))
        yield pending

    def _media(self) -> Iterable[Metric]:
        state = self.state
        if state.media_url is None:
            return
        samples = state.media_samples()
        yield _gauge(
            "chimeproxy_edge_media_up", "1 when rtpengine answers.", 0 if samples is None else 1
        )
        yield _counter(
            "chimeproxy_edge_media_restarts",
            "Times the supervisor restarted rtpengine.",
            state.media_restarts(),
        )
        if samples is not None:
            yield _gauge(
                "chimeproxy_edge_media_sessions",
                "Calls whose media rtpengine relays now.",
                samples["sessions"],
            )
            yield _counter(
                "chimeproxy_edge_media_packets",
                "Media packets rtpengine relayed.",
                samples["packets"],
            )
            yield _counter(
                "chimeproxy_edge_media_errors",
                "Media packets rtpengine could not relay.",
                samples["errors"],
            )
        if state.media_filtered is not None:
            filtered = CounterMetricFamily(
                "chimeproxy_edge_media_filtered_packets",
                "Packets the media filter stopped (RTCP or RTP as a sender crafted it).",
            )
            try:
                filtered.add_metric([], state.media_filtered())
            except Exception:  # nft unreadable: the scrape goes on
                filtered.add_metric([], float("nan"))
            yield filtered


class Monitor:
    def __init__(self, address: HostPort, state: EdgeState) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_EdgeCollector(state))
        handler = _handler(state, registry)
        assert address.port is not None
        self.server = ThreadingHTTPServer((address.host.strip("[]"), address.port), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _counter(name: str, documentation: str, value: float) -> Metric:
    """A counter with one sample and no labels."""
    family = CounterMetricFamily(name, documentation)
    family.add_metric([], value)
    return family


def _gauge(name: str, documentation: str, value: float) -> Metric:
    """A gauge with one sample and no labels."""
    family = GaugeMetricFamily(name, documentation)
    family.add_metric([], value)
    return family


def _handler(state: EdgeState, registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._answer(200, generate_latest(registry), CONTENT_TYPE)
            elif self.path == "/health":
                status, document = _health(state)
                self._answer(status, json.dumps(document).encode(), "application/json")
            else:
                self._answer(404, b"", "text/plain")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # scrapes are not worth a log line each

    return Handler


def _health(state: EdgeState) -> tuple[int, dict[str, Any]]:
    try:
        state.rpc.call("core.uptime")
    except RpcError as exc:
        return 503, {"status": "kamailio not answering", "problem": str(exc)}
    if state.media_url is not None and state.media_samples() is None:
        return 503, {"status": "media relay not answering"}
    return 200, {"status": "ok"}
