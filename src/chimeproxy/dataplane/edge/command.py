"""`chimeproxy sip-edge`: render the configuration, check it with `kamailio -c`, then run
Kamailio in the foreground as a supervised child until SIGTERM or SIGINT, its log lines
forwarded as this command's structured logs."""

from __future__ import annotations

import logging
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from chimeproxy.dataplane.edge.config import write_config
from chimeproxy.dataplane.edge.kamailio import (
    KamailioError,
    find_kamailio,
    kamailio_command,
    validate,
)
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
    if settings.gateway is None:
        return fail("--gateway HOST:PORT (or CHIMEPROXY_SIP_GATEWAY) is required")
    try:
        kamailio = find_kamailio(settings.kamailio)
    except KamailioError as exc:
        return fail(str(exc))

    own_dir = settings.runtime_dir is None
    runtime_dir = Path(settings.runtime_dir or tempfile.mkdtemp(prefix="chimeproxy-sip-edge-"))
    runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        config = write_config(settings, runtime_dir)
        try:
            validate(kamailio, config)
        except KamailioError as exc:
            return fail(str(exc))
        supervisor = Supervisor(kamailio_command(kamailio, config, runtime_dir))
        signal.signal(signal.SIGTERM, supervisor.request_stop)
        signal.signal(signal.SIGINT, supervisor.request_stop)
        log.info(
            "sip edge starting",
            extra={
                "listen": str(settings.listen),
                "gateway": str(settings.gateway),
                "service_url": settings.service_url,
                "runtime_dir": str(runtime_dir),
            },
        )
        return supervisor.run()
    finally:
        if own_dir:
            shutil.rmtree(runtime_dir, ignore_errors=True)
