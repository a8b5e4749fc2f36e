"""`chimeproxy sip-edge`'s settings, declared like the server's (chimeproxy/settings.py), and
the address types they are written in. Everything here is checked strictly: it ends up inside
SIP URIs and the rendered Kamailio configuration."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from chimeproxy.settings import LOG_LEVEL, ROUTE_SECRET, integer, option, optional

# Kamailio's log levels by the names the rest of chimeproxy uses.
KAMAILIO_LEVELS = {"debug": 3, "info": 2, "warning": 0, "error": -1}

# What may appear inside a double-quoted string of the rendered configuration: no quote,
# backslash, `$` (Kamailio would read a pseudo-variable) or whitespace.
CFG_SAFE = re.compile(r"[A-Za-z0-9._~+/=:@%!*,;&?#\[\]-]+")
_SECRET_SAFE = re.compile(r"[A-Za-z0-9._~+/=-]{1,256}")
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?")


@dataclass(frozen=True, slots=True)
class HostPort:
    """A host (IPv4, bracketed IPv6 or DNS name) and a port."""

    host: str
    port: int

    @classmethod
    def parse(cls, value: str) -> HostPort:
        """`HOST:PORT`; ValueError says what is wrong."""
        host, sep, port_text = value.rpartition(":")
        if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"must be HOST:PORT, got {value!r}")
        if host.startswith("[") and host.endswith("]"):
            try:
                ipaddress.IPv6Address(host[1:-1])
            except ValueError:
                raise ValueError(f"{host!r} is not an IPv6 address") from None
        elif not _HOSTNAME.fullmatch(host):
            raise ValueError(f"{host!r} is not a host name or IPv4 address")
        return cls(host, int(port_text))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Listen:
    """Where Kamailio takes SIP: `udp:HOST:PORT` or `tcp:HOST:PORT`."""

    proto: str
    address: HostPort

    @classmethod
    def parse(cls, value: str) -> Listen:
        proto, sep, rest = value.partition(":")
        if not sep or proto not in ("udp", "tcp"):
            raise ValueError(f"must be udp:HOST:PORT or tcp:HOST:PORT, got {value!r}")
        return cls(proto, HostPort.parse(rest))

    def __str__(self) -> str:
        return f"{self.proto}:{self.address}"


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


@dataclass(frozen=True, slots=True)
class EdgeSettings:
    """Everything `chimeproxy sip-edge` is told."""

    listen: Listen = option(
        Listen("udp", HostPort("127.0.0.1", 5060)),
        flag="--listen",
        env="CHIMEPROXY_SIP_LISTEN",
        help="where Kamailio takes SIP: `udp:HOST:PORT` or `tcp:HOST:PORT`",
        parse=Listen.parse,
    )
    gateway: HostPort | None = option(
        None,
        flag="--gateway",
        env="CHIMEPROXY_SIP_GATEWAY",
        help="`HOST:PORT` of the operator's SIP trunk or gateway that reaches participants",
        parse=HostPort.parse,
        shown_default="required",
    )
    service_url: str = option(
        "http://127.0.0.1:8089",
        flag="--service-url",
        env="CHIMEPROXY_SERVICE_URL",
        help="the chimeproxy server answering `/_chimeproxy/route`",
        parse=service_url,
    )
    route_secret: str | None = option(None, **ROUTE_SECRET | {"parse": optional(config_secret)})
    mask_key: str | None = option(
        None,
        flag="--mask-key",
        env="CHIMEPROXY_SIP_MASK_KEY",
        help="topology-hiding key; give every edge behind one trunk the same key",
        parse=optional(config_secret),
        shown_default="random per run",
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
        help="where the rendered configuration and pid file go",
        parse=optional(str),
        shown_default="a new temporary directory, removed at exit",
    )
    children: int = option(
        4,
        flag="--children",
        env="CHIMEPROXY_SIP_CHILDREN",
        help="Kamailio worker processes",
        parse=integer(1, 64),
    )
    http_timeout: int = option(
        2,
        flag="--http-timeout",
        env="CHIMEPROXY_SIP_HTTP_TIMEOUT",
        help="seconds to wait for the routing service before answering 503",
        parse=integer(1, 30),
    )
    log_level: str = option("info", **LOG_LEVEL)
