"""`chimeproxy sip-edge`: render the configuration, check it with `kamailio -c`, then run
Kamailio in the foreground as a supervised child until SIGTERM or SIGINT, its log lines
forwarded as this command's structured logs; meanwhile deliver end-of-call reports and serve
the edge's health and metrics."""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path

from chimeproxy.dataplane.edge import config
from chimeproxy.dataplane.edge.kamailio import (
    KamailioError,
    find_kamailio,
    kamailio_command,
    validate,
)
from chimeproxy.dataplane.edge.monitor import EdgeState, Monitor
from chimeproxy.dataplane.edge.reports import ReportDelivery
from chimeproxy.dataplane.edge.rpc import KamailioRpc
from chimeproxy.dataplane.edge.settings import EdgeSettings
from chimeproxy.dataplane.edge.supervisor import Supervisor

log = logging.getLogger("chimeproxy.sip_edge")


def fail(message: str) -> int:
    print(f"chimeproxy sip-edge: {message}", file=sys.stderr)
    return 2


def main(settings: EdgeSettings) -> int:
    """Render, validate, then supervise Kamailio until SIGTERM or SIGINT."""
    from chimeproxy import logs

    logs.configure(settings.log_level)
    try:
        config.check(settings)
        kamailio = find_kamailio(settings.kamailio)
    except (config.ConfigError, KamailioError) as exc:
        return fail(str(exc))

    own_dir = settings.runtime_dir is None
    directory = Path(settings.runtime_dir or tempfile.mkdtemp(prefix="chimeproxy-sip-edge-"))
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        try:
            runtime = config.Runtime(
                directory=directory,
                rpc_port=_free_port(),
                mask_key=config.mask_key(settings, directory),
                trunk_networks=config.trunk_networks(settings),
            )
            config.write(settings, runtime)
            validate(kamailio, runtime.config)
        except (config.ConfigError, KamailioError) as exc:
            return fail(str(exc))
        return _run(settings, runtime, kamailio)
    finally:
        if own_dir:
            shutil.rmtree(directory, ignore_errors=True)


def _run(settings: EdgeSettings, runtime: config.Runtime, kamailio: str) -> int:
    pid_file = runtime.directory / "kamailio.pid"
    supervisor = Supervisor(
        kamailio_command(kamailio, runtime.config, runtime.directory),
        # A pid file left by a killed Kamailio would stop the next one from starting.
        before_start=lambda: pid_file.unlink(missing_ok=True),
    )
    reports = ReportDelivery(runtime.reports_db, settings.service_url, settings.route_secret)
    state = EdgeState(KamailioRpc(runtime.rpc_url))
    state.restarts = lambda: supervisor.restarts
    state.reports_pending = reports.pending
    state.reports_delivered = lambda: reports.delivered
    monitor = None
    if settings.metrics_listen is not None:
        try:
            monitor = Monitor(settings.metrics_listen, state)
        except OSError as exc:
            return fail(f"--metrics-listen {settings.metrics_listen}: {exc.strerror}")
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    signal.signal(signal.SIGINT, supervisor.request_stop)
    if not settings.trunk:
        log.warning(
            "no --trunk: the edge listens on loopback only, and only loopback sources may make "
            "calls through it"
        )
    log.info(
        "sip edge starting",
        extra={
            "listen": [str(listen) for listen in config.listeners(settings)],
            "trunk": list(runtime.trunk_networks),
            "gateways": [str(gateway) for gateway in settings.gateway],
            "advertise": str(settings.advertise) if settings.advertise else None,
            "service_url": settings.service_url,
            "runtime_dir": str(runtime.directory),
            "metrics": str(settings.metrics_listen) if settings.metrics_listen else None,
        },
    )
    delivery = threading.Thread(target=reports.run, name="end-reports", daemon=True)
    delivery.start()
    if monitor is not None:
        monitor.start()
    try:
        return supervisor.run()
    finally:
        reports.stop()
        if monitor is not None:
            monitor.stop()
        delivery.join(timeout=5)
        log.info("sip edge stopped")


def _free_port() -> int:
    """A TCP port on loopback nobody uses now, for Kamailio's RPC listener."""
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
