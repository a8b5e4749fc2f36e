"""Calls and messages through the edge that behave correctly: a slow routing service holds
nothing up, sessions end their calls, a Kamailio killed mid-call loses nothing, every number is
read the way carriers write it, and SIP MESSAGE follows the SMS rules (keywords, opt-outs).
Real Kamailio, rtpengine and SIPp on loopback (127.0.0.1 the trunk and the gateway)."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import statistics
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chimeproxy.testing import ChimeProxyServer
from tests.conftest import database_url, make_client
from tests.integration.helpers import wait_until
from tests.integration.sip import (
    ROUTE_SECRET,
    Session,
    SipEdge,
    SlowRoutingService,
    assert_completed,
    assert_hidden,
    ended_interaction,
    first,
    header,
    interactions,
    open_session,
    received,
    run_phone,
    sip_ping,
    start_gateway,
    start_phone,
    status_line,
    trace_times,
    uri_user,
)


@pytest.fixture
def edge(tmp_path: Path, routing_server: ChimeProxyServer) -> Iterator[SipEdge]:
    running = SipEdge(routing_server.url, tmp_path).start()
    yield running
    running.stop()


def session_status(voice: Any, session: Session) -> str:
    return voice.get_proxy_session(
        VoiceConnectorId=session.connector_id, ProxySessionId=session.session_id
    )["ProxySession"]["Status"]


def answered(trace: Path, start: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(m.startswith(start) for m in received(trace)):
        assert time.monotonic() < deadline, f"no {start!r} in {trace}"
        time.sleep(0.05)


def established(tmp_path: Path, edge: SipEdge, session: Session) -> tuple[Any, Any]:
    """A call from A to B through the edge that neither side ends: both wait for a BYE."""
    gateway = start_gateway(
        tmp_path, edge, "uas_call.xml", keys={"callee": session.b}, sets={"remote_bye": "1"}
    )
    phone = start_phone(
        tmp_path, edge, "uac_call.xml", service=session.proxy, keys={"caller": session.a},
        sets={"remote_bye": "1"},
    )  # fmt: skip
    answered(phone.trace, "SIP/2.0 200")
    return phone, gateway


def caller_hangs_up_after(
    tmp_path: Path, edge: SipEdge, session: Session, milliseconds: int
) -> tuple[Any, Any]:
    """A call from A to B through the edge that the caller ends `milliseconds` after the
    answer (the gateway waits for its BYE)."""
    gateway = start_gateway(
        tmp_path, edge, "uas_call.xml", keys={"callee": session.b}, sets={"remote_bye": "1"}
    )
    phone = start_phone(
        tmp_path, edge, "uac_call.xml", service=session.proxy, keys={"caller": session.a},
        sets={"remote_bye": "0"}, extra=["-d", str(milliseconds)],
    )  # fmt: skip
    return phone, gateway


def options_round_trip(port: int) -> float:
    """Seconds an OPTIONS from the trunk waits for its 200."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        local = sock.getsockname()[1]
        tag = uuid.uuid4().hex
        request = (
            f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{tag}\r\n"
            f"From: <sip:probe@127.0.0.1:{local}>;tag={tag}\r\nTo: <sip:127.0.0.1:{port}>\r\n"
            f"Call-ID: {tag}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        started = time.monotonic()
        sock.sendto(request.encode(), ("127.0.0.1", port))
        answer = sock.recv(4096).decode()
        assert answer.startswith("SIP/2.0 200"), answer
        return time.monotonic() - started


def invite(port: int, caller: str, proxy: str, number: int) -> bytes:
    tag = uuid.uuid4().hex[:12]
    lines = [
        f"INVITE sip:{proxy}@127.0.0.1:{port} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{40000 + number};branch=z9hG4bK{tag}",
        f"From: <sip:{caller}@127.0.0.1>;tag={tag}",
        f"To: <sip:{proxy}@127.0.0.1>",
        f"Call-ID: burst-{number}-{tag}",
        "CSeq: 1 INVITE",
        f"Contact: <sip:{caller}@127.0.0.1:{40000 + number}>",
        "Max-Forwards: 70",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# A slow routing service.


def test_a_slow_routing_service_holds_up_no_call_in_progress(
    tmp_path: Path, routing_server: ChimeProxyServer, voice: Any
) -> None:
    slow = SlowRoutingService(routing_server.url)
    edge = SipEdge(slow.url, tmp_path).start()
    try:
        session = open_session(voice)
        # A call that its caller ends 3 s after it was answered...
        phone, gateway = caller_hangs_up_after(tmp_path, edge, session, 3000)
        answered(phone.trace, "SIP/2.0 200")
        # ...while 30 new calls wait for a routing service that now takes 1.5 s each.
        slow.delay = 1.5
        burst = open_session(voice)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for number in range(30):
                sock.sendto(
                    invite(edge.port, burst.a, burst.proxy, number), ("127.0.0.1", edge.port)
                )
        time.sleep(0.3)
        assert slow.routed < 30  # the routing questions are still out
        # OPTIONS and the call's BYE are answered without waiting for any routing answer (a
        # third of one routing delay: far above a loaded machine's scheduling noise, far below
        # what waiting behind the burst would take).
        unblocked = slow.delay / 3
        rounds = [options_round_trip(edge.port) for _ in range(5)]
        assert max(rounds) < unblocked, rounds
        assert statistics.median(rounds) < 0.1, rounds  # the figure, noise aside
        assert_completed(edge, phone, gateway)
        assert slow.routed < 30  # the BYE came while the burst was still being routed
        bye_sent = trace_times(phone.trace, "BYE ")[0]
        bye_answered = trace_times(phone.trace, "SIP/2.0 200")[-1]
        assert (bye_answered - bye_sent).total_seconds() < unblocked
    finally:
        edge.stop()
        slow.close()


def test_a_routing_answer_later_than_the_timeout_is_never_acted_on(
    tmp_path: Path, routing_server: ChimeProxyServer, voice: Any
) -> None:
    slow = SlowRoutingService(routing_server.url)
    slow.delay = 2.0
    edge = SipEdge(slow.url, tmp_path, extra_args=["--http-timeout", "1"]).start()
    try:
        session = open_session(voice)
        gateway = start_gateway(tmp_path, edge, "uas_call.xml", keys={"callee": session.b})
        phone = run_phone(
            tmp_path, edge, "uac_reject.xml", service=session.proxy, keys={"caller": session.a}
        )
        assert_completed(edge, phone)
        assert status_line(received(phone.trace)) == "SIP/2.0 503 Routing Service Timeout"
        assert edge.metric("chimeproxy_edge_calls_refused_total", reason="routing-timeout") == 1
        time.sleep(2.5)  # the late answer has come and gone
        gateway.process.terminate()
        gateway.wait()
        assert received(gateway.trace) == []  # it was never relayed
        # The service had recorded the call: it reads as failed, not open forever.
        assert ended_interaction(routing_server, session)["Outcome"] == "failed"
    finally:
        edge.stop()
        slow.close()


def test_a_cancel_while_the_routing_service_answers_is_recorded_cancelled(
    tmp_path: Path, routing_server: ChimeProxyServer, voice: Any
) -> None:
    slow = SlowRoutingService(routing_server.url)
    slow.delay = 1.5
    edge = SipEdge(slow.url, tmp_path).start()
    try:
        session = open_session(voice)
        phone = run_phone(
            tmp_path, edge, "uac_cancel_early.xml", service=session.proxy,
            keys={"caller": session.a},
        )  # fmt: skip
        assert_completed(edge, phone)
        assert first(received(phone.trace), "SIP/2.0 487")
        assert ended_interaction(routing_server, session)["Outcome"] == "cancelled"
    finally:
        edge.stop()
        slow.close()


# Sessions end their calls.


def assert_both_got_bye(edge: SipEdge, phone: Any, gateway: Any) -> None:
    assert_completed(edge, phone, gateway)
    assert first(received(phone.trace), "BYE ")
    assert first(received(gateway.trace), "BYE ")


def close_session(
    closing: str, voice: Any, routing_server: ChimeProxyServer, session: Session
) -> None:
    """End a 60-minute session: by its expiry, by an update that closes it, or by deleting it."""
    if closing == "expiry":
        routing_server.advance(3601)
    elif closing == "update":
        routing_server.advance(120)
        voice.update_proxy_session(
            VoiceConnectorId=session.connector_id,
            ProxySessionId=session.session_id,
            Capabilities=["Voice"],
            ExpiryMinutes=1,
        )
    else:
        voice.delete_proxy_session(
            VoiceConnectorId=session.connector_id, ProxySessionId=session.session_id
        )


@pytest.mark.parametrize("closing", ["expiry", "update", "delete"])
def test_a_call_ends_when_its_session_closes(
    closing: str,
    tmp_path: Path,
    edge: SipEdge,
    voice: Any,
    routing_server: ChimeProxyServer,
) -> None:
    session = open_session(voice, ExpiryMinutes=60)
    phone, gateway = established(tmp_path, edge, session)
    time.sleep(1.5)  # a call that has lasted a little
    close_session(closing, voice, routing_server, session)
    closed = time.monotonic()
    assert_both_got_bye(edge, phone, gateway)
    assert time.monotonic() - closed < 5
    assert edge.metric("chimeproxy_edge_calls_ended_total") == 1
    if closing != "delete":  # a deleted session's interactions go with it
        interaction = ended_interaction(routing_server, session)
        assert interaction["Outcome"] == "completed"
        assert interaction["DurationSeconds"] >= 1


@pytest.mark.parametrize(
    ("closing", "prack"), [("expiry", False), ("delete", False), ("expiry", True)]
)
def test_a_call_still_ringing_is_cancelled_when_its_session_closes(
    closing: str,
    prack: bool,
    tmp_path: Path,
    edge: SipEdge,
    voice: Any,
    routing_server: ChimeProxyServer,
) -> None:
    """Not left to ring until answered and then hung up: the callee gets a CANCEL, the
    caller the callee's 487, and the call is recorded cancelled. With `prack` the 180 is
    reliable and PRACKed, so the dialog's CSeq is no longer the INVITE's that is cancelled."""
    session = open_session(voice, ExpiryMinutes=60)
    gateway = start_gateway(
        tmp_path, edge, "uas_ring_prack.xml" if prack else "uas_ring.xml",
        keys={"callee": session.b},
    )  # fmt: skip
    phone = start_phone(
        tmp_path, edge, "uac_ring_prack_until_ended.xml" if prack else "uac_ring_until_ended.xml",
        service=session.proxy, keys={"caller": session.a},
    )  # fmt: skip
    answered(phone.trace, "SIP/2.0 180")
    if prack:
        answered(gateway.trace, "PRACK ")
    time.sleep(1.5)  # rung for more than one of the enforcer's passes: nothing ends it early
    assert not any(m.startswith("CANCEL ") for m in received(gateway.trace))
    close_session(closing, voice, routing_server, session)
    closed = time.monotonic()
    assert_completed(edge, phone, gateway)
    assert time.monotonic() - closed < 5
    gateway_got, phone_got = received(gateway.trace), received(phone.trace)
    assert first(gateway_got, "CANCEL ")
    assert status_line(phone_got).startswith("SIP/2.0 487")
    # No answer and no BYE (the only 200 a prack run sees is the PRACK's).
    assert not any(m.startswith("BYE ") for m in phone_got + gateway_got)
    assert [m for m in phone_got if m.startswith("SIP/2.0 200")] == (
        [m for m in phone_got if m.startswith("SIP/2.0 200") and "PRACK" in header(m, "CSeq")]
    )
    assert_hidden(session.a, gateway_got, "the callee")
    assert_hidden(session.b, phone_got, "the caller")
    assert edge.metric("chimeproxy_edge_calls_ended_total") == 1
    if closing != "delete":  # a deleted session's interactions go with it
        assert ended_interaction(routing_server, session)["Outcome"] == "cancelled"


def test_a_call_ends_at_its_maximum_length(
    tmp_path: Path, voice: Any, routing_server: ChimeProxyServer
) -> None:
    """`--max-call-minutes`: here the edge ends the call itself (the routing answer's
    max_duration_seconds is the dialog's timeout), with the routing service gone."""
    server = ChimeProxyServer(
        database=database_url(tmp_path),
        extra_args=["--max-call-minutes", "1"],
        env={"CHIMEPROXY_ROUTE_SECRET": ROUTE_SECRET},
        log_path=tmp_path / "server.log",
    ).start()
    edge = SipEdge(server.url, tmp_path).start()
    try:
        client = make_client(server.url)
        session = open_session(client)
        answer = httpx.post(
            f"{server.url}/_chimeproxy/route",
            json={"caller": session.a, "called": session.proxy, "kind": "voice", "media": "rtp"},
            headers={"X-Chimeproxy-Route-Secret": ROUTE_SECRET},
            timeout=10,
        ).json()
        assert answer["max_duration_seconds"] == 60
    finally:
        edge.stop()
        server.stop()


# Restarts and outages lose nothing.


@pytest.mark.parametrize("hangup", ["caller", "callee"])
def test_a_call_survives_kamailio_killed_mid_call(
    hangup: str,
    tmp_path: Path,
    edge: SipEdge,
    voice: Any,
    routing_server: ChimeProxyServer,
) -> None:
    session = open_session(voice)
    caller_hangs_up = hangup == "caller"
    gateway = start_gateway(
        tmp_path, edge, "uas_call.xml", keys={"callee": session.b},
        sets={"remote_bye": "1" if caller_hangs_up else "0"}, extra=["-d", "9000"],
    )  # fmt: skip
    phone = start_phone(
        tmp_path, edge, "uac_call.xml", service=session.proxy, keys={"caller": session.a},
        sets={"remote_bye": "0" if caller_hangs_up else "1"}, extra=["-d", "9000"],
    )  # fmt: skip
    answered(phone.trace, "SIP/2.0 200")
    time.sleep(2)  # the call's dialog is on disk (written every second)
    killed = edge.kamailio_pid()
    os.kill(killed, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        try:
            pid = edge.kamailio_pid()
        except (OSError, ValueError):
            pid = killed
        if pid != killed and sip_ping(edge.port):
            break
        assert time.monotonic() < deadline, edge.log()[-4000:]
        time.sleep(0.1)
    # The hang-up, sent after the restart, reaches the other side, rewritten.
    assert_completed(edge, phone, gateway)
    receiver, sender = (gateway, session.a) if caller_hangs_up else (phone, session.b)
    assert_hidden(sender, [first(received(receiver.trace), "BYE ")], "the other side")
    interaction = ended_interaction(routing_server, session)
    assert interaction["Outcome"] == "completed"
    assert interaction["DurationSeconds"] >= 8


def test_an_end_reported_while_the_server_is_down_is_delivered_when_it_returns(
    tmp_path: Path,
) -> None:
    database = database_url(tmp_path)
    server = ChimeProxyServer(
        database=database, env={"CHIMEPROXY_ROUTE_SECRET": ROUTE_SECRET},
        log_path=tmp_path / "server.log",
    ).start()  # fmt: skip
    edge = SipEdge(server.url, tmp_path).start()
    try:
        client = make_client(server.url)
        session = open_session(client)
        phone, gateway = caller_hangs_up_after(tmp_path, edge, session, 4000)
        answered(phone.trace, "SIP/2.0 200")
        server.stop()  # the routing service is down when the call ends
        assert_completed(edge, phone, gateway)
        time.sleep(1)
        assert edge.metric("chimeproxy_edge_reports_pending") == 1
        server.start()  # back, same database and port
        interaction = ended_interaction(server, session)
        assert interaction["Outcome"] == "completed"
        assert interaction["DurationSeconds"] >= 3
        assert edge.metric("chimeproxy_edge_reports_pending") == 0
    finally:
        edge.stop()
        server.stop()


def test_an_end_kamailio_could_not_queue_is_delivered_from_its_log_line(
    tmp_path: Path, edge: SipEdge, voice: Any, routing_server: ChimeProxyServer
) -> None:
    """The report queue's file is locked past Kamailio's busy timeout (3 s) when the call
    ends: its insert fails, and the report is delivered from the line Kamailio logs."""
    session = open_session(voice)
    phone, gateway = caller_hangs_up_after(tmp_path, edge, session, 2000)
    answered(phone.trace, "SIP/2.0 200")
    locker = sqlite3.connect(edge.runtime_dir / "reports.db", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # WAL: writers wait, and give up after their timeout
    try:
        assert_completed(edge, phone, gateway)
        interaction = ended_interaction(routing_server, session)  # while still locked
        assert interaction["Outcome"] == "completed"
        assert interaction["DurationSeconds"] >= 2
        assert "end report not queued" in edge.log()
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    wait_until(lambda: edge.metric("chimeproxy_edge_reports_pending") == 0, "nothing pending", 10)


# Numbers as carriers write them.

CALLER_FORMS = [
    ("+1{national}", "e164"),
    ("{national}", "national"),
    ("1{national}", "national with 1"),
    ("+1-{area}-{exchange}-{line}", "separators"),
    ("(1) {area} {exchange} {line}", "spaces and parentheses"),
    ("001{national}", "00 prefix"),
    ("0111{national}", "011 prefix"),
    ("tel:+1-{area}-{exchange}-{line}", "tel URI"),
    ("tel:{national};phone-context=+1", "phone-context"),
    ("sip:+1{national}@carrier.example;user=phone", "user=phone"),
]


def forms(number: str, pattern: str) -> str:
    national = number[2:]
    return pattern.format(
        national=national, area=national[:3], exchange=national[3:6], line=national[6:]
    )


def as_uri(text: str, host: str) -> str:
    return text if text.startswith(("sip:", "tel:")) else f"sip:{text}@{host}"


@pytest.mark.parametrize(("pattern", "form"), CALLER_FORMS, ids=[f for _, f in CALLER_FORMS])
def test_a_number_reads_the_same_at_the_edge_the_sms_webhook_and_route(
    pattern: str,
    form: str,
    tmp_path: Path,
    edge: SipEdge,
    voice: Any,
    routing_server: ChimeProxyServer,
) -> None:
    session = open_session(voice, ("Voice", "SMS"))
    caller, called = forms(session.a, pattern), forms(session.proxy, pattern)
    secret = {"X-Chimeproxy-Route-Secret": ROUTE_SECRET}
    # /route
    routed = httpx.post(
        f"{routing_server.url}/_chimeproxy/route",
        json={"caller": caller, "called": called, "kind": "voice", "media": "rtp"},
        headers=secret, timeout=10,
    ).json()  # fmt: skip
    assert (routed["action"], routed["target"]) == ("connect", session.b), routed
    # the SMS webhook
    relayed = httpx.post(
        f"{routing_server.url}/_chimeproxy/sms/inbound",
        json={"from": caller, "to": called, "body": f"hello ({form})"},
        headers=secret, timeout=10,
    ).json()  # fmt: skip
    assert relayed["action"] == "connect", relayed
    if " " in caller:
        return  # no SIP URI has spaces: that form comes from webhooks only
    # the edge: a MESSAGE from the caller so written, to the proxy number so written
    gateway = start_gateway(tmp_path, edge, "uas_message.xml", keys={"callee": session.b})
    phone = run_phone(
        tmp_path, edge, "uac_text.xml",
        keys={"from_uri": as_uri(caller, "127.0.0.1"),
              "to_uri": as_uri(called, f"127.0.0.1:{edge.port}"), "text": "see you"},
    )  # fmt: skip
    assert_completed(edge, phone, gateway)
    assert status_line(received(phone.trace)) == "SIP/2.0 200 OK"
    assert uri_user(first(received(gateway.trace), "MESSAGE ").splitlines()[0]) == session.b
    listed = interactions(
        routing_server, session.connector_id, f"/proxy-sessions/{session.session_id}"
    )
    assert [i["FromPhoneNumber"] for i in listed] == [session.a] * 3


def test_an_anonymous_caller_reaches_the_fallback_number(
    tmp_path: Path, edge: SipEdge, voice: Any, routing_server: ChimeProxyServer
) -> None:
    session = open_session(voice)
    fallback = "+18005550177"
    voice.put_voice_connector_proxy(
        VoiceConnectorId=session.connector_id,
        DefaultSessionExpiryMinutes=60,
        PhoneNumberPoolCountries=["US"],
        FallBackPhoneNumber=fallback,
    )
    gateway = start_gateway(tmp_path, edge, "uas_message.xml", keys={"callee": fallback})
    phone = run_phone(
        tmp_path, edge, "uac_text.xml",
        keys={"from_uri": "sip:anonymous@anonymous.invalid",
              "to_uri": f"sip:{session.proxy}@127.0.0.1:{edge.port}", "text": "who is this"},
    )  # fmt: skip
    assert_completed(edge, phone, gateway)
    assert uri_user(first(received(gateway.trace), "MESSAGE ").splitlines()[0]) == fallback
    contacts = interactions(routing_server, session.connector_id)
    assert (contacts[-1]["Action"], contacts[-1]["FromPhoneNumber"]) == ("fallback", "anonymous")


def test_the_api_refuses_participants_that_are_no_valid_number(voice: Any) -> None:
    session = open_session(voice)
    for number in ("3125550180", "+10005550180"):
        with pytest.raises(voice.exceptions.BadRequestException) as refused:
            voice.create_proxy_session(
                VoiceConnectorId=session.connector_id,
                ParticipantPhoneNumbers=[number, "+14155550199"],
                Capabilities=["Voice"],
            )
        error = refused.value.response
        assert error["Error"]["Code"] == "BadRequestException"
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
        shown = number if number.startswith("+") else f"+{number}"
        assert shown in error["Error"]["Message"]
        assert "ParticipantPhoneNumbers" in error["Error"]["Message"]


# Text messages by SIP follow the SMS rules.


def text(tmp_path: Path, edge: SipEdge, sender: str, proxy: str, words: str, name: str) -> str:
    phone = run_phone(
        tmp_path, edge, "uac_text.xml", name=name,
        keys={"from_uri": f"sip:{sender}@127.0.0.1",
              "to_uri": f"sip:{proxy}@127.0.0.1:{edge.port}", "text": words},
    )  # fmt: skip
    assert_completed(edge, phone)
    return status_line(received(phone.trace))


def test_stop_by_sip_message_opts_out_and_is_not_relayed(
    tmp_path: Path, edge: SipEdge, voice: Any, routing_server: ChimeProxyServer
) -> None:
    session = open_session(voice, ("SMS",))
    gateway = start_gateway(tmp_path, edge, "uas_message.xml", keys={"callee": session.b})
    # A texts STOP: taken, not relayed.
    assert text(tmp_path, edge, session.a, session.proxy, "Stop.", "stop") == "SIP/2.0 200 OK"
    # B's text to A is not delivered.
    refused = text(tmp_path, edge, session.b, session.proxy, "Are you there?", "to-a")
    assert refused.startswith("SIP/2.0 403")
    gateway.process.terminate()
    gateway.wait()
    assert received(gateway.trace) == []
    listed = interactions(
        routing_server, session.connector_id, f"/proxy-sessions/{session.session_id}"
    )
    assert [i["Outcome"] for i in listed] == ["opted-out", "recipient-opted-out"]
    # A relayed text reads "sent".
    gateway = start_gateway(tmp_path, edge, "uas_message.xml", keys={"callee": session.b})
    assert text(tmp_path, edge, session.b, session.proxy, "START", "start").startswith("SIP/2.0")
    assert text(tmp_path, edge, session.a, session.proxy, "Hi again", "again").endswith("200 OK")
    assert_completed(edge, gateway)
    last = ended_interaction(routing_server, session)
    assert (last["Outcome"], last["Kind"]) == ("sent", "sms")


def test_an_opt_out_through_the_sms_webhook_holds_for_sip_messages(
    tmp_path: Path, edge: SipEdge, voice: Any, routing_server: ChimeProxyServer
) -> None:
    session = open_session(voice, ("SMS",))
    answer = httpx.post(
        f"{routing_server.url}/_chimeproxy/sms/inbound",
        json={"from": session.a, "to": session.proxy, "body": "STOP"},
        headers={"X-Chimeproxy-Route-Secret": ROUTE_SECRET},
        timeout=10,
    ).json()
    assert answer["outcome"] == "opted-out"
    refused = text(tmp_path, edge, session.b, session.proxy, "Hello?", "to-a")
    assert refused.startswith("SIP/2.0 403")
    listed = interactions(
        routing_server, session.connector_id, f"/proxy-sessions/{session.session_id}"
    )
    assert listed[-1]["Outcome"] == "recipient-opted-out"


def test_a_provisional_reply_after_the_final_one_never_reaches_the_caller(
    tmp_path: Path, edge: SipEdge, voice: Any
) -> None:
    session = open_session(voice)
    gateway = start_gateway(
        tmp_path, edge, "uas_late_ringing.xml", keys={"callee": session.b},
        sets={"remote_bye": "1"},
    )  # fmt: skip
    phone = run_phone(
        tmp_path, edge, "uac_call.xml", service=session.proxy, keys={"caller": session.a},
        sets={"remote_bye": "0"},
    )  # fmt: skip
    assert_completed(edge, phone, gateway)
    replies = [m.splitlines()[0] for m in received(phone.trace) if m.startswith("SIP/2.0")]
    assert "SIP/2.0 180 Ringing" not in replies[replies.index("SIP/2.0 200 OK") :]
