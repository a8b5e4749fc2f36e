"""The files Kamailio runs from, rendered into the edge's runtime directory: the configuration
(from the shipped template kamailio.cfg.in), the gateway list (dispatcher), the TLS profiles,
and the SQLite databases of calls in progress and of undelivered call reports."""

from __future__ import annotations

import csv
import ipaddress
import os
import re
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from chimeproxy.dataplane.edge.settings import (
    CFG_SAFE,
    KAMAILIO_LEVELS,
    EdgeSettings,
    Gateway,
    HostPort,
    Listen,
    credential,
    service_headers,
)

TEMPLATE = Path(__file__).with_name("kamailio.cfg.in")
# Kamailio's own SQLite schemas (Debian package kamailio-sqlite-modules).
KAMAILIO_SCHEMAS = Path("/usr/share/kamailio/db_sqlite")

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

# topoh writes this address into masked URIs; it is never routed to, and must not be an
# address a client could use, hence a loopback address nobody listens on.
MASK_IP = "127.0.0.8"
# Without a trunk, only these sources may send calls (and the edge listens on loopback only).
LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")
# How much sooner than the edge's HTTP timeout the server gives up on a routing request.
DEADLINE_MARGIN_MS = 250
MASK_KEY_FILE = "mask-key"
_PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")

END_REPORTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS end_reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    interaction_id TEXT NOT NULL,
    body TEXT NOT NULL,
    created INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt INTEGER NOT NULL DEFAULT 0
);
"""


class ConfigError(Exception):
    """A setting that cannot be turned into a working configuration; says which."""


@dataclass(frozen=True, slots=True)
class Runtime:
    """What the configuration needs beyond the settings: where its files live and the
    values chosen when the edge starts."""

    directory: Path
    rpc_port: int
    mask_key: str
    trunk_networks: tuple[str, ...]
    rtpengine: str = "127.0.0.1:2223"  # rtpengine's ng control address
    media_advertise: str = "127.0.0.1"  # the media address both sides see in SDP

    @property
    def config(self) -> Path:
        return self.directory / "kamailio.cfg"

    @property
    def dispatcher_list(self) -> Path:
        return self.directory / "gateways.list"

    @property
    def tls_config(self) -> Path:
        return self.directory / "tls.cfg"

    @property
    def dialogs_db(self) -> Path:
        return self.directory / "dialogs.db"

    @property
    def reports_db(self) -> Path:
        return self.directory / "reports.db"

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.rpc_port}/RPC"


def mask_key(settings: EdgeSettings, directory: Path) -> str:
    """The topology-hiding key: the configured one, else one kept in the runtime directory, so
    that calls in progress survive a restart (masked Call-IDs and routes must still decode)."""
    if settings.mask_key:
        return settings.mask_key
    path = directory / MASK_KEY_FILE
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_urlsafe(24)
    _write_private(path, key + "\n")
    return key


def trunk_networks(settings: EdgeSettings) -> tuple[str, ...]:
    """The trunk's address blocks (host names resolved now), or loopback without a trunk."""
    if not settings.trunk:
        return LOOPBACK_NETWORKS
    networks: list[str] = []
    for trunk in settings.trunk:
        try:
            networks += [str(network) for network in trunk.networks()]
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return tuple(dict.fromkeys(networks))


def check(settings: EdgeSettings) -> None:
    """Refuse settings that cannot work, with the flag to change."""
    if not settings.gateway:
        raise ConfigError("--gateway (or CHIMEPROXY_SIP_GATEWAY) is required")
    if not settings.trunk:
        public = [str(listen) for listen in settings.listen if not _is_loopback(listen.address)]
        if public:
            raise ConfigError(
                f"refusing --listen {', '.join(public)} without --trunk: anyone could make "
                "calls through the edge. Name the carrier's addresses with --trunk CIDR_OR_HOST "
                "(or listen on loopback only)"
            )
    tls_in = any(listen.proto == "tls" for listen in settings.listen)
    if tls_in and not (settings.tls_cert and settings.tls_key):
        raise ConfigError("a tls: listener needs --tls-cert and --tls-key")
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    for path in (settings.tls_cert, settings.tls_key, settings.tls_ca):
        if path and not os.access(path, os.R_OK):
            raise ConfigError(f"cannot read {path}")


def listeners(settings: EdgeSettings) -> list[Listen]:
    """The SIP listeners: the configured ones, plus one on the first address for each transport
    a gateway uses that no listener has (Kamailio sends only from a socket of the destination's
    transport). An added TLS listener takes the first port plus one."""
    found = list(settings.listen)
    first = found[0]
    for transport in dict.fromkeys(gateway.transport for gateway in settings.gateway):
        if any(listen.proto == transport for listen in found):
            continue
        port = first.port + 1 if transport == "tls" else first.port
        found.append(Listen(transport, HostPort(first.address.host, port)))
    return found


def socket_for(settings: EdgeSettings, gateway: Gateway) -> Listen:
    """The listener a gateway's calls leave from: the first of its transport."""
    return next(listen for listen in listeners(settings) if listen.proto == gateway.transport)


def gateway_credentials(settings: EdgeSettings) -> dict[str, tuple[str, str]]:
    """(user name, password) by gateway host and HOST:PORT, from --gateway-credentials."""
    path = settings.gateway_credentials
    if not path:
        return {}
    found: dict[str, tuple[str, str]] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            for number, row in enumerate(csv.reader(handle), start=1):
                if not row or not "".join(row).strip() or row[0].strip().startswith("#"):
                    continue
                if number == 1 and row[0].strip().lower() == "gateway":
                    continue  # a header
                if len(row) != 3:
                    raise ConfigError(f"{path}:{number}: expected gateway,username,password")
                gateway, username, password = (value.strip() for value in row)
                try:
                    found[gateway] = (credential(username), credential(password))
                except ValueError as exc:
                    raise ConfigError(f"{path}:{number}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    return found


def dispatcher_list(settings: EdgeSettings) -> str:
    """The gateways, the first with the highest priority, each with the socket its calls leave
    from and the credentials its challenges are answered with: set 1, which calls use and
    failures mark down, and set 2, the same never marked (kamailio.cfg.in says why)."""
    by_gateway = gateway_credentials(settings)
    lines = ["# setid destination flags priority attributes"]
    count = len(settings.gateway)
    for index, gateway in enumerate(settings.gateway):
        attributes = [f"name=gw{index + 1}", f"socket={socket_for(settings, gateway)}"]
        username, password = settings.gateway_username, settings.gateway_password
        specific = by_gateway.get(f"{gateway.host}:{gateway.port}") or by_gateway.get(gateway.host)
        if specific:
            username, password = specific
        if gateway.username:
            username = gateway.username
        if username and password:
            attributes += [f"user={username}", f"password={password}"]
        for group in (1, 2):
            lines.append(f"{group} {gateway.uri} 0 {count - index} {';'.join(attributes)}")
    return "\n".join(lines) + "\n"


def tls_config(settings: EdgeSettings) -> str:
    """The tls module's profiles: the edge's certificate for TLS listeners and, towards
    gateways, verification against --tls-ca when given."""
    server = ["[server:default]", "method = TLSv1.2+"]
    if settings.tls_cert and settings.tls_key:
        server += [f"certificate = {settings.tls_cert}", f"private_key = {settings.tls_key}"]
    server += ["verify_certificate = no", "require_certificate = no"]
    client = ["[client:default]", "method = TLSv1.2+"]
    if settings.tls_cert and settings.tls_key:
        client += [f"certificate = {settings.tls_cert}", f"private_key = {settings.tls_key}"]
    if settings.tls_ca:
        client += [f"ca_list = {settings.tls_ca}", "verify_certificate = yes"]
    else:
        client += ["verify_certificate = no"]
    client += ["require_certificate = no"]
    return "\n".join([*server, "", *client]) + "\n"


def uses_tls(settings: EdgeSettings) -> bool:
    return any(listen.proto == "tls" for listen in listeners(settings))


def render(settings: EdgeSettings, runtime: Runtime, template: str | None = None) -> str:
    """The Kamailio configuration for `settings` in `runtime`."""
    text = TEMPLATE.read_text() if template is None else template
    # The server rolls back work still running when the edge stops waiting (a little before
    # its own timeout, for the answer's way back), so a failed call is never recorded late.
    deadline_ms = settings.http_timeout * 1000 - DEADLINE_MARGIN_MS
    # http_client_query takes one header string; curl sends the CRLF-joined lines as is.
    headers = "\\r\\n".join(
        f"{name}: {value}"
        for name, value in {
            **service_headers(settings.route_secret),
            "X-Chimeproxy-Deadline-Ms": str(deadline_ms),
        }.items()
    )
    tls = uses_tls(settings)
    for name, path in (
        ("runtime directory", runtime.directory),
        ("TLS certificate", settings.tls_cert),
        ("TLS key", settings.tls_key),
    ):
        if path and not CFG_SAFE.fullmatch(str(path)):
            raise ConfigError(f"the {name} path {path} has characters it cannot have")
    values = {
        "LISTENS": "\n".join(
            _listen_line(listen, settings.advertise) for listen in listeners(settings)
        ),
        "TLS_ENABLE": "enable_tls=yes" if tls else "enable_tls=no",
        "TLS_MODULE": (
            f'loadmodule "tls.so"\nmodparam("tls", "config", "{runtime.tls_config}")'
            if tls
            else "# no TLS listener or gateway: the tls module is not loaded"
        ),
        "RPC_PORT": str(runtime.rpc_port),
        "RTPENGINE": runtime.rtpengine,
        "MEDIA_ADVERTISE": runtime.media_advertise,
        "TRUNK_NETWORKS": ",".join(runtime.trunk_networks),
        "UNTRUSTED_ANSWER": (
            "drop;  # --drop-untrusted: nothing is answered"
            if settings.drop_untrusted
            else 'sl_send_reply("403", "Forbidden");'
        ),
        "FLOOD_RATE": str(settings.flood_rate),
        "FLOOD_BLOCK": str(settings.flood_block),
        "DISPATCHER_LIST": str(runtime.dispatcher_list),
        "PING_HOST": (
            settings.advertise.host if settings.advertise else listeners(settings)[0].address.host
        ),
        "DIALOGS_DB": str(runtime.dialogs_db),
        "REPORTS_DB": str(runtime.reports_db),
        "ROUTE_URL": f"{settings.service_url}/_chimeproxy/route",
        "ROUTE_DEADLINE_MS": str(settings.http_timeout * 1000),
        "HTTP_HEADERS": headers,
        "HTTP_TIMEOUT": str(settings.http_timeout),
        "HTTP_WAIT": str(settings.http_timeout + 2),
        "MASK_KEY": runtime.mask_key,
        "MASK_IP": MASK_IP,
        "CHILDREN": str(settings.children),
        "ROUTING_WORKERS": str(settings.routing_workers),
        "LOG_LEVEL": str(KAMAILIO_LEVELS[settings.log_level]),
        "KEEP_HEADERS": "|".join(KEEP_HEADERS),
    }

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise ConfigError(f"the Kamailio template has an unknown placeholder {{{{{name}}}}}")
        return values[name]

    return _PLACEHOLDER.sub(fill, text)


def write(settings: EdgeSettings, runtime: Runtime) -> None:
    """Every file Kamailio needs, in the runtime directory; those holding secrets (the
    configuration, the gateway list with credentials) readable by the owner only."""
    _write_private(runtime.config, render(settings, runtime))
    _write_private(runtime.dispatcher_list, dispatcher_list(settings))
    if uses_tls(settings):
        _write_private(runtime.tls_config, tls_config(settings))
    prepare_databases(runtime)


def prepare_databases(runtime: Runtime) -> None:
    """The dialogs database (Kamailio's own schema) and the reports queue, created once and
    kept: they hold calls in progress and reports not delivered yet."""
    if not runtime.dialogs_db.exists():
        schemas = [KAMAILIO_SCHEMAS / "standard-create.sql", KAMAILIO_SCHEMAS / "dialog-create.sql"]
        missing = [str(path) for path in schemas if not path.exists()]
        if missing:
            raise ConfigError(
                f"{', '.join(missing)} not found: install the Debian package "
                "kamailio-sqlite-modules"
            )
        with sqlite3.connect(runtime.dialogs_db) as connection:
            for path in schemas:
                connection.executescript(path.read_text())
    with sqlite3.connect(runtime.reports_db) as connection:
        # WAL once on the file (it persists): Kamailio's many processes must not each set it.
        connection.execute("PRAGMA journal_mode=WAL")
        connection.executescript(END_REPORTS_SCHEMA)
    for path in (runtime.dialogs_db, runtime.reports_db):
        path.chmod(0o600)


def _listen_line(listen: Listen, advertise: HostPort | None) -> str:
    line = f"listen={listen}"
    if advertise is not None:
        line += f" advertise {advertise.host}:{advertise.port or listen.port}"
    return line


def _is_loopback(address: HostPort) -> bool:
    name = address.host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _write_private(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(text)
