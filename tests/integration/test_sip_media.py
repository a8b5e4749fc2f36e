"""Media through the edge: every call's media goes through rtpengine, and a capture of
everything one side receives (SIP, SDP, RTP, RTCP) holds neither the other side's number in
any written form nor its address. Real Kamailio, rtpengine, SIPp and baresip on loopback:
127.0.0.10 is the edge (signalling and media), 127.0.0.11 the caller (the trunk), 127.0.0.12
the callee (the gateway)."""

from __future__ import annotations

import base64
import math
import os
import signal
import struct
import subprocess
import threading
import time
import wave
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pylibsrtp
import pytest

from chimeproxy.testing import ChimeProxyServer
from tests.conftest import require_tool
from tests.integration.media import (
    MediaEndpoint,
    capture,
    count,
    leaks,
    sdp_of,
)
from tests.integration.sip import (
    Session,
    SipEdge,
    assert_completed,
    ended_interaction,
    first,
    free_udp_port,
    header,
    next_media_ports,
    open_session,
    received,
    start_gateway,
    start_phone,
    status_line,
)

EDGE = "127.0.0.10"
CALLER = "127.0.0.11"
CALLEE = "127.0.0.12"
# The real phones' RTP ports. baresip sends and receives on 127.0.0.1, which every test's
# clients share, so these sit where nothing else takes a port: above the kernel's ephemeral
# range (32768-60999), where other tests' clients are given theirs, and clear of the edges'
# control (10000-19999) and media (from 20000, 4000 a pytest worker) ports.
CALLER_RTP = range(61000, 61100)
CALLEE_RTP = range(62000, 62100)


@pytest.fixture(scope="module", autouse=True)
def media_tools() -> None:
    require_tool("tcpdump")


@pytest.fixture
def edge(tmp_path: Path, routing_server: ChimeProxyServer) -> Iterator[SipEdge]:
    gateway_port = free_udp_port(CALLEE)
    running = SipEdge(
        routing_server.url,
        tmp_path,
        host=EDGE,
        port=free_udp_port(EDGE),
        gateway_port=gateway_port,
        trunk=[f"{CALLER}/32"],
        gateways=[f"{CALLEE}:{gateway_port}"],
        # Room for 50 calls at once: two legs, two ports (RTP, RTCP) each.
        media_ports=next_media_ports(400),
    ).start()
    yield running
    running.stop()


def wait_for(trace: Path, start: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in received(trace) if m.startswith(start)]
        if found:
            return found[0]
        time.sleep(0.05)
    pytest.fail(f"no {start!r} in {trace}")


def media_keys(port: int, transport: str = "RTP/AVP", crypto: str = "a=ptime:20") -> dict[str, str]:
    return {"audio_port": str(port), "media_transport": transport, "crypto": crypto}


def call_with_media(
    tmp_path: Path,
    edge: SipEdge,
    session: Session,
    *,
    transport: str = "RTP/AVP",
    caller_crypto: str = "a=ptime:20",
    callee_crypto: str = "a=ptime:20",
    seconds: float = 2.5,
    caller_key: bytes | None = None,
    callee_key: bytes | None = None,
) -> tuple[Any, Any, MediaEndpoint, MediaEndpoint]:
    """A call from A (the caller's SIPp, its media from this process) to B through the edge,
    with media both ways for `seconds`."""
    caller_port, callee_port = free_udp_port(CALLER), free_udp_port(CALLEE)
    gateway = start_gateway(
        tmp_path, edge, "uas_media.xml", address=CALLEE,
        keys={"callee": session.b, **media_keys(callee_port, transport, callee_crypto)},
    )  # fmt: skip
    caller_media = MediaEndpoint(CALLER, caller_port, session.a, key=caller_key).open()
    callee_media = MediaEndpoint(CALLEE, callee_port, session.b, ssrc=0xB0B, key=callee_key).open()
    phone = start_phone(
        tmp_path, edge, "uac_media.xml", address=CALLER, service=session.proxy,
        keys={"caller": session.a, **media_keys(caller_port, transport, caller_crypto)},
        extra=["-d", str(int(seconds * 1000) + 2500)],
    )  # fmt: skip
    try:
        to_caller = sdp_of(wait_for(phone.trace, "SIP/2.0 200"))
        to_callee = sdp_of(wait_for(gateway.trace, "INVITE "))
        talkers = [
            threading.Thread(
                target=caller_media.talk, args=((to_caller.address, to_caller.port), seconds)
            ),
            threading.Thread(
                target=callee_media.talk, args=((to_callee.address, to_callee.port), seconds)
            ),
        ]
        for talker in talkers:
            talker.start()
        for talker in talkers:
            talker.join()
        assert_completed(edge, phone, gateway)
    finally:
        caller_media.close()
        callee_media.close()
    return phone, gateway, caller_media, callee_media


def test_nothing_either_side_receives_reveals_the_other(
    tmp_path: Path, edge: SipEdge, voice: Any, routing_server: ChimeProxyServer
) -> None:
    """The caller sends everything that gives it away: a multipart body (SDP with its number in
    o=, s=, i=, u=, e=, p=, a=ssrc cname, a=label, a=msid; ISUP; XML), RTCP with SDES items in
    every shape, RTCP to the RTP port, RTP with its number in a header extension; the callee
    answers likewise. A capture of all each side receives is searched for the other."""
    session = open_session(voice)
    with capture(tmp_path, "call", CALLER, CALLEE, EDGE) as running:
        phone, gateway, caller_media, callee_media = call_with_media(tmp_path, edge, session)
        packets = running.stop()

    # The search finds what it looks for: what the caller sent the edge gives it away.
    assert leaks(packets, EDGE, session.a, CALLER)
    # What the callee received: SIP, SDP, RTP, RTCP. Nothing of the caller.
    assert leaks(packets, CALLEE, session.a, CALLER) == []
    # And the other way round.
    assert leaks(packets, CALLER, session.b, CALLEE) == []
    # Every packet each side received came from the edge's address.
    assert {p.source for p in packets if p.destination in (CALLER, CALLEE)} == {EDGE}

    # Media went both ways, through rtpengine.
    assert count(packets, CALLEE, "rtp") >= 100 and callee_media.received_rtp >= 100
    assert count(packets, CALLER, "rtp") >= 100 and caller_media.received_rtp >= 100
    # The SDP each side got: the edge's address only, none of the other's attributes.
    invite = first(received(gateway.trace), "INVITE ")
    assert header(invite, "Content-Type") == "application/sdp"
    offered = sdp_of(invite)
    assert offered.address == EDGE
    for text in ("a=ssrc", "a=msid", "a=label", "ISUP", "pidf", "i=", "u=", "e=", "p="):
        assert text not in offered.text
    assert sdp_of(first(received(phone.trace), "SIP/2.0 200")).address == EDGE
    assert ended_interaction(routing_server, session)["Outcome"] == "completed"
    assert edge.metric("chimeproxy_edge_media_packets_total") > 0
    # The filter stopped what rtpengine would have forwarded as the sender wrote it.
    assert edge.metric("chimeproxy_edge_media_filtered_packets_total") > 0


def tone(path: Path, seconds: float = 20.0) -> Path:
    """A 440 Hz tone, 8 kHz mono 16-bit, for baresip to play."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        frames = b"".join(
            struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / 8000)))
            for i in range(int(8000 * seconds))
        )
        out.writeframes(frames)
    return path


def baresip_config(directory: Path, address: str, port: int, account: str, ports: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config").write_text(
        "\n".join(
            [
                "poll_method epoll",
                f"sip_listen {address}:{port}",
                f"net_interface {address}",
                f"audio_source aufile,{tone(directory / 'tone.wav')}",
                f"audio_player aufile,{directory / 'heard.wav'}",
                "audio_alert aufile,/dev/null",
                f"rtp_ports {ports}",
                "rtcp_mux no",
                "rtp_stats yes",
                "module_path /usr/lib/baresip/modules",
                "module g711.so",
                "module aufile.so",
                "module_app account.so",
                "module_app menu.so",
            ]
        )
        + "\n"
    )
    (directory / "accounts").write_text(account + "\n")
    return directory


def test_a_call_between_two_real_phones_hides_each_from_the_other(
    tmp_path: Path, edge: SipEdge, voice: Any, routing_server: ChimeProxyServer
) -> None:
    """baresip calls baresip: it writes its SIP URI (with its number) as the a=ssrc cname of its
    SDP and as the CNAME of its RTCP, and sends RTCP BYE with SDES when it hangs up."""
    binary = require_tool("baresip")
    session = open_session(voice)
    callee_dir = baresip_config(
        tmp_path / "callee", CALLEE, edge.gateway_port,
        f"<sip:{session.b}@{CALLEE}:{edge.gateway_port};transport=udp>;regint=0;"
        "answermode=auto;audio_codecs=PCMU", f"{CALLEE_RTP.start}-{CALLEE_RTP.stop - 1}",
    )  # fmt: skip
    caller_port = free_udp_port(CALLER)
    caller_dir = baresip_config(
        tmp_path / "caller", CALLER, caller_port,
        f"<sip:{session.a}@{CALLER}:{caller_port};transport=udp>;regint=0;"
        f'outbound="sip:{EDGE}:{edge.port}";audio_codecs=PCMU',
        f"{CALLER_RTP.start}-{CALLER_RTP.stop - 1}",
    )  # fmt: skip
    with capture(tmp_path, "phones", CALLER, CALLEE, EDGE, "127.0.0.1") as running:
        callee = subprocess.Popen(
            [binary, "-f", str(callee_dir), "-t", "16"],
            stdout=(tmp_path / "callee.log").open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        time.sleep(1.5)
        caller = subprocess.run(
            [binary, "-f", str(caller_dir), "-e", f"/dial sip:{session.proxy}@{EDGE}:{edge.port}",
             "-t", "8"],
            stdout=(tmp_path / "caller.log").open("wb"), stderr=subprocess.STDOUT, timeout=30,
        )  # fmt: skip
        callee.send_signal(signal.SIGTERM)
        callee.wait(15)
        packets = running.stop()
    assert caller.returncode == 0
    # baresip sends its media from 127.0.0.1 and rtpengine latches on that: a side is told
    # apart by its ports (SIP, and RTP: CALLER_RTP, CALLEE_RTP), not only by its address, which
    # the phones and clients of tests running beside this one share.
    to_callee = [
        p
        for p in packets
        if (p.destination_port == edge.gateway_port and p.destination == CALLEE)
        or p.destination_port in CALLEE_RTP
    ]
    to_caller = [
        p
        for p in packets
        if (p.destination_port == caller_port and p.destination == CALLER)
        or p.destination_port in CALLER_RTP
    ]
    assert sum(1 for p in to_callee if p.kind == "rtp") >= 100, "no audio reached the callee"
    assert sum(1 for p in to_caller if p.kind == "rtp") >= 100, "no audio reached the caller"
    relabelled = [
        p.__class__(p.source, p.source_port, "callee", 0, p.ip, p.payload) for p in to_callee
    ]
    assert leaks(relabelled, "callee", session.a, CALLER) == []
    relabelled = [
        p.__class__(p.source, p.source_port, "caller", 0, p.ip, p.payload) for p in to_caller
    ]
    assert leaks(relabelled, "caller", session.b, CALLEE) == []
    assert {p.source for p in to_callee + to_caller} == {EDGE}
    # Positive control: baresip does put its number in what it sends.
    sent_by_caller = [
        p for p in packets if p.source in (CALLER, "127.0.0.1") and p.destination == EDGE
    ]
    assert any(session.a.encode() in p.payload for p in sent_by_caller)


def test_fifty_calls_at_once_carry_audio_both_ways(
    tmp_path: Path, edge: SipEdge, voice: Any
) -> None:
    session = open_session(voice)
    calls = 50
    (tmp_path / "tone.ulaw").write_bytes(bytes(range(0, 256, 2)) * 125 * 2)  # 2 s of u-law
    echo = start_gateway(
        tmp_path, edge, "uas_media_echo.xml", address=CALLEE, calls=calls,
        keys={"callee": session.b}, extra=["-rtp_echo", "-mi", CALLEE, "-mp", "47000"],
    )  # fmt: skip
    with capture(tmp_path, "load", CALLER, CALLEE) as running:
        callers = start_phone(
            tmp_path, edge, "uac_media_load.xml", name="callers", address=CALLER,
            service=session.proxy, calls=calls,
            keys={"caller": session.a},
            extra=["-l", str(calls), "-r", "25", "-d", "6000", "-mi", CALLER,
                   "-mp", "48000"],
        )  # fmt: skip
        assert_completed(edge, callers, echo, calls=calls)
        packets = running.stop()

    # Each call's media has its own relay ports on the edge, one per leg: count what every one
    # of them sent to the callers and to the echoing gateway (the capture also sees the media
    # of tests running beside this one, from their edges' ports).
    relayed = [p for p in packets if p.kind == "rtp" and p.source_port in edge.media_port_range]
    to_callers = Counter(p.source_port for p in relayed if p.destination == CALLER)
    to_echo = Counter(p.source_port for p in relayed if p.destination == CALLEE)
    assert len(to_callers) == calls and min(to_callers.values()) >= 50, to_callers
    assert len(to_echo) == calls and min(to_echo.values()) >= 50, to_echo
    assert edge.metric("chimeproxy_edge_media_errors_total") == 0


def open_encrypted_session(voice: Any) -> Session:
    session = open_session(voice)
    voice.update_voice_connector(
        VoiceConnectorId=session.connector_id, Name="encrypted", RequireEncryption=True
    )
    return session


CALLER_KEY = "WnD7c1ksDGs+dIefCEdx2S2HQVcOnT1zFNr+a09S"
CALLEE_KEY = "d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj"


def test_an_encrypted_connector_refuses_plain_media_with_488(
    tmp_path: Path, edge: SipEdge, voice: Any, routing_server: ChimeProxyServer
) -> None:
    session = open_encrypted_session(voice)
    gateway = start_gateway(tmp_path, edge, "uas_media.xml", address=CALLEE,
                            keys={"callee": session.b, **media_keys(40000)})  # fmt: skip
    phone = start_phone(
        tmp_path, edge, "uac_reject.xml", address=CALLER, service=session.proxy,
        keys={"caller": session.a},
    )  # fmt: skip
    assert_completed(edge, phone)
    assert status_line(received(phone.trace)).startswith("SIP/2.0 488")
    gateway.process.terminate()
    gateway.wait()
    assert received(gateway.trace) == []  # no call left the edge
    refused = ended_interaction(routing_server, session)
    assert (refused["Action"], refused["RejectStatus"]) == ("reject", 488)


def test_an_encrypted_connector_carries_srtp_on_both_legs(
    tmp_path: Path, edge: SipEdge, voice: Any, routing_server: ChimeProxyServer
) -> None:
    session = open_encrypted_session(voice)
    suite = "AES_CM_128_HMAC_SHA1_80"
    phone, gateway, caller_media, callee_media = call_with_media(
        tmp_path, edge, session, transport="RTP/SAVP",
        caller_crypto=f"a=crypto:1 {suite} inline:{CALLER_KEY}",
        callee_crypto=f"a=crypto:1 {suite} inline:{CALLEE_KEY}",
        caller_key=base64.b64decode(CALLER_KEY), callee_key=base64.b64decode(CALLEE_KEY),
    )  # fmt: skip
    to_callee = sdp_of(first(received(gateway.trace), "INVITE "))
    to_caller = sdp_of(first(received(phone.trace), "SIP/2.0 200"))
    assert to_callee.transport == "RTP/SAVP" and to_callee.keys
    assert to_caller.transport == "RTP/SAVP" and to_caller.keys
    # What each side received decrypts with the key rtpengine gave it for its leg.
    for media, sdp in ((callee_media, to_callee), (caller_media, to_caller)):
        session_in = pylibsrtp.Session(
            pylibsrtp.Policy(
                key=base64.b64decode(sdp.keys[0]),
                ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
                srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
            )
        )
        decrypted = 0
        for packet in media.received:
            if len(packet) > 12 and not 200 <= packet[1] <= 207:
                session_in.unprotect(packet)
                decrypted += 1
        assert decrypted >= 50
    assert ended_interaction(routing_server, session)["Outcome"] == "completed"


def test_a_plain_connector_keeps_plain_media(tmp_path: Path, edge: SipEdge, voice: Any) -> None:
    session = open_session(voice)
    phone, gateway, caller_media, callee_media = call_with_media(tmp_path, edge, session)
    assert sdp_of(first(received(gateway.trace), "INVITE ")).transport == "RTP/AVP"
    assert sdp_of(first(received(phone.trace), "SIP/2.0 200")).transport == "RTP/AVP"
    assert caller_media.received_rtp >= 50 and callee_media.received_rtp >= 50


def test_calls_work_again_soon_after_rtpengine_dies(
    tmp_path: Path, edge: SipEdge, voice: Any
) -> None:
    first_pid = int((edge.runtime_dir / "rtpengine.pid").read_text())
    os.kill(first_pid, signal.SIGKILL)
    killed = time.monotonic()
    deadline = killed + 20
    while True:
        pid_file = edge.runtime_dir / "rtpengine.pid"
        pid = int(pid_file.read_text()) if pid_file.exists() and pid_file.read_text().strip() else 0
        if pid and pid != first_pid and edge.metric("chimeproxy_edge_media_up") == 1:
            break
        assert time.monotonic() < deadline, edge.log()[-4000:]
        time.sleep(0.2)
    session = open_session(voice)
    _phone, _gateway, caller_media, callee_media = call_with_media(
        tmp_path, edge, session, seconds=1.0
    )
    assert caller_media.received_rtp >= 20 and callee_media.received_rtp >= 20
    assert time.monotonic() - killed < 20
    assert edge.metric("chimeproxy_edge_media_restarts_total") == 1
