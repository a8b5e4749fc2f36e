"""The SIP edge end to end: `chimeproxy sip-edge` runs Kamailio in front of a real chimeproxy
server whose proxy sessions are made through boto3; SIPp plays the participants' phones (calling
the proxy number) and the operator's gateway (receiving what the edge relays), with a message
trace of everything each side received.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from chimeproxy.dataplane.edge import config as edge_config
from chimeproxy.dataplane.edge import kamailio as edge_kamailio
from chimeproxy.dataplane.edge.settings import EdgeSettings, HostPort, Listen, service_url
from chimeproxy.testing import ChimeProxyServer
from tests.conftest import database_url, make_client, require_tool
from tests.integration.helpers import proxy_connector

SIPP_SCENARIOS = Path(__file__).with_name("sipp")
ROUTE_SECRET = "edge-test-secret"
SIPP_TIMEOUT = 20  # seconds SIPp itself allows a scenario (-timeout)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def udp_port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def sip_ping(port: int, timeout: float = 0.5) -> bool:
    """An OPTIONS to the edge answered 200: Kamailio is up and routing."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(timeout)
        local = sock.getsockname()[1]
        tag = uuid.uuid4().hex
        request = (
            f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{tag}\r\n"
            f"From: <sip:ping@127.0.0.1:{local}>;tag={tag}\r\n"
            f"To: <sip:127.0.0.1:{port}>\r\n"
            f"Call-ID: {tag}@127.0.0.1\r\n"
            "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        sock.sendto(request.encode(), ("127.0.0.1", port))
        try:
            answer = sock.recv(65535).decode(errors="replace")
        except (TimeoutError, ConnectionRefusedError):
            return False
        return answer.startswith("SIP/2.0 200")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def chimeproxy_command() -> list[str]:
    """The installed `chimeproxy` command, as an operator runs it."""
    script = Path(sys.executable).with_name("chimeproxy")
    return [str(script)] if script.exists() else [sys.executable, "-m", "chimeproxy.cli"]


@dataclass
class SipEdge:
    """A `chimeproxy sip-edge` process with its own loopback ports."""

    service_url: str
    directory: Path
    port: int = field(default_factory=free_udp_port)
    gateway_port: int = field(default_factory=free_udp_port)
    secret: str = ROUTE_SECRET
    process: subprocess.Popen[bytes] | None = None

    @property
    def runtime_dir(self) -> Path:
        return self.directory / "run"

    @property
    def log_path(self) -> Path:
        return self.directory / "edge.log"

    def start(self, timeout: float = 30.0) -> SipEdge:
        command = [
            *chimeproxy_command(), "sip-edge",
            "--listen", f"udp:127.0.0.1:{self.port}",
            "--gateway", f"127.0.0.1:{self.gateway_port}",
            "--service-url", self.service_url,
            "--runtime-dir", str(self.runtime_dir),
            "--children", "2",
            # Generous for a loaded CI machine; production keeps the 2 s default.
            "--http-timeout", "10",
        ]  # fmt: skip
        # The secret travels in the environment, as the docs recommend.
        env = {**os.environ, "CHIMEPROXY_ROUTE_SECRET": self.secret}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"sip-edge exited at start:\n{self.log()}")
            if sip_ping(self.port):
                return
            time.sleep(0.1)
        raise RuntimeError(f"sip-edge did not answer OPTIONS in {timeout}s:\n{self.log()}")

    def kamailio_pid(self) -> int:
        return int((self.runtime_dir / "kamailio.pid").read_text().strip())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        # Should the command have been killed outright, its Kamailio would outlive it.
        with contextlib.suppress(OSError, ValueError):
            os.killpg(self.kamailio_pid(), signal.SIGKILL)
        return code


# SIPp: one run is one phone (or the gateway) for one call.


def sipp_command(
    scenario: str,
    trace: Path,
    *,
    port: int,
    remote: str | None = None,
    service: str | None = None,
    keys: dict[str, str] | None = None,
    sets: dict[str, str] | None = None,
    call_id_prefix: str | None = None,
) -> list[str]:
    command = [
        require_tool("sipp"), "-sf", str(SIPP_SCENARIOS / scenario),
        "-i", "127.0.0.1", "-p", str(port), "-m", "1", "-nostdin",
        "-timeout", f"{SIPP_TIMEOUT}s", "-timeout_error", "-recv_timeout", "15000",
        "-trace_msg", "-message_file", str(trace),
    ]  # fmt: skip
    for name, value in (keys or {}).items():
        command += ["-key", name, value]
    for name, value in (sets or {}).items():
        command += ["-set", name, value]
    if service is not None:
        command += ["-s", service]
    if call_id_prefix is not None:
        # The caller's number in the Call-ID too, to prove the edge masks it.
        command += ["-cid_str", f"{call_id_prefix}-%u-%p@%s"]
    if remote is not None:
        command.append(remote)
    return command


@dataclass
class Sipp:
    """A running SIPp and the files it writes."""

    name: str
    process: subprocess.Popen[bytes]
    trace: Path
    screen: Path

    def wait(self, timeout: float = SIPP_TIMEOUT + 15) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return -1

    def report(self) -> str:
        screen = self.screen.read_text(errors="replace")[-3000:] if self.screen.exists() else ""
        trace = self.trace.read_text(errors="replace")[-6000:] if self.trace.exists() else ""
        return f"--- {self.name} screen:\n{screen}\n--- {self.name} trace:\n{trace}"


def start_sipp(directory: Path, name: str, scenario: str, **options: Any) -> Sipp:
    trace, screen = directory / f"{name}.trace", directory / f"{name}.screen"
    with screen.open("wb") as out:
        process = subprocess.Popen(
            sipp_command(scenario, trace, **options),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=directory,
        )
    return Sipp(name, process, trace, screen)


def start_gateway(directory: Path, edge: SipEdge, scenario: str, **options: Any) -> Sipp:
    """SIPp as the operator's gateway on the edge's --gateway port, once it listens."""
    gateway = start_sipp(directory, "gateway", scenario, port=edge.gateway_port, **options)
    deadline = time.monotonic() + 10
    while not udp_port_taken(edge.gateway_port):
        if gateway.process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the gateway SIPp did not start\n{gateway.report()}")
        time.sleep(0.05)
    return gateway


def run_phone(directory: Path, edge: SipEdge, scenario: str, **options: Any) -> Sipp:
    phone = start_sipp(
        directory, "phone", scenario, port=free_udp_port(), remote=f"127.0.0.1:{edge.port}",
        **options,
    )  # fmt: skip
    phone.wait()
    return phone


def assert_completed(edge: SipEdge, *runs: Sipp) -> None:
    codes = {run.name: run.wait() for run in runs}
    if any(codes.values()):
        details = "\n".join(run.report() for run in runs)
        pytest.fail(f"SIPp exit codes {codes}\n{details}\n--- edge log:\n{edge.log()[-6000:]}")


# Reading the traces.


def received(trace: Path) -> list[str]:
    """The SIP messages one SIPp received, in order."""
    text = trace.read_text(errors="replace") if trace.exists() else ""
    messages = []
    for block in re.split(r"^-{20,}.*$", text, flags=re.MULTILINE):
        head, _, message = block.strip("\n").partition("\n")
        if "message received" in head:
            messages.append(message.strip("\n"))
    return messages


def first(messages: list[str], start: str) -> str:
    found = [m for m in messages if m.startswith(start)]
    assert found, f"no message starting {start!r} among:\n" + "\n\n".join(messages)
    return found[0]


def header(message: str, name: str) -> str:
    for line in message.splitlines()[1:]:
        if not line.strip():
            break
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    raise AssertionError(f"no {name} header in:\n{message}")


def uri_user(text: str) -> str:
    match = re.search(r"sips?:([^@;>\s]+)@", text)
    assert match, f"no user part in {text!r}"
    return match[1]


def status_line(messages: list[str]) -> str:
    """The final answer among received replies."""
    finals = [m.splitlines()[0] for m in messages if re.match(r"SIP/2\.0 [2-6]\d\d", m)]
    assert finals, "no final answer received:\n" + "\n\n".join(messages)
    return finals[-1]


def forms_of(number: str) -> list[str]:
    """The ways a NANP number can be written: E.164, without +, national, punctuated."""
    digits = number.lstrip("+")
    national = digits[1:]
    area, exchange, line = national[:3], national[3:6], national[6:]
    return [
        number, digits, national, f"%2B{digits}",
        f"({area}) {exchange}-{line}", f"{area}-{exchange}-{line}", f"{area}.{exchange}.{line}",
        f"{area} {exchange} {line}",
    ]  # fmt: skip


def assert_hidden(number: str, messages: list[str], who: str) -> None:
    assert messages, f"{who} received nothing: the scan would prove nothing"
    for message in messages:
        for form in forms_of(number):
            assert form not in message, f"{who} received {form!r} in:\n{message}"


# The world: a real server, sessions through boto3, and the edge.

_numbers = itertools.count(10)


@dataclass
class Session:
    connector_id: str
    session_id: str
    proxy: str
    a: str
    b: str


def participants() -> tuple[str, str]:
    n = next(_numbers)
    return f"+120655501{n:02d}", f"+141555501{n:02d}"


def open_session(client: Any, capabilities: tuple[str, ...] = ("Voice",), **create: Any) -> Session:
    # Proxy numbers from area code 913, participants from 206 and 415: never confused.
    connector_id, _ = proxy_connector(client, pool=1, AreaCode="913")
    a, b = participants()
    session = client.create_proxy_session(
        VoiceConnectorId=connector_id,
        ParticipantPhoneNumbers=[a, b],
        Capabilities=list(capabilities),
        **create,
    )["ProxySession"]
    proxy = session["Participants"][0]["ProxyPhoneNumber"]
    return Session(connector_id, session["ProxySessionId"], proxy, a, b)


def interactions(server: ChimeProxyServer, connector_id: str, path: str = "") -> list[Any]:
    answer = httpx.get(
        f"{server.url}/_chimeproxy/voice-connectors/{connector_id}{path}/interactions"
        "?out-of-session=" + ("false" if path else "true"),
        timeout=10,
    )
    answer.raise_for_status()
    return answer.json()["Interactions"]


def ended_interaction(server: ChimeProxyServer, session: Session) -> dict[str, Any]:
    """The session's interaction once the edge has reported how it ended."""
    path = f"/proxy-sessions/{session.session_id}"
    deadline = time.monotonic() + 10
    while True:
        found = interactions(server, session.connector_id, path)
        if found and found[-1]["Outcome"] is not None:
            return found[-1]
        if time.monotonic() > deadline:
            pytest.fail(f"no ended interaction for the session: {found}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def routing_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChimeProxyServer]:
    require_tool("kamailio")
    require_tool("sipp")
    directory = tmp_path_factory.mktemp("routing")
    running = ChimeProxyServer(
        database=database_url(directory),
        extra_args=["--clock-control"],
        env={"CHIMEPROXY_ROUTE_SECRET": ROUTE_SECRET},
        log_path=directory / "server.log",
    ).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def voice(routing_server: ChimeProxyServer) -> Any:
    return make_client(routing_server.url)


@pytest.fixture(scope="module")
def edge(
    routing_server: ChimeProxyServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SipEdge]:
    running = SipEdge(routing_server.url, tmp_path_factory.mktemp("edge")).start()
    yield running
    running.stop()


def place_call(
    tmp_path: Path, edge: SipEdge, caller: str, callee: str, proxy: str, hangup: str
) -> tuple[list[str], list[str]]:
    """caller -> proxy through the edge, answered at the gateway; (caller got, callee got)."""
    gateway = start_gateway(
        tmp_path, edge, "uas_call.xml",
        keys={"callee": callee}, sets={"remote_bye": "1" if hangup == "caller" else "0"},
    )  # fmt: skip
    phone = run_phone(
        tmp_path, edge, "uac_call.xml", service=proxy, keys={"caller": caller},
        sets={"remote_bye": "0" if hangup == "caller" else "1"}, call_id_prefix=caller,
    )  # fmt: skip
    assert_completed(edge, phone, gateway)
    return received(phone.trace), received(gateway.trace)


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


def edge_settings(**overrides: Any) -> EdgeSettings:
    values: dict[str, Any] = {
        "listen": Listen.parse("udp:127.0.0.1:5080"),
        "gateway": HostPort.parse("192.0.2.10:5060"),
        "service_url": service_url("http://127.0.0.1:8089/"),
        "route_secret": "s3cret-value",
        "mask_key": "mask-key-1",
    } | overrides
    return EdgeSettings(**values)


def test_the_template_is_rendered_with_every_setting() -> None:
    config = edge_config.render(edge_settings())
    assert "{{" not in config
    assert "listen=udp:127.0.0.1:5080" in config
    assert '$du = "sip:192.0.2.10:5060";' in config
    assert '"http://127.0.0.1:8089/_chimeproxy/route"' in config
    assert "X-Chimeproxy-Route-Secret: s3cret-value" in config
    assert 'modparam("topoh", "mask_key", "mask-key-1")' in config
    assert "disable_tcp=yes" in config
    without_secret = edge_config.render(edge_settings(route_secret=None))
    assert "X-Chimeproxy-Route-Secret" not in without_secret


def test_the_rendered_configuration_passes_kamailio_check(tmp_path: Path) -> None:
    kamailio = edge_kamailio.find_kamailio(require_tool("kamailio"))
    path = edge_config.write_config(edge_settings(), tmp_path)
    assert path.stat().st_mode & 0o777 == 0o600  # it holds the route secret
    edge_kamailio.validate(kamailio, path)


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
