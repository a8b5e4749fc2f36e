"""`GET /_chimeproxy/metrics` of a real server (on the backend of the test pass): what an
operator scrapes to see requests, latency, sessions and a proxy-number pool running dry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chimeproxy.testing import ChimeProxyServer, drop_test_database
from tests.conftest import database_url, make_client
from tests.integration.helpers import assert_refused, person, proxy_connector, refused

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    answer = httpx.get(f"{url}/_chimeproxy/metrics", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    found: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ChimeProxyServer]:
    """A server of its own: the session and pool gauges count everything in the database."""
    database = database_url(tmp_path)
    server = ChimeProxyServer(
        database=database, extra_args=["--clock-control"], log_path=tmp_path / "server.log"
    ).start()
    yield server
    server.stop()
    drop_test_database(database)


def test_metrics_show_requests_sessions_and_a_pool_running_dry(
    own_server: ChimeProxyServer,
) -> None:
    server = own_server
    client = make_client(server.url)
    connector_id, _ = proxy_connector(client, pool=2, expiry=60)
    hub = person()
    for _ in range(2):
        client.create_proxy_session(
            VoiceConnectorId=connector_id,
            ParticipantPhoneNumbers=[hub, person()],
            Capabilities=["Voice"],
        )
    with refused(400, "BadRequestException", "pool is exhausted"):
        client.create_proxy_session(
            VoiceConnectorId=connector_id,
            ParticipantPhoneNumbers=[hub, person()],
            Capabilities=["Voice"],
        )
    unknown = "00000000-0000-4000-8000-000000000000"
    with refused(404, "NotFoundException", unknown):
        client.get_proxy_session(VoiceConnectorId=connector_id, ProxySessionId=unknown)
    httpx.get(f"{server.url}/_chimeproxy/health")  # internal endpoints are not API requests

    found = scrape(server.url)
    requests = "chimeproxy_requests_total"
    assert value(found, requests, operation="CreateProxySession", status="201") == 2
    assert value(found, requests, operation="CreateProxySession", status="400") == 1
    assert value(found, requests, operation="GetProxySession", status="404") == 1
    assert not any(labels and dict(labels).get("operation") == "unknown" for _, labels in found)
    latency = "chimeproxy_request_duration_seconds_count"
    assert value(found, latency, operation="CreateProxySession") == 3
    assert value(found, "chimeproxy_request_duration_seconds_bucket",
                 operation="CreateProxySession", le="+Inf") == 3  # fmt: skip
    pool = {"account": "123456789012", "voice_connector": connector_id}
    assert value(found, "chimeproxy_proxy_pool_exhausted_total", **pool) == 1
    assert value(found, "chimeproxy_proxy_pool_numbers", state="in_use", **pool) == 2
    assert value(found, "chimeproxy_proxy_pool_numbers", state="free", **pool) == 0
    assert value(found, "chimeproxy_proxy_pool_busiest_participant_sessions", **pool) == 2
    assert value(found, "chimeproxy_proxy_pool_active_sessions", **pool) == 2
    assert value(found, "chimeproxy_proxy_sessions", status="Open") == 2
    assert value(found, "chimeproxy_proxy_sessions", status="Closed") == 0
    assert value(found, "chimeproxy_database_up") == 1

    server.advance(61 * 60)  # both sessions expire: the gauges show it at once, swept or not
    found = scrape(server.url)
    assert value(found, "chimeproxy_proxy_sessions", status="Open") == 0
    assert value(found, "chimeproxy_proxy_sessions", status="Closed") == 2
    assert value(found, "chimeproxy_proxy_pool_numbers", state="free", **pool) == 2
    assert value(found, "chimeproxy_proxy_pool_busiest_participant_sessions", **pool) == 0


def test_workers_add_up_their_counters_in_every_scrape(tmp_path: Path) -> None:
    """With `--workers 2` each request is counted by the worker that answered it; any worker
    answering a scrape reports the sum over both (prometheus_client's multiprocess mode)."""
    database = database_url(tmp_path)
    server = ChimeProxyServer(
        database=database, extra_args=["--workers", "2"], log_path=tmp_path / "server.log"
    ).start()
    try:
        requests = 30
        for _ in range(requests):
            # A new connection each time, so the kernel may hand it to either worker.
            answer = httpx.get(f"{server.url}/voice-connectors/unknown000000000000000")
            assert_refused(answer, 404, "NotFoundException", "unknown000000000000000")
        for _ in range(6):
            found = scrape(server.url)
            assert (
                value(
                    found,
                    "chimeproxy_requests_total",
                    operation="GetVoiceConnector",
                    status="404",
                )
                == requests
            )
    finally:
        server.stop()
        drop_test_database(database)
