"""The SIP edge: Kamailio routing calls and messages to proxy numbers through chimeproxy.

`chimeproxy sip-edge` renders the shipped Kamailio configuration template
(`kamailio/kamailio.cfg.in`) with the listen address, the operator's SIP gateway, the routing
service URL and its secret, checks it with `kamailio -c`, and runs Kamailio in the foreground as
a supervised child: restarted with back-off when it dies, stopped when the command gets SIGTERM
or SIGINT, its log lines forwarded as this command's structured logs.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

log = logging.getLogger("chimeproxy.sip_edge")
kamailio_log = logging.getLogger("chimeproxy.sip_edge.kamailio")

TEMPLATE = Path(__file__).with_name("kamailio") / "kamailio.cfg.in"

# Headers allowed through besides those keep_hf always keeps (Via, From, To, Call-ID, CSeq,
# Contact, Route, Record-Route, Max-Forwards, Content-Type, Content-Length). Everything else
# may carry a number (P-Asserted-Identity, Remote-Party-ID, Diversion, X-*, ...) and is dropped.
# One-letter names are the compact forms of Supported, Session-Expires, Content-Encoding, Event
# and Allow-Events. "TH" is topoh's own marker (it tells topoh which way a message goes, and
# topoh removes it before sending): dropping it would silently turn topology hiding off.
KEEP_HEADERS = (
    "TH", "Allow", "Supported", "Require", "Proxy-Require", "Unsupported", "Session-Expires",
    "Min-SE", "Accept", "Accept-Encoding", "Accept-Language", "Content-Disposition",
    "Content-Encoding", "Content-Language", "MIME-Version", "RSeq", "RAck", "Event",
    "Allow-Events", "Expires", "Min-Expires", "Reason", "Retry-After", "Timestamp",
    "k", "x", "e", "o", "u",
)  # fmt: skip

# Kamailio's log levels by the names the rest of chimeproxy uses.
KAMAILIO_LEVELS = {"debug": 3, "info": 2, "warning": 0, "error": -1}

SHM_MEGABYTES = 64  # shared memory: transactions and dialogs of a modest edge
PKG_MEGABYTES = 8  # per-process memory: parsing, http_client bodies

# What may appear inside a double-quoted string of the rendered configuration: no quote,
# backslash, `$` (Kamailio would read a pseudo-variable) or whitespace.
_CFG_SAFE = re.compile(r"[A-Za-z0-9._~+/=:@%!*,;&?#\[\]-]+")
_SECRET_SAFE = re.compile(r"[A-Za-z0-9._~+/=-]{1,256}")
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?")
_PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")


class EdgeError(Exception):
    """A setting or environment problem that stops the SIP edge from starting."""


@dataclass(frozen=True, slots=True)
class HostPort:
    """A host (IPv4, bracketed IPv6 or DNS name) and a port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_host_port(value: str, what: str) -> HostPort:
    """`HOST:PORT`, checked strictly: it goes into SIP URIs and the Kamailio configuration."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise EdgeError(f"{what} must be HOST:PORT, got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise EdgeError(f"{what}: {host!r} is not an IPv6 address") from None
    elif not _HOSTNAME.fullmatch(host):
        raise EdgeError(f"{what}: {host!r} is not a host name or IPv4 address")
    return HostPort(host, int(port_text))


@dataclass(frozen=True, slots=True)
class Listen:
    """Where Kamailio takes SIP: `udp:HOST:PORT` or `tcp:HOST:PORT`."""

    proto: str
    address: HostPort

    @classmethod
    def parse(cls, value: str) -> Listen:
        proto, sep, rest = value.partition(":")
        if not sep or proto not in ("udp", "tcp"):
            raise EdgeError(f"--listen must be udp:HOST:PORT or tcp:HOST:PORT, got {value!r}")
        return cls(proto, parse_host_port(rest, "--listen"))

    def __str__(self) -> str:
        return f"{self.proto}:{self.address}"


def parse_service_url(value: str) -> str:
    """The routing service's base URL, without a trailing slash."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise EdgeError(f"--service-url must be an http(s) URL, got {value!r}")
    if parts.query or parts.fragment or not _CFG_SAFE.fullmatch(value):
        raise EdgeError(f"--service-url {value!r} has characters or parts it cannot have")
    return value.rstrip("/")


@dataclass(frozen=True, slots=True)
class EdgeSettings:
    """Everything the configuration template needs."""

    listen: Listen
    gateway: HostPort
    service_url: str
    route_secret: str | None = None
    mask_key: str = ""
    children: int = 4
    http_timeout: int = 2
    log_level: str = "info"

    def __post_init__(self) -> None:
        if self.route_secret is not None and not _SECRET_SAFE.fullmatch(self.route_secret):
            raise EdgeError(
                "the route secret may only use letters, digits and ._~+/=- (at most 256)"
            )
        if self.mask_key and not _SECRET_SAFE.fullmatch(self.mask_key):
            raise EdgeError("the mask key may only use letters, digits and ._~+/=- (at most 256)")
        if not 1 <= self.children <= 64:
            raise EdgeError("--children must be between 1 and 64")
        if not 1 <= self.http_timeout <= 30:
            raise EdgeError("--http-timeout must be between 1 and 30 seconds")
        if self.log_level not in KAMAILIO_LEVELS:
            raise EdgeError(f"--log-level must be one of {', '.join(KAMAILIO_LEVELS)}")


def render(settings: EdgeSettings, template: str | None = None) -> str:
    """The Kamailio configuration for `settings`."""
    text = TEMPLATE.read_text() if template is None else template
    headers = "Content-Type: application/json"
    if settings.route_secret:
        # http_client_query takes one header string; curl sends the CRLF-joined pair as is.
        headers += f"\\r\\nX-Chimeproxy-Route-Secret: {settings.route_secret}"
    values = {
        "LISTEN": str(settings.listen),
        "TRANSPORT_SETTINGS": "disable_sctp=yes\n"
        + ("disable_tcp=yes" if settings.listen.proto == "udp" else "disable_tcp=no"),
        "GATEWAY": str(settings.gateway),
        "GATEWAY_HOST": settings.gateway.host,
        "ROUTE_URL": f"{settings.service_url}/_chimeproxy/route",
        "END_URL": f"{settings.service_url}/_chimeproxy/interactions/",
        "HTTP_HEADERS": headers,
        "HTTP_TIMEOUT": str(settings.http_timeout),
        # Without a configured key, one per run: calls survive a Kamailio restart (same key)
        # but not a restart of the command.
        "MASK_KEY": settings.mask_key or secrets.token_urlsafe(24),
        # topoh writes this address into masked URIs; it is never routed to, and must not be
        # an address a client could use, hence a loopback address nobody listens on.
        "MASK_IP": "127.0.0.8",
        "CHILDREN": str(settings.children),
        "LOG_LEVEL": str(KAMAILIO_LEVELS[settings.log_level]),
        "KEEP_HEADERS": "|".join(KEEP_HEADERS),
    }

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise EdgeError(f"the Kamailio template has an unknown placeholder {{{{{name}}}}}")
        return values[name]

    return _PLACEHOLDER.sub(fill, text)


def write_config(settings: EdgeSettings, directory: Path) -> Path:
    """Render into `directory/kamailio.cfg`, readable by the owner only (it holds secrets)."""
    path = directory / "kamailio.cfg"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(render(settings))
    return path


def find_kamailio(explicit: str | None) -> str:
    """The kamailio binary: the one given, else the one on PATH, else Debian's /usr/sbin."""
    candidate = explicit or shutil.which("kamailio") or "/usr/sbin/kamailio"
    if not (os.path.isfile(candidate) and os.access(candidate, os.X_OK)):
        raise EdgeError(
            f"kamailio not found ({candidate}); install the Debian packages kamailio, "
            "kamailio-utils-modules and kamailio-extra-modules, or pass --kamailio PATH"
        )
    return candidate


def validate(kamailio: str, config: Path) -> None:
    """`kamailio -c`: syntax, module loading and parameters, before anything listens."""
    check = subprocess.run(
        [kamailio, "-c", "-f", str(config), "-M", str(PKG_MEGABYTES)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check.returncode != 0:
        raise EdgeError(f"kamailio rejected {config}:\n{check.stdout}{check.stderr}")


def kamailio_command(kamailio: str, config: Path, runtime_dir: Path) -> list[str]:
    """Foreground Kamailio (`-DD`: no daemon, children still forked), logging to stderr."""
    return [
        kamailio, "-f", str(config), "-DD", "-E",
        # Everything Kamailio writes stays in the runtime directory: no /var/run needed.
        "-P", str(runtime_dir / "kamailio.pid"), "-Y", str(runtime_dir), "-w", str(runtime_dir),
        "-m", str(SHM_MEGABYTES), "-M", str(PKG_MEGABYTES),
    ]  # fmt: skip


_LEVEL_WORDS = {
    "CRITICAL": logging.CRITICAL,
    "ALERT": logging.CRITICAL,
    "BUG": logging.ERROR,
    "ERROR": logging.ERROR,
    "WARNING": logging.WARNING,
    "NOTICE": logging.INFO,
    "INFO": logging.INFO,
    "DEBUG": logging.DEBUG,
}
_KAMAILIO_LINE = re.compile(r"^\s*\d+\(\d+\) ([A-Z]+):")


def _forward(stream: Callable[[], bytes], pid: int) -> None:
    """Copy Kamailio's output lines into our logs, at the level each line says."""
    for raw in iter(stream, b""):
        line = raw.decode(errors="replace").rstrip()
        if not line:
            continue
        match = _KAMAILIO_LINE.match(line)
        level = _LEVEL_WORDS.get(match.group(1), logging.INFO) if match else logging.INFO
        kamailio_log.log(level, line.strip(), extra={"kamailio_pid": pid})


class Supervisor:
    """Runs a command as a child process; restarts it when it dies; stops it on request."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        stable_after: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.command = list(command)
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.stable_after = stable_after
        self.stop_timeout = stop_timeout
        self.restarts = 0
        self._stopping = threading.Event()

    def request_stop(self, signum: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
        """Signal-handler safe: the run loop notices and stops the child."""
        self._stopping.set()

    def run(self) -> int:
        backoff = self.min_backoff
        while not self._stopping.is_set():
            started = time.monotonic()
            child = self._start()
            code = self._wait(child)
            self._reap_group(child)
            if self._stopping.is_set():
                break
            if time.monotonic() - started >= self.stable_after:
                backoff = self.min_backoff  # it had been running fine: a fresh failure
            log.error(
                "kamailio exited; restarting",
                extra={"exit_code": code, "pid": child.pid, "restart_in_seconds": backoff},
            )
            self.restarts += 1
            if self._stopping.wait(backoff):
                break
            backoff = min(backoff * 2, self.max_backoff)
        log.info("sip edge stopped")
        return 0

    def _start(self) -> subprocess.Popen[bytes]:
        # A session of its own: if Kamailio's main process is killed outright its workers
        # would keep the SIP port; the whole group is cleaned up before a restart.
        child = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert child.stdout is not None
        threading.Thread(
            target=_forward, args=(child.stdout.readline, child.pid), daemon=True
        ).start()
        log.info("kamailio started", extra={"pid": child.pid})
        return child

    def _wait(self, child: subprocess.Popen[bytes]) -> int:
        while True:
            try:
                return child.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                if self._stopping.is_set():
                    return self._terminate(child)

    def _terminate(self, child: subprocess.Popen[bytes]) -> int:
        # SIGTERM to the main process: Kamailio stops its workers and frees its sockets.
        child.send_signal(signal.SIGTERM)
        try:
            return child.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            log.warning("kamailio ignored SIGTERM; killing it", extra={"pid": child.pid})
            self._reap_group(child)
            return child.wait()

    @staticmethod
    def _reap_group(child: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
            os.killpg(child.pid, signal.SIGKILL)
        # Wait for the workers to be gone, so that the SIP port is free for the next start.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.killpg(child.pid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.02)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `chimeproxy sip-edge` flags; each has a CHIMEPROXY_* environment twin."""
    env = os.environ.get
    parser.add_argument(
        "--listen",
        default=env("CHIMEPROXY_SIP_LISTEN", "udp:127.0.0.1:5060"),
        help="where Kamailio takes SIP: udp:HOST:PORT or tcp:HOST:PORT (env CHIMEPROXY_SIP_LISTEN)",
    )
    parser.add_argument(
        "--gateway",
        default=env("CHIMEPROXY_SIP_GATEWAY"),
        required=env("CHIMEPROXY_SIP_GATEWAY") is None,
        help="HOST:PORT of the operator's SIP trunk/gateway that reaches participants "
        "(env CHIMEPROXY_SIP_GATEWAY)",
    )
    parser.add_argument(
        "--service-url",
        default=env("CHIMEPROXY_SERVICE_URL", "http://127.0.0.1:8089"),
        help="the chimeproxy server answering /_chimeproxy/route (env CHIMEPROXY_SERVICE_URL)",
    )
    parser.add_argument(
        "--route-secret",
        default=env("CHIMEPROXY_ROUTE_SECRET"),
        help="sent as X-Chimeproxy-Route-Secret; prefer the environment variable, which "
        "process listings do not show (env CHIMEPROXY_ROUTE_SECRET)",
    )
    parser.add_argument(
        "--mask-key",
        default=env("CHIMEPROXY_SIP_MASK_KEY"),
        help="topology-hiding key; give every edge behind one trunk the same key "
        "(default: random per run) (env CHIMEPROXY_SIP_MASK_KEY)",
    )
    parser.add_argument("--kamailio", default=env("CHIMEPROXY_KAMAILIO"), help="kamailio binary")
    parser.add_argument(
        "--runtime-dir",
        default=env("CHIMEPROXY_SIP_RUNTIME_DIR"),
        help="where the rendered configuration and pid file go (default: a new temporary "
        "directory, removed at exit)",
    )
    parser.add_argument(
        "--children",
        type=int,
        default=int(env("CHIMEPROXY_SIP_CHILDREN", "4")),
        help="Kamailio worker processes; each blocks while it asks the routing service",
    )
    parser.add_argument(
        "--http-timeout",
        type=int,
        default=int(env("CHIMEPROXY_SIP_HTTP_TIMEOUT", "2")),
        help="seconds to wait for the routing service before answering 503",
    )
    parser.add_argument(
        "--log-level",
        default=env("CHIMEPROXY_LOG_LEVEL", "info"),
        help="debug, info, warning, error (env CHIMEPROXY_LOG_LEVEL)",
    )


def main(args: argparse.Namespace) -> int:
    """Render, validate, then supervise Kamailio until SIGTERM or SIGINT."""
    from chimeproxy import logs

    logs.configure(args.log_level if args.log_level in KAMAILIO_LEVELS else "info")
    try:
        settings = EdgeSettings(
            listen=Listen.parse(args.listen),
            gateway=parse_host_port(args.gateway, "--gateway"),
            service_url=parse_service_url(args.service_url),
            route_secret=args.route_secret or None,
            mask_key=args.mask_key or "",
            children=args.children,
            http_timeout=args.http_timeout,
            log_level=args.log_level,
        )
        kamailio = find_kamailio(args.kamailio)
    except EdgeError as exc:
        print(f"chimeproxy sip-edge: {exc}", file=sys.stderr)
        return 2

    own_dir = args.runtime_dir is None
    runtime_dir = Path(args.runtime_dir or tempfile.mkdtemp(prefix="chimeproxy-sip-edge-"))
    runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        config = write_config(settings, runtime_dir)
        try:
            validate(kamailio, config)
        except EdgeError as exc:
            print(f"chimeproxy sip-edge: {exc}", file=sys.stderr)
            return 2
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
