"""`chimeproxy sip-edge`: render the configuration, check it with `kamailio -c`, install the
media filter, then run rtpengine (unless `--rtpengine` names one) and Kamailio in the
foreground as supervised children until SIGTERM or SIGINT, their log lines forwarded as this
command's structured logs. Meanwhile it delivers end-of-call reports, ends calls whose session
closed, and serves the edge's health and metrics."""

from __future__ import annotations

import contextlib
import logging
import random
import shutil
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path

from chimeproxy.dataplane.edge import config, media
from chimeproxy.dataplane.edge.enforcer import SessionEnforcer
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
        rtpengine = None if settings.rtpengine else media.find_rtpengine(settings.rtpengine_binary)
        advertise = media.advertised_address(settings)
    except (config.ConfigError, KamailioError, media.MediaError) as exc:
        return fail(str(exc))

    own_dir = settings.runtime_dir is None
    directory = Path(settings.runtime_dir or tempfile.mkdtemp(prefix="chimeproxy-sip-edge-"))
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        ng_port, http_port, rpc_port, cli_port = free_control_ports(4)
        try:
            runtime = config.Runtime(
                directory=directory,
                rpc_port=rpc_port,
                mask_key=config.mask_key(settings, directory),
                trunk_networks=config.trunk_networks(settings),
                rtpengine=str(settings.rtpengine or f"127.0.0.1:{ng_port}"),
                media_advertise=advertise,
            )
            config.write(settings, runtime)
            validate(kamailio, runtime.config)
        except (config.ConfigError, KamailioError) as exc:
            return fail(str(exc))
        relay = None
        if rtpengine is not None:
            relay = media.rtpengine_command(
                rtpengine,
                settings,
                ng_port=ng_port,
                http_port=http_port,
                cli_port=cli_port,
                directory=directory,
            )
        media_filter = None
        if settings.media_filter and settings.rtpengine is None:
            media_filter = media.MediaFilter(media.media_address(settings), settings.media_ports)
            try:
                media_filter.install()
            except media.MediaError as exc:
                return fail(str(exc))
        try:
            return _run(settings, runtime, kamailio, relay, ng_port, http_port, media_filter)
        finally:
            if media_filter is not None:
                media_filter.remove()
    finally:
        if own_dir:
            shutil.rmtree(directory, ignore_errors=True)


def _run(
    settings: EdgeSettings,
    runtime: config.Runtime,
    kamailio: str,
    relay: list[str] | None,
    ng_port: int,
    http_port: int,
    media_filter: media.MediaFilter | None,
) -> int:
    pid_file = runtime.directory / "kamailio.pid"
    reports = ReportDelivery(runtime.reports_db, settings.service_url, settings.route_secret)
    supervisor = Supervisor(
        kamailio_command(kamailio, runtime.config, runtime.directory),
        # A pid file left by a killed Kamailio would stop the next one from starting.
        before_start=lambda: pid_file.unlink(missing_ok=True),
        # A report Kamailio could not queue is in its log line: delivered from there.
        on_line=reports.take_unqueued,
    )
    relay_supervisor = None
    if relay is not None:
        relay_pid = runtime.directory / "rtpengine.pid"
        relay_supervisor = Supervisor(
            relay, name="rtpengine", before_start=lambda: relay_pid.unlink(missing_ok=True)
        )
    rpc = KamailioRpc(runtime.rpc_url)
    enforcer = SessionEnforcer(rpc, settings.service_url, settings.route_secret)
    state = EdgeState(rpc)
    state.restarts = lambda: supervisor.restarts
    state.reports_pending = reports.pending
    state.reports_delivered = lambda: reports.delivered
    state.calls_ended = lambda: enforcer.ended
    if relay_supervisor is not None:
        state.media_url = f"http://127.0.0.1:{http_port}/metrics"
        state.media_restarts = lambda: relay_supervisor.restarts
    if media_filter is not None:
        state.media_filtered = media_filter.dropped
    monitor = None
    if settings.metrics_listen is not None:
        try:
            monitor = Monitor(settings.metrics_listen, state)
        except OSError as exc:
            return fail(f"--metrics-listen {settings.metrics_listen}: {exc.strerror}")

    def stop(signum: int, frame: object) -> None:
        supervisor.request_stop()
        if relay_supervisor is not None:
            relay_supervisor.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
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
    threads = [
        threading.Thread(target=reports.run, name="end-reports", daemon=True),
        threading.Thread(target=enforcer.run, name="session-enforcer", daemon=True),
    ]
    if relay_supervisor is not None:
        threads.append(threading.Thread(target=relay_supervisor.run, name="rtpengine"))
    for thread in threads:
        thread.start()
    if relay_supervisor is not None and not media.wait_ready(ng_port):
        log.error("rtpengine did not answer; starting Kamailio all the same")
    if monitor is not None:
        monitor.start()
    try:
        return supervisor.run()
    finally:
        reports.stop()
        enforcer.stop()
        if relay_supervisor is not None:
            relay_supervisor.request_stop()
        if monitor is not None:
            monitor.stop()
        for thread in threads:
            thread.join(timeout=15)
        log.info("sip edge stopped")


# Control ports (Kamailio's RPC, rtpengine's ng, CLI and metrics) are picked below the usual
# ephemeral range (32768-60999), so an outgoing connection cannot take one between the pick
# and the daemon's bind (and a restart binds the same port again).
CONTROL_PORTS = range(10000, 20000)


def free_control_ports(count: int) -> list[int]:
    """`count` distinct loopback ports, each free for both UDP and TCP now, for the control
    listeners. Picked together: nothing binds them until the daemons start, so separate picks
    could answer one port twice, and two daemons would then fight over it (Kamailio's RPC and
    rtpengine's HTTP port did, once in a few hundred edges)."""
    chosen: list[int] = []
    for _ in range(200 * count):
        port = random.choice(CONTROL_PORTS)
        if port not in chosen and _free_now(port):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise OSError("no free control port on 127.0.0.1 between 10000 and 19999")


def _free_now(port: int) -> bool:
    try:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with contextlib.closing(socket.socket(socket.AF_INET, kind)) as probe:
                probe.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True
