"""`chimeproxy sip-edge`'s settings, declared like the server's (chimeproxy/settings.py), and
the address types they are written in. Everything here is checked strictly: it ends up inside
SIP URIs and the rendered Kamailio configuration."""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from chimeproxy.settings import (
    LOG_LEVEL,
    OFF_SWITCH,
    REPEATED,
    ROUTE_SECRET,
    SWITCH,
    integer,
    option,
    optional,
)

# Kamailio's log levels by the names the rest of chimeproxy uses.
KAMAILIO_LEVELS = {"debug": 3, "info": 2, "warning": 0, "error": -1}
TRANSPORTS = ("udp", "tcp", "tls")
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}

# What may appear inside a double-quoted string of the rendered configuration: no quote,
# backslash, `$` (Kamailio would read a pseudo-variable) or whitespace.
CFG_SAFE = re.compile(r"[A-Za-z0-9._~+/=:@%!*,;&?#\[\]-]+")
_SECRET_SAFE = re.compile(r"[A-Za-z0-9._~+/=-]{1,256}")
# Digest user names and passwords go into dispatcher attributes (`;`-separated, `=` pairs).
_CREDENTIAL_SAFE = re.compile(r"[A-Za-z0-9._~+/!*@-]{1,128}")
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?")
_PATH_SAFE = re.compile(r"[A-Za-z0-9._~+/=:@%,-]+")


def host(value: str) -> str:
    """A host: IPv4, bracketed IPv6 or a DNS name."""
    if value.startswith("[") and value.endswith("]"):
        try:
            ipaddress.IPv6Address(value[1:-1])
        except ValueError:
            raise ValueError(f"{value!r} is not an IPv6 address") from None
        return value
    if not _HOSTNAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a host name or IPv4 address")
    return value


@dataclass(frozen=True, slots=True)
class HostPort:
    """A host (IPv4, bracketed IPv6 or DNS name) and a port (None: the transport's default)."""

    host: str
    port: int | None = None

    @classmethod
    def parse(cls, value: str, *, port_required: bool = True) -> HostPort:
        """`HOST:PORT` (or `HOST` when the port is optional); ValueError says what is wrong."""
        name, sep, port_text = value.rpartition(":")
        if not sep or name.endswith(":") or (name.startswith("[") and not name.endswith("]")):
            if port_required:
                raise ValueError(f"must be HOST:PORT, got {value!r}")
            return cls(host(value))
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"must be HOST:PORT with a port from 1 to 65535, got {value!r}")
        return cls(host(name), int(port_text))

    @classmethod
    def parse_optional_port(cls, value: str) -> HostPort:
        return cls.parse(value, port_required=False)

    def __str__(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Listen:
    """Where Kamailio takes SIP: `udp:HOST:PORT`, `tcp:HOST:PORT` or `tls:HOST:PORT`."""

    proto: str
    address: HostPort

    @classmethod
    def parse(cls, value: str) -> Listen:
        proto, sep, rest = value.partition(":")
        if not sep or proto not in TRANSPORTS:
            raise ValueError(
                f"must be udp:HOST:PORT, tcp:HOST:PORT or tls:HOST:PORT, got {value!r}"
            )
        return cls(proto, HostPort.parse(rest))

    @property
    def port(self) -> int:
        assert self.address.port is not None
        return self.address.port

    def __str__(self) -> str:
        return f"{self.proto}:{self.address}"


@dataclass(frozen=True, slots=True)
class Gateway:
    """A SIP gateway calls leave through: `sip:[USER@]HOST[:PORT][;transport=udp|tcp|tls]`, or
    the shorthand `HOST:PORT` (UDP). A user name in the URI is the digest user name the edge
    answers this gateway's challenges with."""

    host: str
    port: int
    transport: str = "udp"
    username: str | None = None

    @classmethod
    def parse(cls, value: str) -> Gateway:
        text = value.strip()
        if not text.lower().startswith(("sip:", "sips:")):
            address = HostPort.parse(text)
            assert address.port is not None
            return cls(address.host, address.port)
        scheme, _, rest = text.partition(":")
        uri, *parameters = rest.split(";")
        transport = "tls" if scheme.lower() == "sips" else "udp"
        for parameter in parameters:
            name, _, setting = parameter.partition("=")
            if name.lower() != "transport" or setting.lower() not in TRANSPORTS:
                raise ValueError(f"{value!r}: the only URI parameter is transport=udp, tcp or tls")
            transport = setting.lower()
        username = None
        if "@" in uri:
            username, _, uri = uri.rpartition("@")
            if not _CREDENTIAL_SAFE.fullmatch(username):
                raise ValueError(f"{value!r}: the user name has characters it cannot have")
        address = HostPort.parse(uri, port_required=False)
        return cls(address.host, address.port or DEFAULT_PORTS[transport], transport, username)

    @property
    def uri(self) -> str:
        """The gateway's address as Kamailio's dispatcher takes it (no user part)."""
        suffix = "" if self.transport == "udp" else f";transport={self.transport}"
        return f"sip:{self.host}:{self.port}{suffix}"

    def __str__(self) -> str:
        return self.uri


@dataclass(frozen=True, slots=True)
class Trunk:
    """The carrier's signalling addresses: a CIDR block, an address, or a host name (resolved
    when the edge starts)."""

    text: str

    @classmethod
    def parse(cls, value: str) -> Trunk:
        value = value.strip()
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            host(value)
        return cls(value)

    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """The address blocks, resolving a host name; ValueError when it does not resolve."""
        try:
            return [ipaddress.ip_network(self.text, strict=False)]
        except ValueError:
            pass
        try:
            found = socket.getaddrinfo(self.text, None, proto=socket.IPPROTO_UDP)
        except OSError as exc:
            raise ValueError(f"--trunk {self.text} does not resolve: {exc.strerror}") from None
        return sorted({ipaddress.ip_network(entry[4][0]) for entry in found}, key=lambda n: str(n))

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class PortRange:
    """`MIN-MAX` UDP ports, both included."""

    low: int
    high: int

    @classmethod
    def parse(cls, value: str) -> PortRange:
        low, sep, high = value.strip().partition("-")
        if not sep or not low.isdigit() or not high.isdigit():
            raise ValueError(f"must be MIN-MAX, got {value!r}")
        if not 1024 <= int(low) < int(high) <= 65535 or int(high) - int(low) < 3:
            raise ValueError(f"must be two ports from 1024 to 65535, MIN < MAX, got {value!r}")
        return cls(int(low), int(high))

    def __str__(self) -> str:
        return f"{self.low}-{self.high}"


def ipv4(value: str) -> str:
    """An IPv4 address (media addresses are written into SDP `c=IN IP4` lines)."""
    try:
        return str(ipaddress.IPv4Address(value.strip()))
    except ValueError:
        raise ValueError(f"must be an IPv4 address, got {value!r}") from None


def service_url(value: str) -> str:
    """The routing service's base URL, without a trailing slash."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an http(s) URL, got {value!r}")
    if parts.query or parts.fragment or not CFG_SAFE.fullmatch(value):
        raise ValueError(f"{value!r} has characters or parts it cannot have")
    return value.rstrip("/")


def config_secret(value: str) -> str:
    """A secret written into the configuration (route secret, topology-hiding key)."""
    if not _SECRET_SAFE.fullmatch(value):
        raise ValueError("may only use letters, digits and ._~+/=- (at most 256)")
    return value


def credential(value: str) -> str:
    """A digest user name or password for a gateway."""
    if not _CREDENTIAL_SAFE.fullmatch(value):
        raise ValueError("may only use letters, digits and ._~+/!*@- (at most 128)")
    return value


def file_path(value: str) -> str:
    """A file the configuration names (TLS certificate, key, CA)."""
    if not _PATH_SAFE.fullmatch(value):
        raise ValueError(f"{value!r}: the path has characters it cannot have (spaces, quotes...)")
    return value


def service_headers(route_secret: str | None) -> dict[str, str]:
    """The headers of every JSON request the edge makes to the routing service."""
    headers = {"Content-Type": "application/json"}
    if route_secret:
        headers["X-Chimeproxy-Route-Secret"] = route_secret
    return headers


@dataclass(frozen=True, slots=True)
class EdgeSettings:
    """Everything `chimeproxy sip-edge` is told."""

    listen: tuple[Listen, ...] = option(
        (Listen("udp", HostPort("127.0.0.1", 5060)),),
        flag="--listen",
        env="CHIMEPROXY_SIP_LISTEN",
        help="where Kamailio takes SIP: `udp:HOST:PORT`, `tcp:HOST:PORT` or `tls:HOST:PORT`; "
        "a listener for each transport a gateway uses is added on the first address",
        parse=Listen.parse,
        kind=REPEATED,
    )
    trunk: tuple[Trunk, ...] = option(
        (),
        flag="--trunk",
        env="CHIMEPROXY_SIP_TRUNK",
        help="the carrier's signalling addresses (CIDR, address or host name): only they may "
        "send calls and messages and assert identity; without one the edge listens on "
        "loopback only",
        parse=Trunk.parse,
        kind=REPEATED,
        shown_default="none (loopback only)",
    )
    drop_untrusted: bool = option(
        False,
        flag="--drop-untrusted",
        env="CHIMEPROXY_SIP_DROP_UNTRUSTED",
        help="drop requests from outside the trunk silently instead of answering 403",
        kind=SWITCH,
    )
    flood_rate: int = option(
        20,
        flag="--flood-rate",
        env="CHIMEPROXY_SIP_FLOOD_RATE",
        help="requests per second one source outside the trunk may send before it is blocked",
        parse=integer(1, 100_000),
    )
    flood_block: int = option(
        60,
        flag="--flood-block",
        env="CHIMEPROXY_SIP_FLOOD_BLOCK",
        help="seconds a flooding source stays blocked (its requests dropped)",
        parse=integer(1, 86_400),
    )
    gateway: tuple[Gateway, ...] = option(
        (),
        flag="--gateway",
        env="CHIMEPROXY_SIP_GATEWAY",
        help="the SIP gateway calls leave through, in priority order: "
        "`sip:[USER@]HOST[:PORT][;transport=udp|tcp|tls]` or `HOST:PORT`; one that times out "
        "or answers 5xx/408 is skipped and probed with OPTIONS until it is back",
        parse=Gateway.parse,
        kind=REPEATED,
        shown_default="required",
    )
    gateway_username: str | None = option(
        None,
        flag="--gateway-username",
        env="CHIMEPROXY_SIP_GATEWAY_USERNAME",
        help="digest user name the edge answers gateways' 401/407 challenges with (a user "
        "in a --gateway URI wins for that gateway)",
        parse=optional(credential),
    )
    gateway_password: str | None = option(
        None,
        flag="--gateway-password",
        env="CHIMEPROXY_SIP_GATEWAY_PASSWORD",
        help="the digest password; prefer the environment variable, which process listings "
        "do not show",
        parse=optional(credential),
    )
    gateway_credentials: str | None = option(
        None,
        flag="--gateway-credentials",
        env="CHIMEPROXY_SIP_GATEWAY_CREDENTIALS",
        help="CSV `gateway,username,password` for gateways whose credentials differ "
        "(gateway as HOST or HOST:PORT)",
        parse=optional(str),
        metavar="FILE",
    )
    tls_cert: str | None = option(
        None,
        flag="--tls-cert",
        env="CHIMEPROXY_SIP_TLS_CERT",
        help="PEM certificate (chain) of the edge, for tls: listeners and TLS gateways",
        parse=optional(file_path),
        metavar="FILE",
    )
    tls_key: str | None = option(
        None,
        flag="--tls-key",
        env="CHIMEPROXY_SIP_TLS_KEY",
        help="PEM private key of --tls-cert",
        parse=optional(file_path),
        metavar="FILE",
    )
    tls_ca: str | None = option(
        None,
        flag="--tls-ca",
        env="CHIMEPROXY_SIP_TLS_CA",
        help="PEM CA certificates: TLS gateways must present a certificate they signed",
        parse=optional(file_path),
        shown_default="gateways' certificates not verified",
        metavar="FILE",
    )
    advertise: HostPort | None = option(
        None,
        flag="--advertise",
        env="CHIMEPROXY_SIP_ADVERTISE",
        help="the public `HOST[:PORT]` written in Record-Route and Via when the edge sits "
        "behind NAT (the port defaults to each listener's)",
        parse=optional(HostPort.parse_optional_port),
    )
    rtpengine: HostPort | None = option(
        None,
        flag="--rtpengine",
        env="CHIMEPROXY_SIP_RTPENGINE",
        help="`HOST:PORT` of an rtpengine you run yourself (its ng control port); then give "
        "--media-advertise, and apply the media filter (docs/dataplane.md) on its host",
        parse=optional(HostPort.parse),
        shown_default="one started and supervised by this command",
    )
    media_address: str | None = option(
        None,
        flag="--media-address",
        env="CHIMEPROXY_SIP_MEDIA_ADDRESS",
        help="the IPv4 address rtpengine relays media on",
        parse=optional(ipv4),
        shown_default="the first --listen address",
    )
    media_advertise: str | None = option(
        None,
        flag="--media-advertise",
        env="CHIMEPROXY_SIP_MEDIA_ADVERTISE",
        help="the public IPv4 address written into SDP when the media address is behind NAT",
        parse=optional(ipv4),
        shown_default="--advertise's address, else the media address",
    )
    media_ports: PortRange = option(
        PortRange(30000, 39999),
        flag="--media-ports",
        env="CHIMEPROXY_SIP_MEDIA_PORTS",
        help="`MIN-MAX`: the UDP ports rtpengine relays media on (two per stream)",
        parse=PortRange.parse,
    )
    media_filter: bool = option(
        True,
        flag="--no-media-filter",
        env="CHIMEPROXY_SIP_NO_MEDIA_FILTER",
        help="do not install the nftables filter that stops rtpengine forwarding RTCP and "
        "RTP a caller crafted (SDES items with its number); only where you apply it yourself",
        kind=OFF_SWITCH,
        shown_default="installed (needs nft and CAP_NET_ADMIN)",
    )
    rtpengine_binary: str | None = option(
        None,
        flag="--rtpengine-binary",
        env="CHIMEPROXY_RTPENGINE",
        help="the rtpengine binary",
        parse=optional(str),
        shown_default="rtpengine on PATH, else /usr/bin/rtpengine",
    )
    service_url: str = option(
        "http://127.0.0.1:8089",
        flag="--service-url",
        env="CHIMEPROXY_SERVICE_URL",
        help="the chimeproxy server answering `/_chimeproxy/route`",
        parse=service_url,
    )
    route_secret: str | None = option(None, **ROUTE_SECRET | {"parse": optional(config_secret)})
    http_timeout: int = option(
        2,
        flag="--http-timeout",
        env="CHIMEPROXY_SIP_HTTP_TIMEOUT",
        help="seconds to wait for the routing service before answering 503",
        parse=integer(1, 30),
    )
    routing_workers: int = option(
        32,
        flag="--routing-workers",
        env="CHIMEPROXY_SIP_ROUTING_WORKERS",
        help="routing questions in flight at once (Kamailio async workers); no SIP worker "
        "waits for the routing service",
        parse=integer(1, 512),
    )
    metrics_listen: HostPort | None = option(
        HostPort("127.0.0.1", 9060),
        flag="--metrics-listen",
        env="CHIMEPROXY_SIP_METRICS_LISTEN",
        help="`HOST:PORT` of the edge's own HTTP `/health` and `/metrics` (Prometheus); "
        "empty for none",
        parse=optional(HostPort.parse),
    )
    mask_key: str | None = option(
        None,
        flag="--mask-key",
        env="CHIMEPROXY_SIP_MASK_KEY",
        help="topology-hiding key; give every edge behind one trunk the same key",
        parse=optional(config_secret),
        shown_default="kept in the runtime directory",
    )
    kamailio: str | None = option(
        None,
        flag="--kamailio",
        env="CHIMEPROXY_KAMAILIO",
        help="the Kamailio binary",
        parse=optional(str),
        shown_default="kamailio on PATH, else /usr/sbin/kamailio",
    )
    runtime_dir: str | None = option(
        None,
        flag="--runtime-dir",
        env="CHIMEPROXY_SIP_RUNTIME_DIR",
        help="where the configuration, calls in progress and undelivered call reports are "
        "kept; give one so calls survive a restart of this command",
        parse=optional(file_path),
        shown_default="a new temporary directory, removed at exit",
    )
    children: int = option(
        4,
        flag="--children",
        env="CHIMEPROXY_SIP_CHILDREN",
        help="Kamailio SIP worker processes per transport",
        parse=integer(1, 64),
    )
    log_level: str = option("info", **LOG_LEVEL)
