"""The media bench of the SIP tests: RTP and RTCP as a phone sends them (with its number where
phones put it: RTCP SDES items, an RTP header extension), endpoints that send and count what
comes back, tcpdump captures of everything a side receives, and the search of a capture for
another side's number and address, in text and as raw bytes, IP headers included."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import require_tool

PCMU = 0
SILENCE = b"\xff" * 160  # 20 ms of PCMU


# Building packets.


def rtp(sequence: int, timestamp: int, ssrc: int, *, extension: bytes | None = None) -> bytes:
    """A PCMU RTP packet; with `extension`, an RFC 8285 one-byte header extension (id 1)."""
    first = 0x80 | (0x10 if extension is not None else 0)
    header = struct.pack("!BBHII", first, PCMU, sequence & 0xFFFF, timestamp, ssrc)
    if extension is not None:
        element = bytes([0x10 | (min(len(extension), 16) - 1)]) + extension[:16]
        element += b"\x00" * (-len(element) % 4)
        header += struct.pack("!HH", 0xBEDE, len(element) // 4) + element
    return header + SILENCE


def _rtcp(packet_type: int, count: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    return struct.pack("!BBH", 0x80 | count, packet_type, len(body) // 4) + body


def sender_report(ssrc: int, packets: int) -> bytes:
    now = time.time() + 2_208_988_800
    body = struct.pack(
        "!IIIIII", ssrc, int(now), int((now % 1) * 2**32), packets * 160, packets, packets * 160
    )
    return _rtcp(200, 0, body)


def receiver_report(ssrc: int) -> bytes:
    return _rtcp(201, 0, struct.pack("!I", ssrc))


def sdes(ssrc: int, number: str, address: str) -> bytes:
    """SDES with every item a phone may fill with its identity: CNAME, NAME, EMAIL, PHONE,
    NOTE."""
    items = b""
    for kind, text in (
        (1, f"sip:{number}@{address}"),
        (2, f"Caller {number}"),
        (3, f"{number.lstrip('+')}@{address}"),
        (4, number),
        (7, f"calling from {address}"),
    ):
        value = text.encode()
        items += bytes([kind, len(value)]) + value
    chunk = struct.pack("!I", ssrc) + items + b"\x00"
    return _rtcp(202, 1, chunk)


def bye(ssrc: int, number: str) -> bytes:
    reason = f"bye from {number}".encode()
    return _rtcp(203, 1, struct.pack("!I", ssrc) + bytes([len(reason)]) + reason)


def app(ssrc: int, number: str) -> bytes:
    return _rtcp(204, 0, struct.pack("!I", ssrc) + b"NUMB" + number.encode())


def rtcp_shapes(ssrc: int, number: str, address: str, packets: int) -> list[bytes]:
    """Every RTCP compound a phone may send, each naming it: SR+SDES, RR+SDES, SDES alone,
    BYE+SDES and APP."""
    items = sdes(ssrc, number, address)
    return [
        sender_report(ssrc, packets) + items,
        receiver_report(ssrc) + items,
        items,
        bye(ssrc, number) + items,
        app(ssrc, number),
    ]


# Endpoints.


@dataclass
class MediaEndpoint:
    """One side's media: RTP on `port`, RTCP on `port + 1`, both on `address`; sends to the
    far side's (the edge's) RTP and RTCP ports and counts what arrives."""

    address: str
    port: int
    number: str
    ssrc: int = 0x1C0FFEE
    key: bytes | None = None  # an SRTP master key and salt: everything sent is SRTP then
    received_rtp: int = 0
    received_rtcp: int = 0
    received: list[bytes] = field(default_factory=list)
    _sockets: list[socket.socket] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _srtp: Any = None

    def _protect(self, packet: bytes, rtcp: bool) -> bytes:
        if self.key is None:
            return packet
        if self._srtp is None:
            import pylibsrtp

            self._srtp = pylibsrtp.Session(
                pylibsrtp.Policy(
                    key=self.key,
                    ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                    srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
                )
            )
        return self._srtp.protect_rtcp(packet) if rtcp else self._srtp.protect(packet)

    def open(self) -> MediaEndpoint:
        for offset in (0, 1):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((self.address, self.port + offset))
            sock.settimeout(0.2)
            self._sockets.append(sock)
            thread = threading.Thread(target=self._listen, args=(sock, offset), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _listen(self, sock: socket.socket, offset: int) -> None:
        while not self._stop.is_set():
            try:
                data = sock.recv(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            self.received.append(data)
            if offset == 0:
                self.received_rtp += 1
            else:
                self.received_rtcp += 1

    def talk(self, remote: tuple[str, int], seconds: float, *, leaky: bool = True) -> int:
        """Send RTP for `seconds` (20 ms apart) to remote (its RTCP on port + 1) and, when
        `leaky`, every RTCP shape with this side's identity, an RTCP to the RTP port and RTP
        with the number in a header extension. Answers the RTP packets sent."""
        rtp_socket, rtcp_socket = self._sockets
        address, port = remote
        count = int(seconds / 0.02)
        for sequence in range(count):
            extension = self.number.encode() if leaky and sequence % 10 == 5 else None
            packet = rtp(sequence, sequence * 160, self.ssrc, extension=extension)
            rtp_socket.sendto(self._protect(packet, rtcp=False), remote)
            if leaky and sequence % 25 == 0:
                for packet in rtcp_shapes(self.ssrc, self.number, self.address, sequence):
                    rtcp_socket.sendto(self._protect(packet, rtcp=True), (address, port + 1))
                # Some phones send RTCP to the RTP port.
                packet = sdes(self.ssrc, self.number, self.address)
                rtp_socket.sendto(self._protect(packet, rtcp=True), remote)
            time.sleep(0.02)
        return count

    def close(self) -> None:
        self._stop.set()
        for sock in self._sockets:
            sock.close()
        for thread in self._threads:
            thread.join(1)


# SDP as a side received it.


@dataclass(frozen=True)
class Sdp:
    address: str
    port: int
    transport: str
    text: str

    @property
    def keys(self) -> list[str]:
        """The SDES keys (inline:...) of its a=crypto lines."""
        return re.findall(r"^a=crypto:\d+ \S+ inline:([^\s|]+)", self.text, re.MULTILINE)


def sdp_of(message: str) -> Sdp:
    body = message.split("\n\n", 1)[1] if "\n\n" in message else ""
    address = re.search(r"^c=IN IP4 (\S+)", body, re.MULTILINE)
    media = re.search(r"^m=audio (\d+) (\S+)", body, re.MULTILINE)
    assert address and media, f"no SDP in:\n{message}"
    return Sdp(address[1], int(media[1]), media[2], body)


# Captures.


@dataclass
class Capture:
    path: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> list[Packet]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return read_pcap(self.path)


@contextlib.contextmanager
def capture(directory: Path, name: str, *addresses: str) -> Iterator[Capture]:
    """tcpdump on loopback of every UDP packet sent to any of `addresses`, from before the
    call until after it."""
    path = directory / f"{name}.pcap"
    condition = " or ".join(f"dst host {address}" for address in addresses)
    process = subprocess.Popen(
        [require_tool("tcpdump"), "-i", "lo", "-U", "-n", "-s", "0", "-w", str(path),
         f"udp and ({condition})"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    # tcpdump says so on stderr once it captures.
    assert process.stderr is not None
    os.set_blocking(process.stderr.fileno(), False)
    deadline = time.monotonic() + 10
    seen = b""
    while b"listening on" not in seen:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"tcpdump did not start: {seen.decode(errors='replace')}")
        seen += process.stderr.read() or b""
        time.sleep(0.05)
    running = Capture(path, process)
    try:
        yield running
    finally:
        if process.poll() is None:
            running.stop()


@dataclass(frozen=True)
class Packet:
    source: str
    source_port: int
    destination: str
    destination_port: int
    ip: bytes  # the whole IP packet: header, UDP header and payload
    payload: bytes

    @property
    def kind(self) -> str:
        first = self.payload.split(b" ", 1)[0]
        if self.payload.startswith(b"SIP/2.0") or (first.isalpha() and first.isupper()):
            return "sip"
        if len(self.payload) >= 2 and self.payload[0] >> 6 == 2:
            return "rtcp" if 200 <= self.payload[1] <= 207 else "rtp"
        return "other"


def read_pcap(path: Path) -> list[Packet]:
    data = path.read_bytes() if path.exists() else b""
    if len(data) < 24:
        return []
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    link = struct.unpack(endian + "I", data[20:24])[0]
    offset, packets = 24, []
    while offset + 16 <= len(data):
        length = struct.unpack(endian + "I", data[offset + 8 : offset + 12])[0]
        frame = data[offset + 16 : offset + 16 + length]
        offset += 16 + length
        ip = {1: frame[14:], 113: frame[16:], 276: frame[20:]}.get(link, frame)
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        header = (ip[0] & 15) * 4
        source_port, destination_port = struct.unpack("!HH", ip[header : header + 4])
        packets.append(
            Packet(
                socket.inet_ntoa(ip[12:16]),
                source_port,
                socket.inet_ntoa(ip[16:20]),
                destination_port,
                ip,
                ip[header + 8 :],
            )
        )
    return packets


def identity_forms(number: str, address: str) -> list[bytes]:
    """What would give a side away: its number written every way phones and carriers write
    it, and its address as text and as the four bytes of an IP header or an SDES item."""
    digits = number.lstrip("+")
    national = digits[1:] if digits.startswith("1") else digits
    forms = {number, digits, national, f"%2B{digits}"}
    if len(national) == 10:
        area, exchange, line = national[:3], national[3:6], national[6:]
        forms |= {f"({area}) {exchange}-{line}", f"{area}-{exchange}-{line}",
                  f"{area}.{exchange}.{line}", f"{area} {exchange} {line}"}  # fmt: skip
    found = [form.encode() for form in forms]
    found += [address.encode(), ipaddress.IPv4Address(address).packed]
    return found


def leaks(packets: list[Packet], to: str, number: str, address: str) -> list[str]:
    """Every packet sent to `to` that carries `number` or `address` in any form, described."""
    found = []
    forms = identity_forms(number, address)
    for packet in packets:
        if packet.destination != to:
            continue
        for form in forms:
            if form in packet.ip:
                found.append(
                    f"{packet.kind} {packet.source}:{packet.source_port} -> "
                    f"{packet.destination}:{packet.destination_port} carries {form!r}"
                )
    return found


def count(packets: list[Packet], to: str, kind: str) -> int:
    return sum(1 for packet in packets if packet.destination == to and packet.kind == kind)
