"""PostgreSQL specifics: the database arbitrates concurrent transactions (constraints, row locks,
deadlock retry, settings created once), and a lost database answers 503 quickly, never a hang
or a half-written session.

Runs in the PostgreSQL test pass (CHIMEPROXY_TEST_DATABASE=postgresql); the multi-process,
crash and metrics tests run on PostgreSQL in that pass too.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from sqlalchemy import Connection, func, select, update
from sqlalchemy.engine import make_url

from chimeproxy.store import proxy
from chimeproxy.store.database import Database
from chimeproxy.store.schema import (
    active_routes,
    phone_numbers,
    proxy_sessions,
    server_settings,
    voice_connectors,
)
from chimeproxy.testing import ChimeProxyServer, free_port, postgres_admin_url
from tests.conftest import BACKEND, make_client
from tests.integration.helpers import (
    assert_refused,
    person,
    proxy_connector,
    refused,
    store_problems,
    wait_until,
)

pytestmark = pytest.mark.skipif(
    BACKEND != "postgresql",
    reason="PostgreSQL only: runs in the PostgreSQL pass (CHIMEPROXY_TEST_DATABASE=postgresql)",
)

MINUTE_MS = 60_000
_people = itertools.count()


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def waiting_on_locks(url: str) -> int:
    """How many sessions of this database wait for a lock held by another transaction."""
    name = make_url(url).database
    with psycopg.connect(libpq(url), autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
            (name,),
        ).fetchone()
    return int(row[0]) if row else 0


# Transactions arbitrated by the database.


def test_processes_starting_together_migrate_once_and_share_one_token_key(database: str) -> None:
    """Fresh database, eight processes' worth of engines at once: the schema is created once
    (advisory lock) and every one gets the same pagination-token key (primary key)."""
    count = 8
    barrier = threading.Barrier(count)
    keys: list[bytes] = []
    errors: list[BaseException] = []

    def start() -> None:
        db = Database(database)
        try:
            barrier.wait()
            db.upgrade()
            keys.append(db.token_key())
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=start) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(keys) == count and len(set(keys)) == 1
    db = Database(database)
    try:
        assert db.pending_migrations() == []
        with db.read() as connection:
            assert connection.scalar(select(func.count()).select_from(server_settings)) == 1
    finally:
        db.dispose()


def test_a_deadlock_rolls_one_writer_back_and_write_retrying_runs_it_again(
    database: str,
) -> None:
    """Two writers lock two rows in opposite orders: PostgreSQL aborts one (SQLSTATE 40P01)
    and `write_retrying` runs that one again, so both succeed."""
    setup = Database(database)
    setup.upgrade()
    with setup.write() as connection:
        connection.execute(server_settings.insert(), [{"name": n, "value": "0"} for n in "ab"])
    setup.dispose()
    barrier = threading.Barrier(2)
    attempts: list[str] = []
    errors: list[BaseException] = []

    def writer(first: str, second: str) -> None:
        db = Database(database)

        def work(connection: Connection) -> None:
            attempts.append(first)
            for name in (first, second):
                connection.execute(
                    update(server_settings)
                    .where(server_settings.c.name == name)
                    .values(value=first)
                )
                if name == first and len(attempts) <= 2:
                    barrier.wait()  # both hold their first row: the second locks cross

        try:
            db.write_retrying(work)
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=writer, args=pair) for pair in (("a", "b"), ("b", "a"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(attempts) == 3, "one of the two ran twice"


def _session_due_at(db: Database, expires_at: int) -> tuple[int, str, str]:
    """A voice connector with one Open session (and its routes) expiring at `expires_at`;
    (connector pk, session id, a participant)."""
    participants = (person(), person())
    with db.write() as connection:
        connector_pk = connection.execute(
            voice_connectors.insert().values(
                account="123456789012", region="us-east-1", id=f"vc{next(_people):020d}",
                name="locks", aws_region="us-east-1", require_encryption=False,
                created_at=0, updated_at=0,
            )
        ).inserted_primary_key[0]  # fmt: skip
        number = f"+1913555{next(_people) % 10_000:04d}"
        connection.execute(
            phone_numbers.insert().values(
                account="123456789012", region="us-east-1", e164=number, country="US",
                area_code="913", number_type="Local", product_type="VoiceConnector",
                status="Assigned", capabilities="InboundCall,OutboundCall",
                voice_connector_pk=connector_pk, created_at=0, updated_at=0,
            )
        )  # fmt: skip
        session = {
            "voice_connector_pk": connector_pk, "id": f"session-{next(_people)}", "name": None,
            "status": "Open", "capabilities": "Voice", "expiry_minutes": 1,
            "expiry_minutes_given": True, "number_selection_behavior": None,
            "geo_match_level": None, "geo_country": None, "geo_area_code": None,
            "participant_1": participants[0], "participant_2": participants[1],
            "proxy_number": number, "created_at": expires_at - MINUTE_MS,
            "updated_at": expires_at - MINUTE_MS, "expires_at": expires_at, "ended_at": None,
        }  # fmt: skip
        session_pk = proxy.insert_session(connection, session)
        proxy.record_allocation(connection, connector_pk, session, session_pk)
    return connector_pk, session["id"], participants[0]


@pytest.mark.parametrize("closer", ["sweeper", "create"])
def test_an_update_that_extends_a_session_wins_over_a_concurrent_close(
    closer: str, database: str
) -> None:
    """UpdateProxySession extends a session in its last moment while a sweep (or a create for
    one of its participants) finds it expired: the closer waits for the update's row lock, then
    sees the new expiry, so the session stays open and keeps its routes (the routing invariant
    depends on that)."""
    db, other = Database(database), Database(database)
    db.upgrade()
    expires = 1_000_000 * MINUTE_MS
    connector_pk, session_id, participant = _session_due_at(db, expires)
    extended = expires + 10 * MINUTE_MS
    closed: list[int] = []

    def close() -> None:
        with other.write() as connection:
            if closer == "sweeper":
                closed.append(proxy.close_expired_sessions(connection, expires + 1))
            else:
                proxy.release_expired_routes(connection, connector_pk, [participant], expires + 1)
                busy = proxy.busy_numbers(connection, connector_pk, [participant], expires + 1)
                closed.append(0 if len(busy) == 1 else 1)

    closing = threading.Thread(target=close)
    try:
        with db.write() as connection:
            row = proxy.find_session(
                connection, connector_pk, session_id, expires - 1, 0, lock=True
            )
            assert row is not None
            closing.start()
            wait_until(lambda: waiting_on_locks(database) >= 1, "the closer waits for the lock")
            proxy.set_route_expiry(connection, row["pk"], extended)
            proxy.update_session(connection, row["pk"], {"expires_at": extended})
        closing.join()
        assert closed == [0]
        with db.read() as connection:
            stored = connection.execute(
                select(proxy_sessions).where(proxy_sessions.c.id == session_id)
            ).mappings().one()  # fmt: skip
            routes = connection.scalar(
                select(func.count()).where(active_routes.c.session_pk == stored["pk"])
            )
        assert (stored["status"], stored["expires_at"], routes) == ("Open", extended, 2)
        assert store_problems(database, expires + 1) == []
    finally:
        db.dispose()
        other.dispose()


def test_an_update_waiting_behind_a_sweep_sees_the_session_closed(database: str) -> None:
    db, other = Database(database), Database(database)
    db.upgrade()
    expires = 1_000_000 * MINUTE_MS
    connector_pk, session_id, _ = _session_due_at(db, expires)
    seen: list[Any] = []

    def update_it() -> None:
        with other.write() as connection:
            seen.append(
                proxy.find_session(
                    connection, connector_pk, session_id, expires - 1, MINUTE_MS, lock=True
                )
            )

    updating = threading.Thread(target=update_it)
    try:
        with db.write() as connection:
            assert proxy.close_expired_sessions(connection, expires + 1) == 1
            updating.start()
            wait_until(lambda: waiting_on_locks(database) >= 1, "the update waits for the lock")
        updating.join()
        assert seen[0]["status"] == "Closed"  # UpdateProxySession answers "is Closed"
        assert store_problems(database, expires + 1) == []
    finally:
        db.dispose()
        other.dispose()


# A lost database.


class TcpForwarder:
    """127.0.0.1:`port` forwarded to the PostgreSQL server. `cut()` makes the database
    unreachable (listener closed, open connections dropped); `restore()` brings it back.
    `freeze()` makes it a database that accepts and keeps connections but never answers, like
    a stopped server process on a live host; `thaw()` lets the held bytes through."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._flowing = threading.Event()
        self._flowing.set()

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                self._flowing.wait()
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def forwarder(database: str) -> Iterator[TcpForwarder]:
    url = make_url(database)
    forwarding = TcpForwarder(url.host or "127.0.0.1", url.port or 5432)
    forwarding.restore()
    yield forwarding
    forwarding.thaw()
    forwarding.cut()


def test_a_server_whose_database_is_gone_answers_503_and_recovers(
    database: str, forwarder: TcpForwarder, tmp_path: Path
) -> None:
    through = make_url(database).set(host="127.0.0.1", port=forwarder.port)
    server = ChimeProxyServer(
        database=through.render_as_string(hide_password=False), log_path=tmp_path / "server.log"
    ).start()
    try:
        client = make_client(server.url)
        connector_id, _ = proxy_connector(client, pool=2)
        session = client.create_proxy_session(
            VoiceConnectorId=connector_id,
            ParticipantPhoneNumbers=[person(), person()],
            Capabilities=["Voice"],
        )["ProxySession"]
        path = f"/voice-connectors/{connector_id}/proxy-sessions"

        forwarder.cut()
        # Quickly: the client's timeout is far below the database's connect timeout plus any
        # retry a hang would need, so a hang would fail here rather than pass slowly.
        with httpx.Client(base_url=server.url, timeout=10) as http:
            # Health answers from state: its probe (every second) finds the database gone.
            wait_until(
                lambda: http.get("/_chimeproxy/health").status_code == 503,
                "health sees the database gone",
                5.0,
            )
            health = http.get("/_chimeproxy/health").json()
            assert (health["status"], health["cause"]) == ("database unavailable", "unavailable")
            assert http.get("/_chimeproxy/ready").status_code == 503
            for answer in (
                http.get(f"{path}/{session['ProxySessionId']}"),
                http.post(path, json={"ParticipantPhoneNumbers": [person(), person()],
                                      "Capabilities": ["Voice"]}),
            ):  # fmt: skip
                assert_refused(answer, 503, "ServiceUnavailableException")
            for _ in range(50):
                assert http.get(f"{path}/{session['ProxySessionId']}").status_code == 503
            metrics = http.get("/_chimeproxy/metrics")
            assert metrics.status_code == 200
            assert "chimeproxy_database_up 0.0" in metrics.text
            assert 'chimeproxy_database_failures_total{cause="unavailable"} 0.0' not in (
                metrics.text
            )
        with refused(503, "ServiceUnavailableException"):
            client.list_proxy_sessions(VoiceConnectorId=connector_id)
        # The operations on prepared statements (store/prepared.py) too: a failed connect is a
        # 503, not a 500.
        ids = {"VoiceConnectorId": connector_id, "ProxySessionId": session["ProxySessionId"]}
        with refused(503, "ServiceUnavailableException"):
            client.update_proxy_session(**ids, Capabilities=["Voice"])
        with refused(503, "ServiceUnavailableException"):
            client.delete_proxy_session(**ids)
        with httpx.Client(base_url=server.url, timeout=10) as http:
            route = {"caller": session["Participants"][0]["PhoneNumber"], "kind": "voice",
                     "called": session["Participants"][0]["ProxyPhoneNumber"]}  # fmt: skip
            assert_refused(http.post("/_chimeproxy/route", json=route), 503,
                           "ServiceUnavailableException")  # fmt: skip
        # Over all these refusals, the outage is a line, in the driver's words.
        outage = [
            line
            for line in map(orjson.loads, server.log().splitlines())
            if line["logger"] == "chimeproxy.database"
        ]
        assert len(outage) == 1, outage
        assert outage[0]["cause"] == "unavailable"
        assert "Connection refused" in outage[0]["message"] or "closed" in outage[0]["message"]

        forwarder.restore()
        wait_until(
            lambda: httpx.get(f"{server.url}/_chimeproxy/health").status_code == 200,
            "the server sees its database again",
        )
        listed = client.list_proxy_sessions(VoiceConnectorId=connector_id)["ProxySessions"]
        assert listed == [session]
        client.create_proxy_session(
            VoiceConnectorId=connector_id,
            ParticipantPhoneNumbers=[person(), person()],
            Capabilities=["Voice"],
        )
        assert store_problems(database, time.time_ns() // 1_000_000) == []
    finally:
        server.stop()


def test_a_frozen_database_costs_a_503_at_the_deadline_and_no_late_write(
    database: str, forwarder: TcpForwarder, tmp_path: Path
) -> None:
    """The database host keeps the connections open but the server answers nothing, so no
    connection or statement timeout fires: the request deadline (here 2 s) answers 503, and a
    create caught in it is rolled back when the database wakes, not committed behind the
    client's back."""
    through = make_url(database).set(host="127.0.0.1", port=forwarder.port)
    server = ChimeProxyServer(
        database=through.render_as_string(hide_password=False),
        env={"CHIMEPROXY_DB_DEADLINE": "2"},
        log_path=tmp_path / "server.log",
    ).start()
    try:
        client = make_client(server.url)
        connector_id, _ = proxy_connector(client, pool=2)
        path = f"/voice-connectors/{connector_id}/proxy-sessions"
        forwarder.freeze()
        with httpx.Client(base_url=server.url, timeout=30) as http:
            stuck = http.post(
                path,
                json={"ParticipantPhoneNumbers": [person(), person()], "Capabilities": ["Voice"]},
            )
            assert_refused(stuck, 503, "ServiceUnavailableException")
            # The probe has hung since the freeze, and nothing else succeeded meanwhile.
            wait_until(
                lambda: http.get("/_chimeproxy/health").status_code == 503,
                "health sees the database frozen",
                5.0,
            )
            assert http.get("/_chimeproxy/health").json()["cause"] == "timeout"
        forwarder.thaw()
        wait_until(
            lambda: httpx.get(f"{server.url}/_chimeproxy/health").status_code == 200,
            "the server sees its database again",
        )
        # The stuck create's thread goes on once the database answers, and rolls back.
        wait_until(lambda: "rolled back a write" in server.log(), "the late create rolled back")
        assert client.list_proxy_sessions(VoiceConnectorId=connector_id)["ProxySessions"] == []
        client.create_proxy_session(
            VoiceConnectorId=connector_id,
            ParticipantPhoneNumbers=[person(), person()],
            Capabilities=["Voice"],
        )
    finally:
        server.stop()


def test_a_read_only_database_shows_as_degraded_and_recovers_by_itself(
    database: str, tmp_path: Path
) -> None:
    """The database turns read-only (as a standby does after a failover, here
    default_transaction_read_only): writes answer 503 and health says why; once writable again,
    the server reconnects by itself and health is ok with no client write needed."""
    server = ChimeProxyServer(database=database, log_path=tmp_path / "server.log").start()
    name = make_url(database).database

    def read_only(on: bool) -> None:
        # From another database: this one refuses ALTER DATABASE while it is read-only.
        with psycopg.connect(libpq(postgres_admin_url()), autocommit=True) as admin:
            admin.execute(
                f'ALTER DATABASE "{name}" SET default_transaction_read_only = '
                + ("on" if on else "off")
            )
            # Sessions take the setting when they start: end the server's current ones.
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )

    try:
        client = make_client(server.url)
        connector_id, _ = proxy_connector(client, pool=2)
        read_only(True)
        with httpx.Client(base_url=server.url, timeout=30) as http:
            path = f"/voice-connectors/{connector_id}/proxy-sessions"
            body = {"ParticipantPhoneNumbers": [person(), person()], "Capabilities": ["Voice"]}
            wait_until(lambda: http.post(path, json=body).status_code == 503, "writes fail", 10)
            assert_refused(http.post(path, json=body), 503, "ServiceUnavailableException",
                           "read-only")  # fmt: skip
            health = http.get("/_chimeproxy/health").json()
            assert (health["status"], health["cause"]) == ("degraded", "read_only"), health
            assert http.get("/_chimeproxy/ready").status_code == 503
            assert http.get(f"/voice-connectors/{connector_id}").status_code == 200
            read_only(False)
            wait_until(
                lambda: http.get("/_chimeproxy/health").json()["status"] == "ok", "ok again", 10
            )
            assert http.post(path, json=body).status_code == 201
        assert "cannot execute" in server.log() and "read-only transaction" in server.log()
    finally:
        server.stop()


@pytest.mark.parametrize("threads", [4, 12])
def test_a_process_serves_as_many_requests_at_once_as_it_has_database_threads(
    threads: int, database: str, tmp_path: Path
) -> None:
    """Requests held by a lock pile up in the database, as many at once as --db-threads allows
    (asyncio's default executor held them to about 6 per process, whatever the pool); the rest
    wait their turn and are served when the lock goes."""
    server = ChimeProxyServer(
        database=database,
        extra_args=["--db-pool-size", str(threads)],  # --db-threads follows it
        log_path=tmp_path / "server.log",
    ).start()
    try:
        connector_id = make_client(server.url).create_voice_connector(
            Name="held", RequireEncryption=False
        )["VoiceConnector"]["VoiceConnectorId"]
        answers: list[int] = []
        with psycopg.connect(libpq(database)) as holder:
            holder.execute("LOCK TABLE voice_connectors IN ACCESS EXCLUSIVE MODE")

            def get() -> None:
                answer = httpx.get(f"{server.url}/voice-connectors/{connector_id}", timeout=30)
                answers.append(answer.status_code)

            callers = [threading.Thread(target=get) for _ in range(threads + 6)]
            for caller in callers:
                caller.start()
            wait_until(lambda: waiting_on_locks(database) == threads, f"{threads} waiting", 10)
            time.sleep(0.5)  # the others had time to reach the database, had threads allowed
            assert waiting_on_locks(database) == threads
            holder.rollback()
        for caller in callers:
            caller.join()
        assert answers == [200] * (threads + 6)
    finally:
        server.stop()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_server_started_on_a_dead_database_exits_saying_why(workers: int, tmp_path: Path) -> None:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    server = ChimeProxyServer(
        database=dead, extra_args=["--workers", str(workers)], log_path=tmp_path / "server.log"
    )
    with pytest.raises(RuntimeError, match="exited at start"):
        server.start()
    # One line with the cause and the driver's words: no traceback, no "retry the request".
    lines = server.log().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"chimeproxy: {dead}: unavailable: "), lines
    assert "Connection refused" in lines[0] and "retry" not in lines[0]


def test_connections_killed_mid_load_cost_at_most_a_503_and_never_half_a_session(
    database: str, tmp_path: Path
) -> None:
    """pg_terminate_backend on every connection of the server, again and again, while threads
    create and delete sessions: each request answers success, a pool refusal or 503 (the
    client may retry), every acknowledged write holds, and the tables agree."""
    server = ChimeProxyServer(database=database, log_path=tmp_path / "server.log").start()
    statuses: list[int] = []
    live: dict[str, list[str]] = {}
    deleted: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()
    try:
        connector_id, _ = proxy_connector(make_client(server.url), pool=8)
        path = f"/voice-connectors/{connector_id}/proxy-sessions"
        hubs = [person() for _ in range(3)]

        def load(seed: int) -> None:
            mine: list[str] = []
            with httpx.Client(base_url=server.url, timeout=30) as http:
                for step in itertools.count(seed):
                    if stop.is_set():
                        return
                    if step % 3 == 2 and mine:
                        session_id = mine.pop(0)
                        answer = http.delete(f"{path}/{session_id}")
                        if answer.status_code == 204:
                            with lock:
                                deleted.add(session_id)
                        elif answer.status_code == 503:
                            mine.append(session_id)  # not deleted for sure: try again later
                    else:
                        body = {
                            "ParticipantPhoneNumbers": [hubs[step % 3], person()],
                            "Capabilities": ["Voice"],
                        }
                        answer = http.post(path, json=body)
                        if answer.status_code == 201:
                            created = answer.json()["ProxySession"]
                            mine.append(created["ProxySessionId"])
                            with lock:
                                live[created["ProxySessionId"]] = created["Participants"]
                    with lock:
                        statuses.append(answer.status_code)

        threads = [threading.Thread(target=load, args=(seed,)) for seed in range(6)]
        for thread in threads:
            thread.start()
        name = make_url(database).database
        with psycopg.connect(libpq(database), autocommit=True) as admin:
            for kill in range(1, 6):
                wait_until(lambda k=kill: len(statuses) >= 40 * k, "the load goes on")
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
        stop.set()
        for thread in threads:
            thread.join()

        assert set(statuses) <= {201, 204, 400, 503}, sorted(set(statuses))
        # Health answers from state: the last kill took its probe's connection too, and the
        # probe (every second) or the next successful request finds the database back.
        wait_until(
            lambda: httpx.get(f"{server.url}/_chimeproxy/health").status_code == 200,
            "health sees the database back",
            5.0,
        )
        client = make_client(server.url)
        for session_id, participants in live.items():
            if session_id in deleted:
                with refused(404, "NotFoundException", session_id):
                    client.get_proxy_session(
                        VoiceConnectorId=connector_id, ProxySessionId=session_id
                    )
            else:
                got = client.get_proxy_session(
                    VoiceConnectorId=connector_id, ProxySessionId=session_id
                )["ProxySession"]
                assert got["Participants"] == participants
        assert store_problems(database, time.time_ns() // 1_000_000) == []
    finally:
        stop.set()
        server.stop()
