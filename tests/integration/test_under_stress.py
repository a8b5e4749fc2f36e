"""Under stress the server tells the truth (issue #16), with the fault injected against the real
server process: health answers at once during a burst, a full disk and a read-only database
show as `degraded` with their cause and mend by themselves, idle connections are shed under the
common 1,024 open-files limit while health keeps answering, and killing the main process of
`--workers 3` leaves nothing serving its port."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest

from chimeproxy.testing import ChimeProxyServer
from chimeproxy.workers import METRICS_PREFIX, Owner, current_owner, process_started
from tests.conftest import BACKEND, database_url
from tests.integration.faults import (
    HealthWatch,
    burst,
    children_of,
    fill,
    health_of,
    json_request,
    port_open,
    remount,
    running,
    running_process,
    tmpfs,
)
from tests.integration.helpers import assert_refused, wait_until

sqlite_only = pytest.mark.skipif(
    BACKEND != "sqlite",
    reason="SQLite only: the database file sits on a tmpfs of the test's own (SQLite pass)",
)
BURST = 2_000
FILE_LIMIT = ["prlimit", "--nofile=1024:1024", "--"]


def log_lines(server: ChimeProxyServer) -> list[dict]:
    return [orjson.loads(line) for line in server.log().splitlines() if line.startswith("{")]


def failure_lines(server: ChimeProxyServer, cause: str) -> list[dict]:
    return [
        line
        for line in log_lines(server)
        if line.get("logger") == "chimeproxy.database" and line.get("cause") == cause
    ]


def create_connector(url: str) -> httpx.Response:
    return httpx.post(
        f"{url}/voice-connectors", json={"Name": "stress", "RequireEncryption": False}, timeout=30
    )


# Health during a burst.


def test_health_answers_within_a_second_through_a_burst_of_2000_requests(tmp_path: Path) -> None:
    server = ChimeProxyServer(database=database_url(tmp_path), log_path=tmp_path / "server.log")
    with running(server):
        connector = create_connector(server.url).json()["VoiceConnector"]["VoiceConnectorId"]
        requests = [
            json_request("POST", "/voice-connectors", {"Name": f"b{i}", "RequireEncryption": False})
            if i % 2
            else json_request("GET", f"/voice-connectors/{connector}")
            for i in range(BURST)
        ]
        with HealthWatch(server.port) as watch:
            time.sleep(0.2)  # a few answers before the burst, to compare with
            started = time.monotonic()
            statuses = burst(server.port, requests)
            ended = time.monotonic()
        during = [
            a for a in watch.answers if not isinstance(a, str) and started < a.asked_at < ended
        ]
        assert len(during) >= 5, f"{len(during)} health checks during the burst"
        assert watch.problems(limit_s=1.0) == []
        assert sorted(set(map(str, statuses))) == ["200", "201"], [
            s for s in statuses if s not in (200, 201)
        ][:5]


# A full disk and a read-only database (SQLite on a tmpfs).


@sqlite_only
def test_a_full_disk_shows_as_degraded_with_its_cause_and_writes_resume_when_freed(
    tmp_path: Path,
) -> None:
    with tmpfs(tmp_path / "disk", "4m") as disk:
        server = ChimeProxyServer(
            database=f"sqlite:///{disk / 'chimeproxy.db'}", log_path=tmp_path / "server.log"
        )
        with running(server):
            assert create_connector(server.url).status_code == 201
            filler = fill(disk)
            for _ in range(5_000):
                answer = create_connector(server.url)
                if answer.status_code != 201:
                    failed_at = time.monotonic()
                    break
            else:
                pytest.fail("the disk is full, yet 5,000 writes succeeded")
            assert_refused(answer, 503, "ServiceUnavailableException", "disk is full")
            wait_until(lambda: failure_lines(server, "disk_full") != [], "the cause is logged", 5.0)
            assert time.monotonic() - failed_at < 1.0, "the log had the cause within a second"
            line = failure_lines(server, "disk_full")[0]
            assert "database or disk is full" in line["message"], line

            health = health_of(server.port)
            assert (health.status, health.json()["status"]) == (200, "degraded"), health
            assert health.json()["cause"] == "disk_full"
            assert health_of(server.port, path="/_chimeproxy/ready").status == 503
            for _ in range(20):  # a few lines for an outage, not one per request
                assert create_connector(server.url).status_code == 503
            assert len(failure_lines(server, "disk_full")) == 1
            metrics = httpx.get(f"{server.url}/_chimeproxy/metrics").text
            assert 'chimeproxy_database_failures_total{cause="disk_full"} 0.0' not in metrics
            assert 'chimeproxy_database_failures_total{cause="disk_full"}' in metrics

            filler.unlink()
            # No client writes meanwhile: the health probe finds that writes succeed again.
            wait_until(
                lambda: health_of(server.port).json()["status"] == "ok", "health is ok", 10.0
            )
            assert health_of(server.port, path="/_chimeproxy/ready").status == 200
            assert create_connector(server.url).status_code == 201
            assert any("writes succeed again" in line["message"] for line in log_lines(server))


@sqlite_only
def test_a_read_only_database_shows_as_degraded_and_writes_resume_when_writable(
    tmp_path: Path,
) -> None:
    """The volume holding the database turns read-only (here a tmpfs remounted ro; a kernel
    does it to a file system after I/O errors) and the server restarts on it: reads are served,
    writes answer 503 and health says why, until the volume is writable again."""
    with tmpfs(tmp_path / "disk", "16m") as disk:
        database = f"sqlite:///{disk / 'chimeproxy.db'}"
        first = ChimeProxyServer(database=database, log_path=tmp_path / "first.log").start()
        connector = create_connector(first.url).json()["VoiceConnector"]["VoiceConnectorId"]
        # Killed, it leaves its WAL and shared-memory files, which SQLite needs to open a WAL
        # database on a read-only volume.
        first.stop(signal.SIGKILL)
        assert (disk / "chimeproxy.db-shm").exists()
        remount(disk, "ro")
        server = ChimeProxyServer(database=database, log_path=tmp_path / "server.log")
        with running(server):
            assert httpx.get(f"{server.url}/voice-connectors/{connector}").status_code == 200
            answer = create_connector(server.url)
            failed_at = time.monotonic()
            assert_refused(answer, 503, "ServiceUnavailableException", "read-only")
            wait_until(lambda: failure_lines(server, "read_only") != [], "the cause is logged", 5.0)
            assert time.monotonic() - failed_at < 1.0, "the log had the cause within a second"
            assert (
                "attempt to write a readonly database"
                in (failure_lines(server, "read_only")[0]["message"])
            )
            health = health_of(server.port).json()
            assert (health["status"], health["cause"]) == ("degraded", "read_only"), health
            ready = health_of(server.port, path="/_chimeproxy/ready")
            assert (ready.status, ready.json()["reason"]) == (503, "writes fail: read-only")

            remount(disk, "rw")
            wait_until(
                lambda: health_of(server.port).json()["status"] == "ok", "health is ok", 10.0
            )
            assert create_connector(server.url).status_code == 201


@sqlite_only
def test_a_database_that_cannot_be_opened_stops_the_start_with_one_line(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "1m") as disk:
        remount(disk, "ro")  # an empty read-only volume: the file cannot be created
        server = ChimeProxyServer(
            database=f"sqlite:///{disk / 'chimeproxy.db'}", log_path=tmp_path / "server.log"
        )
        with pytest.raises(RuntimeError, match="exited at start"):
            server.start()
    lines = [line for line in server.log().splitlines() if line.startswith("chimeproxy:")]
    assert lines == [
        f"chimeproxy: sqlite:///{disk}/chimeproxy.db: unavailable: unable to open database file"
    ]
    assert "Traceback" not in server.log() and "retry the request" not in server.log()


# Connections.


def test_idle_connections_are_shed_under_1024_open_files_and_health_keeps_answering(
    tmp_path: Path,
) -> None:
    server = ChimeProxyServer(
        database=database_url(tmp_path),
        extra_args=["--header-timeout", "2"],
        log_path=tmp_path / "server.log",
        launcher=FILE_LIMIT,
    )
    idle: list[socket.socket] = []
    with running(server):
        limits = next(line for line in log_lines(server) if line["message"] == "connection limits")
        assert limits["open_files"] == 1024 and limits["max_connections"] < 1024 - 64, limits
        try:
            with HealthWatch(server.port, interval=0.1, timeout=2.0) as watch:
                for _ in range(1_100):
                    idle.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))
                opened = time.monotonic()
                for sock in idle:  # each is closed by the server: end of stream, or reset
                    sock.settimeout(max(0.1, opened + 10 - time.monotonic()))
                    with contextlib.suppress(ConnectionResetError):
                        assert sock.recv(1) == b""
                shed_in = time.monotonic() - opened
            assert shed_in < 5.0, f"the idle connections took {shed_in:.1f} s to go"
            assert len(watch.answers) >= 10
            assert watch.problems(limit_s=1.0) == []
        finally:
            for sock in idle:
                sock.close()
        assert health_of(server.port).status == 200
        assert any("--header-timeout 2 s" in line["message"] for line in log_lines(server))


def test_connections_over_the_limit_get_503_but_health_and_readiness_answer(
    tmp_path: Path,
) -> None:
    server = ChimeProxyServer(
        database=database_url(tmp_path),
        extra_args=["--max-connections", "2"],
        log_path=tmp_path / "server.log",
    )
    with running(server):
        held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(2)]
        try:
            time.sleep(0.2)  # both accepted first
            refused = httpx.get(f"{server.url}/voice-connectors", timeout=10)
            assert_refused(refused, 503, "ServiceUnavailableException", "too many open connections")
            assert refused.headers["retry-after"] == "1"
            assert refused.headers["connection"] == "close"
            # Logged and counted like any other answer, under its operation.
            request_id = refused.headers["x-amzn-requestid"]

            def refusal_lines() -> list[dict]:
                return [e for e in log_lines(server) if e.get("request_id") == request_id]

            wait_until(lambda: bool(refusal_lines()), "the refusal's access line", 5.0)
            line = refusal_lines()[0]
            assert (line["operation"], line["status"]) == ("ListVoiceConnectors", 503)
            assert (line["error"], line["method"]) == ("ServiceUnavailableException", "GET")
            # Refused before its body: no 100 Continue, no waiting for a body that never comes.
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as upload:
                upload.sendall(
                    b"POST /voice-connectors HTTP/1.1\r\nHost: x\r\nContent-Length: 900000\r\n"
                    b"Content-Type: application/json\r\nExpect: 100-continue\r\n\r\n"
                )
                answer = upload.recv(65536)
            assert answer.startswith(b"HTTP/1.1 503 "), answer
            assert health_of(server.port).status == 200
            assert health_of(server.port, path="/_chimeproxy/ready").status == 200
        finally:
            for sock in held:
                sock.close()
        wait_until(
            lambda: httpx.get(f"{server.url}/voice-connectors").status_code == 200,
            "requests are served once the connections are gone",
            10.0,
        )
        metrics = httpx.get(f"{server.url}/_chimeproxy/metrics", timeout=10).text
        refusals = re.search(
            r'^chimeproxy_requests_total\{operation="ListVoiceConnectors",status="503"\} (\S+)$',
            metrics,
            re.MULTILINE,
        )
        assert refusals is not None and float(refusals.group(1)) >= 1


def test_a_connection_limit_beyond_the_open_files_limit_is_warned_about(tmp_path: Path) -> None:
    server = ChimeProxyServer(
        database=database_url(tmp_path),
        extra_args=["--max-connections", "5000"],
        log_path=tmp_path / "server.log",
        launcher=FILE_LIMIT,
    )
    with running(server):
        warnings = [line["message"] for line in log_lines(server) if line["level"] == "warning"]
    assert any(
        "open-files limit (1024) is below" in w and "--max-connections 5000" in w for w in warnings
    ), warnings


# Worker processes.


def test_killing_the_main_process_of_three_workers_frees_the_port_within_5_s(
    tmp_path: Path,
) -> None:
    database = database_url(tmp_path)
    server = ChimeProxyServer(
        database=database, extra_args=["--workers", "3"], log_path=tmp_path / "server.log"
    )
    with running(server):
        wait_until(lambda: server.log().count('"chimeproxy ready"') == 3, "three workers run")
        assert server.process is not None
        main = server.process.pid
        workers = children_of(main)
        metrics = list(Path("/tmp").glob(f"{METRICS_PREFIX}{main}-*"))
        assert len(metrics) == 1, metrics
        server.process.kill()
        server.process.wait()
        killed = time.monotonic()
        wait_until(
            lambda: not port_open(server.port) and not any(running_process(pid) for pid in workers),
            "no process serves the port",
            10.0,
        )
        assert time.monotonic() - killed < 5.0
        # (Its directory stays until a start removes it: maybe a test server starting alongside.)
        again = ChimeProxyServer(
            database=database,
            port=server.port,
            extra_args=["--workers", "2"],
            log_path=tmp_path / "again.log",
        )
        with running(again):
            assert health_of(again.port).status == 200
            assert not metrics[0].exists(), "the next start removed the dead one's directory"


def test_two_servers_starting_together_keep_their_metrics_and_remove_only_dead_ones(
    tmp_path: Path,
) -> None:
    me = current_owner()
    assert me is not None
    # A directory whose owner certainly exited: a process of ours, gone.
    gone = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    started = process_started(gone.pid)
    assert started is not None
    gone.kill()
    gone.wait()
    dead = Owner(gone.pid, started, me.pid_namespace, me.boot)
    leftover = Path("/tmp") / f"{dead.directory_prefix()}test"
    leftover.mkdir()
    unowned = Path("/tmp") / f"{METRICS_PREFIX}{os.getpid()}unowned"
    unowned.mkdir()  # no owner in its name: nobody can prove it dead
    servers = []
    for i in range(2):
        (tmp_path / f"s{i}").mkdir()
        servers.append(
            ChimeProxyServer(
                database=database_url(tmp_path / f"s{i}"),
                extra_args=["--workers", "2"],
                log_path=tmp_path / f"s{i}.log",
            )
        )
    threads = [threading.Thread(target=server.start) for server in servers]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for server in servers:
            wait_until(lambda s=server: s.log().count('"chimeproxy ready"') == 2, "both up")
        for count, server in enumerate(servers, start=5):
            for _ in range(count):
                httpx.get(f"{server.url}/voice-connectors/unknown000000000000000")
        for count, server in enumerate(servers, start=5):
            text = httpx.get(f"{server.url}/_chimeproxy/metrics").text
            line = (
                f'chimeproxy_requests_total{{operation="GetVoiceConnector",status="404"}} {count}.0'
            )
            assert line in text, f"{server.url} lost its metrics"
        assert not leftover.exists()
        assert unowned.exists()
    finally:
        for server in servers:
            server.stop()
        for path in (leftover, unowned):
            if path.exists():
                path.rmdir()
