"""chimeproxy's own endpoints take the same path as the model's operations: each is counted in
the request metrics under its name, passes the rate limiter, and its database work obeys the
same deadline rule (rolled back, never committed after the caller was answered 503)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from chimeproxy.testing import ChimeProxyServer, drop_test_database
from tests.conftest import BACKEND, database_url, make_client
from tests.integration.helpers import person, proxy_connector, route, session_between, status_of


def requests_counted(server: ChimeProxyServer) -> dict[tuple[str, str], float]:
    """chimeproxy_requests_total by (operation, status)."""
    text = httpx.get(f"{server.url}/_chimeproxy/metrics", timeout=10).text
    counted = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "chimeproxy_requests_total":
                counted[(sample.labels["operation"], sample.labels["status"])] = sample.value
    return counted


def listing(server: ChimeProxyServer, connector_id: str, **headers: str) -> httpx.Response:
    return httpx.get(
        f"{server.url}/_chimeproxy/voice-connectors/{connector_id}/interactions",
        headers=headers,
        timeout=10,
    )


def signed_as(account: str) -> dict[str, str]:
    """An unverified SigV4 header naming `account` (open mode takes the account from it)."""
    return {
        "Authorization": f"AWS4-HMAC-SHA256 Credential={account}/20261201/us-east-1/chime/"
        "aws4_request, SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
        "X-Amz-Date": "20261201T000000Z",
    }


def test_internal_endpoints_are_counted_under_their_names(
    server: ChimeProxyServer, client: Any
) -> None:
    connector_id, numbers = proxy_connector(client, pool=1)
    before = requests_counted(server)
    assert route(server.url, person(), numbers[0]).status_code == 200
    assert listing(server, connector_id).status_code == 200
    assert listing(server, "nosuchconnector").status_code == 404
    assert httpx.get(f"{server.url}/_chimeproxy/nothing-here", timeout=10).status_code == 404
    after = requests_counted(server)

    def grew(key: tuple[str, str]) -> float:
        return after.get(key, 0) - before.get(key, 0)

    assert grew(("Route", "200")) == 1
    assert grew(("ListInteractions", "200")) == 1
    assert grew(("ListInteractions", "404")) == 1
    assert grew(("unknown", "404")) == 1
    # The scrape before this one was counted too, under its own name.
    assert grew(("Metrics", "200")) >= 1


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChimeProxyServer]:
    """A server allowing each caller one request per 10 s (a burst of one)."""
    directory = tmp_path_factory.mktemp("limited")
    database = database_url(directory)
    running = ChimeProxyServer(
        database=database,
        extra_args=["--rate-limit", "0.1"],
        log_path=directory / "server.log",
    ).start()
    yield running
    running.stop()
    drop_test_database(database)


def assert_throttled(answer: httpx.Response) -> None:
    assert answer.status_code == 429, answer.text
    assert answer.headers["x-amzn-errortype"] == "ThrottledClientException"
    assert answer.json()["Code"] == "Throttled"
    assert int(answer.headers["retry-after"]) >= 1


def test_the_route_endpoint_passes_the_rate_limiter(limited: ChimeProxyServer) -> None:
    first = route(limited.url, person(), "+19135550100")
    assert first.status_code == 200, first.text
    assert_throttled(route(limited.url, person(), "+19135550100"))
    # An API account has a bucket of its own: the data plane's use does not throttle it.
    assert listing(limited, "nosuchconnector", **signed_as("111111111111")).status_code == 404
    counted = requests_counted(limited)
    assert counted[("Route", "429")] == 1


def test_the_interactions_listing_passes_the_rate_limiter(limited: ChimeProxyServer) -> None:
    caller = signed_as("222222222222")
    assert listing(limited, "nosuchconnector", **caller).status_code == 404
    assert_throttled(listing(limited, "nosuchconnector", **caller))
    # Another account is not held back by this one.
    assert listing(limited, "nosuchconnector", **signed_as("333333333333")).status_code == 404


@pytest.mark.skipif(
    BACKEND != "postgresql",
    reason="PostgreSQL only (runs in the PostgreSQL pass): SQLite work runs inline on the "
    "event loop and is answered only once it has committed or failed",
)
def test_a_route_past_its_deadline_is_rolled_back_not_committed_late(tmp_path: Path) -> None:
    import psycopg

    database = database_url(tmp_path)
    server = ChimeProxyServer(database=database, log_path=tmp_path / "server.log").start()
    try:
        client = make_client(server.url)
        connector_id, _ = proxy_connector(client, pool=1)
        a, b = person(), person()
        session_id, proxy = session_between(client, connector_id, a, b)
        libpq = make_url(database).set(drivername="postgresql")
        with psycopg.connect(libpq.render_as_string(hide_password=False)) as blocker:
            # Hold the session's row: the route's move to InProgress waits behind this lock.
            blocker.execute("SELECT pk FROM proxy_sessions WHERE id = %s FOR UPDATE", (session_id,))
            started = time.monotonic()
            answer = httpx.post(
                f"{server.url}/_chimeproxy/route",
                json={"caller": a, "called": proxy, "kind": "voice"},
                headers={"X-Chimeproxy-Deadline-Ms": "700"},
                timeout=30,
            )
            waited = time.monotonic() - started
            assert answer.status_code == 503, answer.text
            assert answer.headers["x-amzn-errortype"] == "ServiceUnavailableException"
            assert waited < 10  # answered at the caller's deadline, not the server's 30 s
            blocker.rollback()  # the route's thread now finishes its work...
        deadline = time.monotonic() + 30
        while "rolled back a write whose caller stopped waiting" not in server.log():
            assert time.monotonic() < deadline, server.log()[-3000:]
            time.sleep(0.05)
        # ...and rolls it back: no interaction, and the session never moved to InProgress.
        found = httpx.get(
            f"{server.url}/_chimeproxy/voice-connectors/{connector_id}/proxy-sessions/"
            f"{session_id}/interactions",
            timeout=10,
        ).json()["Interactions"]
        assert found == []
        assert status_of(client, connector_id, session_id) == "Open"
        # The same route without the lock goes through and is recorded once.
        assert route(server.url, a, proxy).json()["action"] == "connect"
        assert status_of(client, connector_id, session_id) == "InProgress"
    finally:
        server.stop()
        drop_test_database(database)
