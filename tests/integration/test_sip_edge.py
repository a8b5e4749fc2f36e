"""The SIP edge end to end: `chimeproxy sip-edge` runs Kamailio in front of a real chimeproxy
server whose proxy sessions are made through boto3; SIPp plays the participants' phones (calling
the proxy number) and the operator's gateway (receiving what the edge relays), with a message
trace of everything each side received.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chimeproxy.dataplane.edge import config as edge_config
from chimeproxy.dataplane.edge import kamailio as edge_kamailio
from chimeproxy.dataplane.edge.settings import (
    EdgeSettings,
    Gateway,
    HostPort,
    Listen,
)
from chimeproxy.testing import ChimeProxyServer
from tests.conftest import database_url, make_client, require_tool
from tests.integration.certificates import TLS_CERT, TLS_KEY
from tests.integration.sip import (
    ROUTE_SECRET,
    SipEdge,
    alive,
    assert_completed,
    assert_hidden,
    chimeproxy_command,
    ended_interaction,
    first,
    header,
    interactions,
    open_session,
    place_call,
    received,
    run_phone,
    sip_ping,
    start_gateway,
    status_line,
    udp_port_taken,
    uri_user,
)


@pytest.fixture(scope="module")
def edge(
    routing_server: ChimeProxyServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SipEdge]:
    running = SipEdge(routing_server.url, tmp_path_factory.mktemp("edge")).start()
    yield running
    running.stop()


# Calls that go through.


@pytest.mark.parametrize(
    ("direction", "hangup"),
    [("a-to-b", "caller"), ("a-to-b", "callee"), ("b-to-a", "caller"), ("b-to-a", "callee")],
)
def test_a_call_reaches_the_other_participant_from_the_proxy_number(
    tmp_path: Path,
    edge: SipEdge,
    voice: Any,
    routing_server: ChimeProxyServer,
    direction: str,
    hangup: str,
) -> None:
    session = open_session(voice)
    caller, callee = (session.a, session.b) if direction == "a-to-b" else (session.b, session.a)

    caller_got, callee_got = place_call(tmp_path, edge, caller, callee, session.proxy, hangup)

    invite = first(callee_got, "INVITE ")
    assert uri_user(invite.splitlines()[0]) == callee  # Request-URI: the other participant
    assert uri_user(header(invite, "From")) == session.proxy  # shown as coming from P
    assert uri_user(header(invite, "To")) == callee
    # The BYE crossed the edge from whichever side hung up, and was answered.
    bye_receiver = callee_got if hangup == "caller" else caller_got
    assert first(bye_receiver, "BYE ")
    # Nothing either side received shows the other's number, in any form.
    assert_hidden(caller, callee_got, "the callee")
    assert_hidden(callee, caller_got, "the caller")

    status = voice.get_proxy_session(
        VoiceConnectorId=session.connector_id, ProxySessionId=session.session_id
    )["ProxySession"]["Status"]
    assert status == "InProgress"
    interaction = ended_interaction(routing_server, session)
    assert interaction["Outcome"] == "completed"
    assert interaction["DurationSeconds"] is not None and interaction["DurationSeconds"] >= 0


def test_a_call_cancelled_while_ringing_ends_both_legs(
    tmp_path: Path, edge: SipEdge, voice: Any, routing_server: ChimeProxyServer
) -> None:
    session = open_session(voice)
    gateway = start_gateway(tmp_path, edge, "uas_ring.xml", keys={"callee": session.b})
    phone = run_phone(
        tmp_path, edge, "uac_cancel.xml", service=session.proxy, keys={"caller": session.a},
        call_id_prefix=session.a,
    )  # fmt: skip
    assert_completed(edge, phone, gateway)

    gateway_got = received(gateway.trace)
    assert first(gateway_got, "CANCEL ")
    assert status_line(received(phone.trace)).startswith("SIP/2.0 487")
    assert_hidden(session.a, gateway_got, "the callee")
    assert_hidden(session.b, received(phone.trace), "the caller")
    assert ended_interaction(routing_server, session)["Outcome"] == "cancelled"


def test_a_text_message_reaches_the_other_participant_from_the_proxy_number(
    tmp_path: Path, edge: SipEdge, voice: Any, routing_server: ChimeProxyServer
) -> None:
    session = open_session(voice, ("SMS",))
    gateway = start_gateway(tmp_path, edge, "uas_message.xml", keys={"callee": session.b})
    phone = run_phone(
        tmp_path, edge, "uac_message.xml", service=session.proxy, keys={"caller": session.a},
        call_id_prefix=session.a,
    )  # fmt: skip
    assert_completed(edge, phone, gateway)

    gateway_got = received(gateway.trace)
    message = first(gateway_got, "MESSAGE ")
    assert uri_user(message.splitlines()[0]) == session.b
    assert uri_user(header(message, "From")) == session.proxy
    assert "pickup point" in message  # the text itself is delivered
    assert status_line(received(phone.trace)) == "SIP/2.0 200 OK"
    assert_hidden(session.a, gateway_got, "the recipient")
    assert_hidden(session.b, received(phone.trace), "the sender")
    assert ended_interaction(routing_server, session)["Kind"] == "sms"


# Calls and messages that are refused.


def refused(tmp_path: Path, edge: SipEdge, caller: str, called: str, message: bool = False) -> str:
    """The status line the edge answered a call (or a MESSAGE) with; no gateway is listening."""
    phone = run_phone(
        tmp_path, edge, "uac_message.xml" if message else "uac_reject.xml", service=called,
        keys={"caller": caller},
    )  # fmt: skip
    assert_completed(edge, phone)
    return status_line(received(phone.trace))


def test_a_stranger_is_refused_with_403_and_the_reason(
    tmp_path: Path, edge: SipEdge, voice: Any, routing_server: ChimeProxyServer
) -> None:
    session = open_session(voice)
    line = refused(tmp_path, edge, "+13125550177", session.proxy)
    reason = interactions(routing_server, session.connector_id)[-1]["Reason"]
    assert line == f"SIP/2.0 403 {reason}"


def test_a_number_that_is_no_proxy_number_gets_404(tmp_path: Path, edge: SipEdge) -> None:
    assert refused(tmp_path, edge, "+13125550178", "+17855550199").startswith("SIP/2.0 404 ")


def test_a_closed_session_gets_480(
    tmp_path: Path, edge: SipEdge, voice: Any, routing_server: ChimeProxyServer
) -> None:
    session = open_session(voice, ExpiryMinutes=1)
    routing_server.advance(120)
    assert refused(tmp_path, edge, session.a, session.proxy).startswith("SIP/2.0 480 ")


def test_out_of_session_calls_reach_the_fallback_number_from_the_proxy_number(
    tmp_path: Path, edge: SipEdge, voice: Any
) -> None:
    session = open_session(voice)
    fallback = "+18005550123"
    voice.put_voice_connector_proxy(
        VoiceConnectorId=session.connector_id,
        DefaultSessionExpiryMinutes=60,
        PhoneNumberPoolCountries=["US"],
        FallBackPhoneNumber=fallback,
    )
    _, fallback_got = place_call(
        tmp_path, edge, "+13125550179", fallback, session.proxy, hangup="caller"
    )
    invite = first(fallback_got, "INVITE ")
    assert uri_user(invite.splitlines()[0]) == fallback
    assert uri_user(header(invite, "From")) == session.proxy
    assert_hidden("+13125550179", fallback_got, "the fallback line")


def test_a_voice_only_session_refuses_text_messages(
    tmp_path: Path, edge: SipEdge, voice: Any
) -> None:
    session = open_session(voice, ("Voice",))
    line = refused(tmp_path, edge, session.a, session.proxy, message=True)
    assert line.startswith("SIP/2.0 488 ")


def test_the_edge_fails_closed_with_503_when_the_routing_service_is_down(
    tmp_path: Path,
) -> None:
    server = ChimeProxyServer(
        database=database_url(tmp_path),
        env={"CHIMEPROXY_ROUTE_SECRET": ROUTE_SECRET},
        log_path=tmp_path / "server.log",
    ).start()
    down_edge = SipEdge(server.url, tmp_path)
    try:
        client = make_client(server.url)
        session = open_session(client)
        down_edge.start()
        server.stop()
        line = refused(tmp_path, down_edge, session.a, session.proxy)
        assert line.startswith("SIP/2.0 503 ")
    finally:
        server.stop()
        down_edge.stop()


def test_an_edge_with_the_wrong_route_secret_fails_closed(
    tmp_path: Path, voice: Any, routing_server: ChimeProxyServer
) -> None:
    session = open_session(voice)
    wrong = SipEdge(routing_server.url, tmp_path, secret="not-the-secret").start()
    try:
        assert refused(tmp_path, wrong, session.a, session.proxy).startswith("SIP/2.0 503 ")
    finally:
        wrong.stop()
    # The session was never routed: the server refused the edge before deciding anything.
    assert (
        interactions(routing_server, session.connector_id, f"/proxy-sessions/{session.session_id}")
        == []
    )


# The supervisor.


def test_the_supervisor_restarts_a_killed_kamailio_and_stops_it_on_sigterm(
    tmp_path: Path, voice: Any, routing_server: ChimeProxyServer
) -> None:
    own_edge = SipEdge(routing_server.url, tmp_path / "edge")
    own_edge.directory.mkdir()
    try:
        own_edge.start()
        first_pid = own_edge.kamailio_pid()
        os.kill(first_pid, signal.SIGKILL)

        deadline = time.monotonic() + 30
        while True:
            try:
                new_pid = own_edge.kamailio_pid()
            except (OSError, ValueError):
                new_pid = first_pid
            if new_pid != first_pid and alive(new_pid) and sip_ping(own_edge.port):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"kamailio was not restarted:\n{own_edge.log()[-6000:]}")
            time.sleep(0.1)
        assert "restarting" in own_edge.log()

        # Calls work again through the new Kamailio.
        session = open_session(voice)
        place_call(tmp_path, own_edge, session.a, session.b, session.proxy, hangup="caller")

        assert own_edge.stop() == 0
        assert not alive(new_pid)
        assert not udp_port_taken(own_edge.port)
    finally:
        own_edge.stop()


# The configuration the command renders, and what it refuses.


def test_the_rendered_configuration_passes_kamailio_check(tmp_path: Path) -> None:
    kamailio = edge_kamailio.find_kamailio(require_tool("kamailio"))
    settings = EdgeSettings(
        listen=(Listen.parse("udp:127.0.0.1:5080"), Listen.parse("tls:127.0.0.1:5081")),
        gateway=(
            Gateway.parse("192.0.2.10:5060"),
            Gateway.parse("sip:gw@192.0.2.11;transport=tcp"),
        ),
        tls_cert=str(TLS_CERT),
        tls_key=str(TLS_KEY),
        gateway_username="edge",
        gateway_password="s3cret",
        route_secret="s3cret-value",
        advertise=HostPort.parse_optional_port("203.0.113.10"),
    )
    runtime = edge_config.Runtime(tmp_path, 5999, "mask-key-1", ("127.0.0.1/32",))
    edge_config.write(settings, runtime)
    for path in (runtime.config, runtime.dispatcher_list, runtime.tls_config):
        assert path.stat().st_mode & 0o777 == 0o600  # they hold the secrets
    edge_kamailio.validate(kamailio, runtime.config)


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--listen", "sctp:127.0.0.1:5060"),
        ("--listen", "udp:127.0.0.1"),
        ("--gateway", "gateway.example.com"),
        ("--gateway", "bad host:5060"),
        ("--service-url", "ftp://127.0.0.1:8089"),
        ("--service-url", "http://127.0.0.1:8089/$var(x)"),
        ("--route-secret", 'quote"d'),
        ("--route-secret", "$avp(x)"),
        ("--children", "0"),
        ("--listen", "udp:0.0.0.0:5080"),  # public, and no --trunk
        ("--trunk", "10.0.0.0/33"),
        ("--gateway", "sip:gw.example.com;transport=sctp"),
        ("--gateway-username", "a;b"),
        ("--advertise", "bad host"),
    ],
)
def test_the_command_refuses_settings_it_cannot_render_safely(flag: str, value: str) -> None:
    arguments = {
        "--listen": "udp:127.0.0.1:5080",
        "--gateway": "127.0.0.1:5090",
        "--service-url": "http://127.0.0.1:8089",
    } | {flag: value}
    command = [*chimeproxy_command(), "sip-edge"]
    for name, argument in arguments.items():
        command += [name, argument]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "chimeproxy sip-edge:" in result.stderr
    assert flag in result.stderr
    assert "Traceback" not in result.stderr
