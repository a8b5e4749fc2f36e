"""Media anchoring: the rtpengine the edge starts and supervises (unless `--rtpengine` names
one), and the nftables filter on what it sends.

rtpengine 10.5 forwards a few kinds of packet as the sender wrote them even with the flags the
edge uses (generate-RTCP, inject-DTMF): RTCP compounds that do not start with a sender or
receiver report (SDES-only, BYE with SDES, APP), RTCP sent to an RTP port, and RTP with a
payload type nobody negotiated. A phone puts its number in such packets (baresip sends its
SIP URI as the SDES CNAME of its RTCP BYE). The filter lets rtpengine send, from its media
ports, only version-2 RTP with a known payload type (RTP ports are even) and only RTCP that
starts with SR or RR (RTCP ports are odd; rtcp-mux is refused on both legs), which is what
rtpengine itself builds.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from chimeproxy.dataplane.edge.programs import find_program
from chimeproxy.dataplane.edge.settings import EdgeSettings, PortRange

log = logging.getLogger("chimeproxy.sip_edge")

# Payload types rtpengine may send on an RTP port: PCMU, PCMA, G722, CN, G729 and the dynamic
# range (telephone-event, Opus...), each with and without the marker bit (the second byte is
# M<<7 | PT). RTCP packet types (200-207) are not among them.
RTP_PAYLOAD_TYPES = "0, 8, 9, 13, 18, 96-127, 128, 136, 137, 141, 146, 224-255"


class MediaError(Exception):
    """rtpengine or the media filter cannot be set up; says what to install or pass."""


def find_rtpengine(explicit: str | None) -> str:
    """The rtpengine binary: the one given, else the one on PATH, else Debian's /usr/bin."""
    found = find_program(explicit, "rtpengine", "/usr/bin/rtpengine")
    if found is None:
        raise MediaError(
            f"rtpengine not found ({explicit or 'rtpengine'}); install the Debian package rtpengine-daemon, "
            "pass --rtpengine-binary PATH, or --rtpengine HOST:PORT for one you run yourself"
        )
    return found


def media_address(settings: EdgeSettings) -> str:
    """Where rtpengine relays media: --media-address, else the first listener's address."""
    if settings.media_address:
        return settings.media_address
    host = settings.listen[0].address.host
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        raise MediaError(
            f"the first --listen address {host} is not an IPv4 address: give --media-address"
        ) from None


def advertised_address(settings: EdgeSettings) -> str:
    """The address both sides see in SDP: --media-advertise, else the IPv4 address of
    --advertise (an edge behind NAT has its media behind it too), else the media address."""
    if settings.media_advertise:
        return settings.media_advertise
    if settings.advertise is not None:
        try:
            return str(ipaddress.IPv4Address(settings.advertise.host))
        except ValueError:
            pass
    if settings.rtpengine is not None:
        raise MediaError(
            "with --rtpengine, give --media-advertise: the address that rtpengine writes into SDP"
        )
    return media_address(settings)


def rtpengine_command(
    binary: str,
    settings: EdgeSettings,
    *,
    ng_port: int,
    http_port: int,
    cli_port: int,
    directory: Path,
) -> list[str]:
    """rtpengine in the foreground, userspace forwarding only (--table=-1: no kernel module),
    control (ng, and its CLI, rtpengine-ctl's) and metrics (HTTP) on loopback."""
    address, public = media_address(settings), advertised_address(settings)
    interface = address if public == address else f"{address}!{public}"
    return [
        binary,
        "--foreground",
        "--log-stderr",
        "--log-level=5",
        "--table=-1",
        f"--interface=pub/{interface}",
        f"--listen-ng=127.0.0.1:{ng_port}",
        f"--listen-http=127.0.0.1:{http_port}",
        f"--listen-cli=127.0.0.1:{cli_port}",
        f"--port-min={settings.media_ports.low}",
        f"--port-max={settings.media_ports.high}",
        "--num-threads=2",
        # Media silent this long ends the stream's relay; calls end through SIP long before.
        "--timeout=60",
        "--silent-timeout=3600",
        "--delete-delay=0",
        f"--pidfile={directory / 'rtpengine.pid'}",
    ]


def wait_ready(ng_port: int, timeout: float = 15.0) -> bool:
    """Whether rtpengine answers an ng ping on loopback within `timeout` seconds. Kamailio
    starts only then: a process whose first ping fails keeps rtpengine disabled for a while."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.5)
            try:
                sock.sendto(b"ready d7:command4:pinge", ("127.0.0.1", ng_port))
                if b"pong" in sock.recv(1024):
                    return True
            except OSError:
                time.sleep(0.2)
    return False


class MediaFilter:
    """The nftables table that filters what rtpengine sends from its media address and ports
    (module docstring). One table per edge, named after its port range, installed at start and
    removed at stop."""

    def __init__(self, address: str, ports: PortRange) -> None:
        self.address = address
        self.ports = ports
        self.table = f"chimeproxy_media_{ports.low}_{ports.high}"
        self.nft = shutil.which("nft") or "/usr/sbin/nft"

    def ruleset(self) -> str:
        family = "ip" if ipaddress.ip_address(self.address).version == 4 else "ip6"
        return f"""table inet {self.table} {{
  set rtp_payload_types {{
    typeof @th,72,8
    flags interval
    elements = {{ {RTP_PAYLOAD_TYPES} }}
  }}
  chain egress {{
    type filter hook output priority 0; policy accept;
    {family} saddr {self.address} udp sport {self.ports.low}-{self.ports.high} jump media
  }}
  chain media {{
    udp sport & 1 == 0 @th,64,2 != 2 counter drop
    udp sport & 1 == 0 @th,72,8 != @rtp_payload_types counter drop
    udp sport & 1 == 1 @th,72,8 != {{ 200, 201 }} counter drop
    counter accept
  }}
}}
"""

    def install(self) -> None:
        """Replace any table of the same name (left by a killed edge) with a fresh one."""
        script = f"table inet {self.table}\ndelete table inet {self.table}\n{self.ruleset()}"
        self._nft(["-f", "-"], script)
        log.info("media filter installed", extra={"table": self.table})

    def remove(self) -> None:
        try:
            self._nft(["delete", "table", "inet", self.table])
        except MediaError as exc:
            log.warning("media filter not removed", extra={"problem": str(exc)})

    def dropped(self) -> int:
        """Packets the filter has stopped so far."""
        listing = json.loads(self._nft(["-j", "list", "table", "inet", self.table]))
        total = 0
        for entry in listing.get("nftables", []):
            rule = entry.get("rule")
            if not rule or rule.get("chain") != "media":
                continue
            expressions = rule.get("expr", [])
            if any("drop" in expression for expression in expressions):
                for expression in expressions:
                    counter = expression.get("counter")
                    if counter:
                        total += int(counter.get("packets", 0))
        return total

    def _nft(self, arguments: list[str], script: str | None = None) -> str:
        if not os.access(self.nft, os.X_OK):
            raise MediaError(
                "nft not found: install the Debian package nftables, or pass --no-media-filter "
                "and filter rtpengine's output yourself (docs/dataplane.md)"
            )
        result = subprocess.run(
            [self.nft, *arguments], input=script, capture_output=True, text=True, timeout=30
        )
        if result.returncode != 0:
            problem = (result.stderr or result.stdout).strip().splitlines()
            raise MediaError(
                f"nft {' '.join(arguments)} failed: {problem[0] if problem else result.returncode}"
                " (the media filter needs root or CAP_NET_ADMIN; or pass --no-media-filter)"
            )
        return result.stdout
