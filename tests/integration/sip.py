"""The SIP test bench: `chimeproxy sip-edge` processes, SIPp runs playing phones and gateways on
loopback addresses (127.0.0.1 is the carrier's trunk, 127.0.0.2 a stranger, 127.0.0.3 the
gateways), the message traces each side wrote, and sessions made through boto3."""

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
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from chimeproxy.testing import ChimeProxyServer, stop_process
from tests.conftest import require_tool
from tests.integration.helpers import proxy_connector

SIPP_SCENARIOS = Path(__file__).with_name("sipp")
ROUTE_SECRET = "edge-test-secret"
SIPP_TIMEOUT = 20  # seconds SIPp itself allows a scenario (-timeout)
TRUNK = "127.0.0.1"  # the carrier's trunk: phones calling through the edge send from here
STRANGER = "127.0.0.2"  # an address outside the trunk
GATEWAYS = "127.0.0.3"  # where the operator's gateways listen


# The tests' SIP listeners (edges, phones, gateways) take ports above the usual ephemeral range
# (32768-60999), as the edge takes its control ports below it (dataplane/edge/command.py): a
# port picked inside that range could be taken by any outgoing connection or bind(0) before its
# listener binds it, and a gateway SIPp once found its port so taken. Each pytest-xdist worker
# has a block of its own. The media blocks (next_media_ports) lie below 52000, and
# test_sip_media.py's phones take their RTP ports at 61000 and 62000.
TEST_PORTS_LOW = 63000
TEST_PORTS_BLOCK = 300  # 8 workers' blocks end at 65399
_test_ports = itertools.count()


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on `host` (listeners of several transports share it),
    whose next port is free for TCP too (an edge adds its TLS listener there), from this
    worker's block."""
    base = TEST_PORTS_LOW + _xdist_worker() % 8 * TEST_PORTS_BLOCK
    for _ in range(TEST_PORTS_BLOCK):
        port = base + next(_test_ports) % (TEST_PORTS_BLOCK - 1)  # port + 1 stays in the block
        if not udp_port_taken(port, host) and all(
            tcp_port_free(host, candidate) for candidate in (port, port + 1)
        ):
            return port
    raise OSError(f"no free port on {host} in {base}-{base + TEST_PORTS_BLOCK - 1}")


def tcp_port_free(host: str, port: int) -> bool:
    with socket.socket() as tcp:
        try:
            tcp.bind((host, port))
        except OSError:
            return False
    return True


def _xdist_worker() -> int:
    """This pytest-xdist worker's number (0 without xdist)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    return int(worker) if worker.isdigit() else 0


_media_blocks = itertools.count()


def next_media_ports(size: int = 100) -> str:
    """A block of media ports no other edge of this test run uses (each pytest-xdist worker
    has its own range), so that concurrent edges' rtpengines and media filters never overlap."""
    base = 20000 + _xdist_worker() % 8 * 4000
    low = base + (next(_media_blocks) * size) % 4000
    return f"{low}-{low + size - 1}"


def free_tcp_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def udp_port_taken(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def sip_request(
    port: int,
    method: str = "OPTIONS",
    *,
    source: str = TRUNK,
    host: str = "127.0.0.1",
    headers: Sequence[str] = (),
    timeout: float = 0.5,
) -> str | None:
    """Send one request over UDP from `source`; the first answer's text, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(timeout)
        local = sock.getsockname()[1]
        tag = uuid.uuid4().hex
        lines = [
            f"{method} sip:{host}:{port} SIP/2.0",
            f"Via: SIP/2.0/UDP {source}:{local};branch=z9hG4bK{tag}",
            f"From: <sip:ping@{source}:{local}>;tag={tag}",
            f"To: <sip:{host}:{port}>",
            f"Call-ID: {tag}@{source}",
            f"CSeq: 1 {method}",
            "Max-Forwards: 70",
            *headers,
            "Content-Length: 0",
        ]
        sock.sendto(("\r\n".join(lines) + "\r\n\r\n").encode(), (host, port))
        try:
            return sock.recv(65535).decode(errors="replace")
        except (TimeoutError, ConnectionRefusedError):
            return None


def sip_ping(port: int, timeout: float = 0.5, host: str = "127.0.0.1", source: str = TRUNK) -> bool:
    """An OPTIONS to the edge (from the trunk) answered 200: Kamailio is up and routing."""
    answer = sip_request(port, host=host, source=source, timeout=timeout)
    return answer is not None and answer.startswith("SIP/2.0 200")


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
    """A `chimeproxy sip-edge` process with its own loopback ports: by default it takes calls
    over UDP on 127.0.0.1, trusts 127.0.0.1 as the trunk and sends calls to one gateway."""

    service_url: str
    directory: Path
    port: int = field(default_factory=free_udp_port)
    gateway_port: int = field(default_factory=free_udp_port)
    secret: str = ROUTE_SECRET
    host: str = "127.0.0.1"  # where phones reach it
    listen: list[str] | None = None  # default: udp:{host}:{port}
    gateways: list[str] | None = None  # default: 127.0.0.1:{gateway_port}
    trunk: list[str] = field(default_factory=lambda: [f"{TRUNK}/32"])
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    metrics_port: int = field(default_factory=free_tcp_port)
    media_ports: str = field(default_factory=lambda: next_media_ports())
    process: subprocess.Popen[bytes] | None = None

    @property
    def runtime_dir(self) -> Path:
        return self.directory / "run"

    @property
    def log_path(self) -> Path:
        return self.directory / "edge.log"

    @property
    def media_port_range(self) -> range:
        """The ports this edge's rtpengine relays from (other tests' edges use others)."""
        low, high = (int(port) for port in self.media_ports.split("-"))
        return range(low, high + 1)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    def command(self) -> list[str]:
        command = [*chimeproxy_command(), "sip-edge"]
        for listen in self.listen or [f"udp:{self.host}:{self.port}"]:
            command += ["--listen", listen]
        for gateway in self.gateways or [f"127.0.0.1:{self.gateway_port}"]:
            command += ["--gateway", gateway]
        for trunk in self.trunk:
            command += ["--trunk", trunk]
        return [
            *command,
            "--service-url", self.service_url,
            "--runtime-dir", str(self.runtime_dir),
            "--metrics-listen", f"127.0.0.1:{self.metrics_port}",
            "--media-ports", self.media_ports,
            "--children", "2",
            "--routing-workers", "8",
            # Generous for a loaded CI machine; production keeps the 2 s default.
            "--http-timeout", "10",
            *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout: float = 30.0) -> SipEdge:
        # The secret travels in the environment, as the docs recommend.
        env = {**os.environ, "CHIMEPROXY_ROUTE_SECRET": self.secret, **self.env}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        self.wait_ready(timeout)
        return self

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The edge's Prometheus samples by (name, sorted labels)."""
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(f"{self.metrics_url}/metrics", timeout=10).text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"sip-edge exited at start:\n{self.log()}")
            if sip_ping(self.port, host=self.host, source=self.trunk[0].split("/")[0]):
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
        code = stop_process(self.process, signal.SIGTERM, timeout)
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
    address: str = TRUNK,
    transport: str = "u1",
    remote: str | None = None,
    service: str | None = None,
    keys: dict[str, str] | None = None,
    sets: dict[str, str] | None = None,
    call_id_prefix: str | None = None,
    calls: int = 1,
    extra: Sequence[str] = (),
) -> list[str]:
    """One SIPp run of `scenario` bound to address:port (`transport`: u1 UDP, t1 TCP); it
    answers OPTIONS by itself (-aa), as a gateway answers the edge's probes."""
    command = [
        require_tool("sipp"), "-sf", str(SIPP_SCENARIOS / scenario),
        "-i", address, "-p", str(port), "-t", transport, "-m", str(calls), "-nostdin", "-aa",
        "-timeout", f"{SIPP_TIMEOUT}s", "-timeout_error", "-recv_timeout", "15000",
        "-trace_msg", "-message_file", str(trace), *extra,
    ]  # fmt: skip
    if "-d" not in extra:
        command += ["-d", "300"]  # how long a call is held before hanging up (<pause/>)
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
    trace.unlink(missing_ok=True)
    with screen.open("wb") as out:
        process = subprocess.Popen(
            sipp_command(scenario, trace, **options),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=directory,
        )
    return Sipp(name, process, trace, screen)


def start_gateway(
    directory: Path,
    edge: SipEdge,
    scenario: str,
    *,
    name: str = "gateway",
    port: int | None = None,
    address: str = "127.0.0.1",
    **options: Any,
) -> Sipp:
    """SIPp as an operator's gateway (by default on the edge's --gateway port), once it
    listens."""
    port = port or edge.gateway_port
    gateway = start_sipp(directory, name, scenario, port=port, address=address, **options)
    deadline = time.monotonic() + 10
    while not port_taken(port, address, options.get("transport", "u1")):
        if gateway.process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the {name} SIPp did not start\n{gateway.report()}")
        time.sleep(0.05)
    return gateway


def port_taken(port: int, address: str, transport: str) -> bool:
    if transport.startswith("u"):
        return udp_port_taken(port, address)
    with socket.socket() as sock:
        return sock.connect_ex((address, port)) == 0


def start_phone(
    directory: Path, edge: SipEdge, scenario: str, *, name: str = "phone", **options: Any
) -> Sipp:
    """SIPp as a phone calling through the edge (from the trunk unless `address` says)."""
    address = options.pop("address", TRUNK)
    return start_sipp(
        directory, name, scenario, port=free_udp_port(address), address=address,
        remote=options.pop("remote", f"{edge.host}:{edge.port}"), **options,
    )  # fmt: skip


def run_phone(directory: Path, edge: SipEdge, scenario: str, **options: Any) -> Sipp:
    phone = start_phone(directory, edge, scenario, **options)
    phone.wait()
    return phone


# SIPp's exit code for a fatal error of its own. SIPp 3.6.1 streaming RTP (rtp_stream) has
# exited with it after a run in which every call succeeded, writing no error (seen on a loaded
# machine): for such a run the calls' outcome is read from its final statistics instead.
SIPP_FATAL_EXIT = 255


def calls_succeeded(run: Sipp) -> tuple[int, int] | None:
    """(successful, failed) calls from the cumulative column of SIPp's final screen."""
    text = run.screen.read_text(errors="replace") if run.screen.exists() else ""
    found = {
        name: int(count)
        for name, count in re.findall(r"(Successful|Failed) call\s*\|[^|]*\|\s*(\d+)", text)
    }
    if "Successful" not in found or "Failed" not in found:
        return None
    return found["Successful"], found["Failed"]


def assert_completed(edge: SipEdge, *runs: Sipp, calls: int | None = None) -> None:
    """Every SIPp run ended with all its calls successful (`calls` of them, when given)."""
    codes = {run.name: run.wait() for run in runs}
    for run in runs:
        fatal = codes[run.name] == SIPP_FATAL_EXIT
        if fatal and calls is not None and calls_succeeded(run) == (calls, 0):
            codes[run.name] = 0
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


def trace_times(trace: Path, start: str) -> list[datetime]:
    """When a SIPp sent or received each message starting with `start`."""
    text = trace.read_text(errors="replace")
    found = []
    for block in re.split(r"^-{20,} ", text, flags=re.MULTILINE)[1:]:
        stamp, _, rest = block.partition("\n")
        message = rest.split("\n\n", 1)[1] if "\n\n" in rest else ""
        if message.lstrip("\n").startswith(start):
            found.append(datetime.strptime(stamp.strip(), "%Y-%m-%d %H:%M:%S.%f"))
    return found


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
    """A fresh pair, unique in the whole test run: the phones of tests running beside this one
    (other pytest-xdist workers) share the loopback addresses a capture sees, so a capture
    searched for this test's numbers must never find theirs."""
    n = next(_numbers) % 1000
    worker = _xdist_worker() % 10
    return f"+1206555{worker}{n:03d}", f"+1415555{worker}{n:03d}"


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


class SlowRoutingService:
    """An HTTP proxy in front of the routing service that makes `POST /_chimeproxy/route` take
    `delay` more seconds (everything else passes at once): a slow or stuck routing service, as
    the edge sees it."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.delay = 0.0
        self.routed = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/_chimeproxy/route":
                    time.sleep(proxy.delay)
                    proxy.routed += 1
                headers = {
                    name: value
                    for name, value in self.headers.items()
                    if name.lower() not in ("host", "content-length", "connection")
                }
                request = urllib.request.Request(
                    proxy.target + self.path, data=body, headers=headers, method="POST"
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        status, content = answer.status, answer.read()
                except urllib.error.HTTPError as exc:
                    status, content = exc.code, exc.read()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)
                except OSError:
                    pass  # the edge gave up waiting

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
