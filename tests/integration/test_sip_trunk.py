"""The SIP edge facing a carrier: only the trunk may send calls (strangers and floods make no
call at all), gateways in priority order with failover, digest challenges answered, TCP, UDP
and TLS on either leg, and a public address behind NAT. Real Kamailio, SIPp phones and
gateways on loopback addresses: 127.0.0.1 is the trunk, 127.0.0.2 a stranger, 127.0.0.3 the
gateways."""

from __future__ import annotations

import hashlib
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chimeproxy.testing import ChimeProxyServer
from tests.conftest import require_tool
from tests.integration.certificates import TLS_CERT, TLS_KEY
from tests.integration.sip import (
    GATEWAYS,
    STRANGER,
    SipEdge,
    assert_completed,
    assert_hidden,
    ended_interaction,
    first,
    free_udp_port,
    header,
    interactions,
    open_session,
    received,
    run_phone,
    sip_request,
    start_gateway,
    status_line,
    trace_times,
    uri_user,
)


def routed(server: ChimeProxyServer) -> float:
    """How many routing questions the server has answered (any status)."""
    text = httpx.get(f"{server.url}/_chimeproxy/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "chimeproxy_requests_total" and sample.labels["operation"] == "Route"
    )


def gateway_saw_nothing(gateway: Any) -> None:
    """A gateway SIPp still waiting for a call received none: stop it and read its trace."""
    assert gateway.process.poll() is None, gateway.report()
    gateway.process.terminate()
    gateway.wait()
    assert received(gateway.trace) == [], gateway.report()


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[Any]]:
    """Edges, gateways and processes a test starts, stopped at its end."""
    running: list[Any] = []
    yield running
    for item in reversed(running):
        if isinstance(item, SipEdge):
            item.stop()
        elif isinstance(item, subprocess.Popen):
            item.terminate()
            item.wait(10)
        elif item.process.poll() is None:
            item.process.kill()
            item.wait()


# Only the trunk.


def test_a_call_from_outside_the_trunk_is_refused_and_never_routed(
    tmp_path: Path, routing_server: ChimeProxyServer, voice: Any, started: list[Any]
) -> None:
    session = open_session(voice)
    edge = SipEdge(routing_server.url, tmp_path).start()
    started.append(edge)
    gateway = start_gateway(tmp_path, edge, "uas_call.xml", keys={"callee": session.b})
    started.append(gateway)
    questions = routed(routing_server)

    # A stranger's INVITE asserting participant A's identity, as a toll fraudster would send.
    phone = run_phone(
        tmp_path, edge, "uac_spoof.xml", address=STRANGER, service=session.proxy,
        keys={"caller": "+13125550199", "asserted": session.a},
    )  # fmt: skip
    assert_completed(edge, phone)
    assert status_line(received(phone.trace)) == "SIP/2.0 403 Forbidden"

    assert routed(routing_server) == questions  # the routing service was never asked
    gateway_saw_nothing(gateway)  # and no call left the edge
    assert interactions(routing_server, session.connector_id) == []
    assert edge.metric("chimeproxy_edge_untrusted_requests_total") >= 1
    status = voice.get_proxy_session(
        VoiceConnectorId=session.connector_id, ProxySessionId=session.session_id
    )["ProxySession"]["Status"]
    assert status == "Open"


def test_drop_untrusted_answers_strangers_nothing(
    tmp_path: Path, routing_server: ChimeProxyServer, started: list[Any]
) -> None:
    edge = SipEdge(routing_server.url, tmp_path, extra_args=["--drop-untrusted"]).start()
    started.append(edge)
    assert sip_request(edge.port, "INVITE", source=STRANGER, timeout=1.0) is None
    trunk_answer = sip_request(edge.port, "OPTIONS")
    assert trunk_answer is not None and trunk_answer.startswith("SIP/2.0 200")
    assert edge.metric("chimeproxy_edge_untrusted_requests_total") == 1


def test_a_flood_of_garbage_and_invites_from_a_stranger_makes_no_call(
    tmp_path: Path, routing_server: ChimeProxyServer, voice: Any, started: list[Any]
) -> None:
    session = open_session(voice)
    edge = SipEdge(
        routing_server.url, tmp_path, extra_args=["--flood-rate", "20", "--flood-block", "60"]
    ).start()
    started.append(edge)
    gateway = start_gateway(tmp_path, edge, "uas_call.xml", keys={"callee": session.b})
    started.append(gateway)
    questions = routed(routing_server)

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((STRANGER, 0))
        local = sock.getsockname()[1]
        for number in range(3000):
            garbage = bytes((number * 7 + i) % 256 for i in range(40 + number % 200))
            sock.sendto(garbage, ("127.0.0.1", edge.port))
            if number % 10 == 0:
                sock.sendto(
                    spoofed_invite(edge.port, local, session, number), ("127.0.0.1", edge.port)
                )

    # Let Kamailio drain what it received before looking.
    time.sleep(2)
    assert routed(routing_server) == questions
    gateway_saw_nothing(gateway)
    assert edge.metric("chimeproxy_edge_blocked_sources_total") >= 1
    assert edge.metric("chimeproxy_edge_blocked_requests_total") > 0
    # The stranger stays blocked (no answer at all); the trunk is not held back.
    assert sip_request(edge.port, "OPTIONS", source=STRANGER, timeout=1.0) is None
    answer = sip_request(edge.port, "OPTIONS")
    assert answer is not None and answer.startswith("SIP/2.0 200")


def spoofed_invite(port: int, local: int, session: Any, number: int) -> bytes:
    lines = [
        f"INVITE sip:{session.proxy}@127.0.0.1:{port} SIP/2.0",
        f"Via: SIP/2.0/UDP {STRANGER}:{local};branch=z9hG4bKflood{number}",
        f"From: <sip:+13125550100@{STRANGER}>;tag=f{number}",
        f"To: <sip:{session.proxy}@127.0.0.1>",
        f"Call-ID: flood-{number}@{STRANGER}",
        "CSeq: 1 INVITE",
        f"Contact: <sip:+13125550100@{STRANGER}:{local}>",
        f"P-Asserted-Identity: <sip:{session.a}@{STRANGER}>",
        "Max-Forwards: 70",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# Gateways: challenges, failover, transports.


def digest_is_valid(authorization: str, method: str, password: str) -> bool:
    fields = dict(re.findall(r'(\w+)="?([^",]*)"?', authorization))
    ha1 = hashlib.md5(f"{fields['username']}:{fields['realm']}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"{method}:{fields['uri']}".encode()).hexdigest()
    expected = hashlib.md5(f"{ha1}:{fields['nonce']}:{ha2}".encode()).hexdigest()
    return fields["response"] == expected


@pytest.mark.parametrize("code", [401, 407])
def test_a_gateway_challenge_is_answered_and_never_reaches_the_caller(
    code: int,
    tmp_path: Path,
    routing_server: ChimeProxyServer,
    voice: Any,
    started: list[Any],
) -> None:
    session = open_session(voice)
    edge = SipEdge(
        routing_server.url,
        tmp_path,
        extra_args=["--gateway-username", "edge-user"],
        env={"CHIMEPROXY_SIP_GATEWAY_PASSWORD": "edge-secret"},
    ).start()
    started.append(edge)
    gateway = start_gateway(tmp_path, edge, f"uas_challenge_{code}.xml", keys={"callee": session.b})
    phone = run_phone(
        tmp_path, edge, "uac_call.xml", service=session.proxy, keys={"caller": session.a},
        sets={"remote_bye": "0"},
    )  # fmt: skip
    assert_completed(edge, phone, gateway)

    caller_got = received(phone.trace)
    assert not any(m.startswith(f"SIP/2.0 {code}") for m in caller_got)
    assert not any("Authenticate" in m for m in caller_got)
    invites = [m for m in received(gateway.trace) if m.startswith("INVITE ")]
    assert len(invites) == 2
    name = "Proxy-Authorization" if code == 407 else "Authorization"
    assert digest_is_valid(header(invites[1], name), "INVITE", "edge-secret")
    # The credentials answer changes nothing about what is hidden.
    assert_hidden(session.a, received(gateway.trace), "the gateway")
    assert ended_interaction(routing_server, session)["Outcome"] == "completed"


def test_wrong_gateway_credentials_fail_the_call_once_with_a_log_line(
    tmp_path: Path, routing_server: ChimeProxyServer, voice: Any, started: list[Any]
) -> None:
    session = open_session(voice)
    edge = SipEdge(
        routing_server.url,
        tmp_path,
        extra_args=["--gateway-username", "edge-user"],
        env={"CHIMEPROXY_SIP_GATEWAY_PASSWORD": "not-the-password"},
    ).start()
    started.append(edge)
    gateway = start_gateway(tmp_path, edge, "uas_challenge_401.xml", keys={"callee": session.b})
    phone = run_phone(
        tmp_path, edge, "uac_reject.xml", service=session.proxy, keys={"caller": session.a}
    )
    assert_completed(edge, phone, gateway)

    assert status_line(received(phone.trace)).startswith("SIP/2.0 503")
    assert not any("Authenticate" in m for m in received(phone.trace))
    assert len([m for m in received(gateway.trace) if m.startswith("INVITE ")]) == 2
    assert "refused our credentials" in edge.log()
    assert edge.metric("chimeproxy_edge_calls_refused_total", reason="gateway-auth-failed") == 1
    assert ended_interaction(routing_server, session)["Outcome"] == "failed"


def test_a_dead_gateway_is_skipped_within_two_seconds(
    tmp_path: Path, routing_server: ChimeProxyServer, voice: Any, started: list[Any]
) -> None:
    session = open_session(voice)
    dead, live = free_udp_port(GATEWAYS), free_udp_port(GATEWAYS)
    edge = SipEdge(
        routing_server.url, tmp_path, gateways=[f"{GATEWAYS}:{dead}", f"{GATEWAYS}:{live}"]
    ).start()
    started.append(edge)
    gateway = start_gateway(
        tmp_path, edge, "uas_call.xml", port=live, address=GATEWAYS, keys={"callee": session.b},
        sets={"remote_bye": "1"},
    )  # fmt: skip
    phone = run_phone(
        tmp_path, edge, "uac_call.xml", service=session.proxy, keys={"caller": session.a},
        sets={"remote_bye": "0"},
    )  # fmt: skip
    assert_completed(edge, phone, gateway)

    sent = trace_times(phone.trace, "INVITE ")[0]
    reached = trace_times(gateway.trace, "INVITE ")[0]
    assert 0 <= (reached - sent).total_seconds() < 2.0
    assert edge.metric("chimeproxy_edge_gateway_failovers_total") >= 1
    assert edge.metric("chimeproxy_edge_gateway_up", gateway=f"sip:{GATEWAYS}:{dead}") == 0
    assert edge.metric("chimeproxy_edge_gateway_up", gateway=f"sip:{GATEWAYS}:{live}") == 1


@pytest.mark.parametrize("hangup", ["caller", "callee"])
def test_a_call_over_tcp_reaches_a_tcp_gateway(
    hangup: str,
    tmp_path: Path,
    routing_server: ChimeProxyServer,
    voice: Any,
    started: list[Any],
) -> None:
    session = open_session(voice)
    port, gateway_port = free_udp_port(), free_udp_port(GATEWAYS)
    edge = SipEdge(
        routing_server.url,
        tmp_path,
        port=port,
        listen=[f"udp:127.0.0.1:{port}", f"tcp:127.0.0.1:{port}"],
        gateways=[f"sip:{GATEWAYS}:{gateway_port};transport=tcp"],
    ).start()
    started.append(edge)
    gateway = start_gateway(
        tmp_path, edge, "uas_call.xml", port=gateway_port, address=GATEWAYS, transport="t1",
        keys={"callee": session.b}, sets={"remote_bye": "1" if hangup == "caller" else "0"},
    )  # fmt: skip
    phone = run_phone(
        tmp_path, edge, "uac_call.xml", transport="t1", service=session.proxy,
        keys={"caller": session.a}, sets={"remote_bye": "0" if hangup == "caller" else "1"},
    )  # fmt: skip
    assert_completed(edge, phone, gateway)

    invite = first(received(gateway.trace), "INVITE ")
    assert header(invite, "Via").startswith("SIP/2.0/TCP ")
    assert uri_user(invite.splitlines()[0]) == session.b
    bye_receiver = gateway if hangup == "caller" else phone
    assert first(received(bye_receiver.trace), "BYE ")
    assert_hidden(session.a, received(gateway.trace), "the callee")
    assert_hidden(session.b, received(phone.trace), "the caller")


TLS_GATEWAY_CONFIG = """#!KAMAILIO
# A stand-in for a carrier's TLS gateway (Debian's SIPp has no TLS): it terminates TLS and
# hands every request to a SIPp gateway over UDP, logging the transport each one came over.
debug=2
log_stderror=yes
children=2
tcp_children=2
auto_aliases=no
dns=no
rev_dns=no
enable_tls=yes
listen=tls:{host}:{tls_port}
listen=udp:{host}:{tls_port}
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "tls.so"
modparam("tls", "config", "{tls_config}")
request_route {{
    xlog("L_NOTICE", "tls-gateway: $rm over $pr\\n");
    if (is_method("OPTIONS") && $rU == $null) {{ sl_send_reply("200", "OK"); exit; }}
    if (has_totag()) {{ loose_route(); t_relay(); exit; }}
    record_route();
    $du = "sip:{host}:{sipp_port}";
    t_relay();
}}
"""


@pytest.mark.parametrize("hangup", ["caller", "callee"])
def test_a_call_over_udp_reaches_a_tls_gateway(
    hangup: str,
    tmp_path: Path,
    routing_server: ChimeProxyServer,
    voice: Any,
    started: list[Any],
) -> None:
    """The gateway is a Kamailio terminating TLS (verified by the edge against its CA) in
    front of a SIPp gateway: the nearest test Debian's tools allow, as SIPp has no TLS."""
    session = open_session(voice)
    tls_port, sipp_port = free_udp_port(GATEWAYS), free_udp_port(GATEWAYS)
    tls_config = tmp_path / "gateway-tls.cfg"
    tls_config.write_text(
        f"[server:default]\nmethod = TLSv1.2+\ncertificate = {TLS_CERT}\n"
        f"private_key = {TLS_KEY}\nverify_certificate = no\nrequire_certificate = no\n"
        "[client:default]\nmethod = TLSv1.2+\nverify_certificate = no\n"
    )
    config = tmp_path / "gateway.cfg"
    config.write_text(
        TLS_GATEWAY_CONFIG.format(
            host=GATEWAYS, tls_port=tls_port, sipp_port=sipp_port, tls_config=tls_config
        )
    )
    log = (tmp_path / "tls-gateway.log").open("wb")
    stand_in = subprocess.Popen(
        [require_tool("kamailio"), "-f", str(config), "-DD", "-E", "-P", str(tmp_path / "gw.pid"),
         "-Y", str(tmp_path), "-w", str(tmp_path)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    started.append(stand_in)
    edge = SipEdge(
        routing_server.url,
        tmp_path,
        gateways=[f"sip:{GATEWAYS}:{tls_port};transport=tls"],
        extra_args=["--tls-cert", str(TLS_CERT), "--tls-key", str(TLS_KEY),
                    "--tls-ca", str(TLS_CERT)],
    ).start()  # fmt: skip
    started.append(edge)
    gateway = start_gateway(
        tmp_path, edge, "uas_call.xml", port=sipp_port, address=GATEWAYS,
        keys={"callee": session.b}, sets={"remote_bye": "1" if hangup == "caller" else "0"},
    )  # fmt: skip
    wait_for_tls(GATEWAYS, tls_port, stand_in, tmp_path / "tls-gateway.log")
    phone = run_phone(
        tmp_path, edge, "uac_call.xml", service=session.proxy, keys={"caller": session.a},
        sets={"remote_bye": "0" if hangup == "caller" else "1"},
    )  # fmt: skip
    assert_completed(edge, phone, gateway)

    stand_in_log = (tmp_path / "tls-gateway.log").read_text(errors="replace")
    assert "tls-gateway: INVITE over tls" in stand_in_log
    bye_over = "tls-gateway: BYE over tls"
    assert bye_over in stand_in_log if hangup == "caller" else True
    invite = first(received(gateway.trace), "INVITE ")
    assert uri_user(invite.splitlines()[0]) == session.b
    bye_receiver = gateway if hangup == "caller" else phone
    assert first(received(bye_receiver.trace), "BYE ")
    assert_hidden(session.a, received(gateway.trace), "the callee")
    assert ended_interaction(routing_server, session)["Outcome"] == "completed"


def wait_for_tls(
    host: str, port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 20.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the TLS gateway exited:\n{log.read_text(errors='replace')[-3000:]}")
        with socket.socket() as sock:
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    pytest.fail(f"the TLS gateway did not listen on {host}:{port}")


# Behind NAT.


def test_the_advertised_address_is_what_the_gateway_sees(
    tmp_path: Path, routing_server: ChimeProxyServer, voice: Any, started: list[Any]
) -> None:
    session = open_session(voice)
    bound = "127.0.0.5"
    port = free_udp_port(bound)
    edge = SipEdge(
        routing_server.url, tmp_path, port=port, host=bound,
        extra_args=["--advertise", "203.0.113.10"],
    ).start()  # fmt: skip
    started.append(edge)
    gateway = start_gateway(
        tmp_path, edge, "uas_call.xml", keys={"callee": session.b}, sets={"remote_bye": "0"}
    )
    phone = run_phone(
        tmp_path, edge, "uac_call.xml", service=session.proxy, keys={"caller": session.a},
        sets={"remote_bye": "1"},
    )  # fmt: skip
    assert_completed(edge, phone, gateway)

    gateway_got = received(gateway.trace)
    invite = first(gateway_got, "INVITE ")
    assert header(invite, "Via").startswith(f"SIP/2.0/UDP 203.0.113.10:{port}")
    assert f"203.0.113.10:{port}" in header(invite, "Record-Route")
    for message in gateway_got:
        assert bound not in message, message
    # The gateway's BYE, whose Route names the advertised address, is taken by the edge as
    # its own and reaches the caller.
    assert first(received(phone.trace), "BYE ")
