"""The metrics module on its own: the database gauges from hand-made rows, the counting
middleware, and the text exposition."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from chimeproxy.metrics import Metrics
from chimeproxy.protocol.http import Request
from chimeproxy.store import proxy
from chimeproxy.store.database import Database, DatabaseUnavailable
from chimeproxy.store.schema import phone_numbers, proxy_configs, voice_connectors
from chimeproxy.store.stats import Snapshot, database_snapshot

NOW = 10_000_000_000
MINUTE_MS = 60_000
_ids = itertools.count()


def connector(db: Database, countries: str | None, numbers: dict[str, str]) -> int:
    """A voice connector with `numbers` (e164 -> country) assigned, and a proxy configuration
    for `countries` unless None."""
    with db.write() as connection:
        pk = connection.execute(
            voice_connectors.insert().values(
                account="111122223333", region="us-east-1", id=f"vc{next(_ids):020d}",
                name="m", aws_region="us-east-1", require_encryption=False,
                created_at=0, updated_at=0,
            )
        ).inserted_primary_key[0]  # fmt: skip
        for e164, country in numbers.items():
            connection.execute(
                phone_numbers.insert().values(
                    account="111122223333", region="us-east-1", e164=e164, country=country,
                    number_type="Local", product_type="VoiceConnector", status="Assigned",
                    capabilities="InboundCall,OutboundCall", voice_connector_pk=pk,
                    created_at=0, updated_at=0,
                )
            )  # fmt: skip
        if countries is not None:
            connection.execute(
                proxy_configs.insert().values(
                    voice_connector_pk=pk, default_expiry_minutes=60, countries=countries,
                    disabled=False, updated_at=0,
                )
            )  # fmt: skip
    return pk


def session(
    db: Database, pk: int, a: str, b: str, number: str, *, expires: int, status: str = "Open"
) -> None:
    values = {
        "voice_connector_pk": pk, "id": f"s{next(_ids)}", "name": None, "status": status,
        "capabilities": "Voice", "expiry_minutes": 60, "expiry_minutes_given": False,
        "number_selection_behavior": None, "geo_match_level": None, "geo_country": None,
        "geo_area_code": None, "participant_1": a, "participant_2": b, "proxy_number": number,
        "created_at": expires - 60 * MINUTE_MS, "updated_at": expires - 60 * MINUTE_MS,
        "expires_at": expires, "ended_at": expires if status == "Closed" else None,
    }  # fmt: skip
    with db.write() as connection:
        session_pk = proxy.insert_session(connection, values)
        if status != "Closed":
            proxy.record_allocation(connection, pk, values, session_pk)


def test_snapshot_counts_sessions_as_reads_show_them(db: Database) -> None:
    pk = connector(db, "US", {"+12065550100": "US", "+12065550101": "US"})
    session(db, pk, "+13125550001", "+13125550002", "+12065550100", expires=NOW + MINUTE_MS)
    session(db, pk, "+13125550001", "+13125550003", "+12065550101", expires=NOW + MINUTE_MS,
            status="InProgress")  # fmt: skip
    # Expired but never swept: reads show it Closed, so does the gauge.
    session(db, pk, "+13125550004", "+13125550005", "+12065550100", expires=NOW - 1)
    session(db, pk, "+13125550006", "+13125550007", "+12065550101", expires=NOW - 5,
            status="Closed")  # fmt: skip
    with db.read() as connection:
        snapshot = database_snapshot(connection, NOW)
    assert snapshot.sessions == {"Open": 1, "InProgress": 1, "Closed": 2}


def test_snapshot_pool_use_per_configured_connector(db: Database) -> None:
    busy = connector(
        db,
        "US,GB",
        {
            "+12065550110": "US",
            "+12065550111": "US",
            "+12065550112": "US",
            "+442079460110": "GB",
            "+33140000110": "FR",
        },
    )
    idle = connector(db, "US", {"+12065550120": "US"})
    connector(db, None, {"+12065550130": "US"})  # no proxy configuration: no pool
    hub = "+13125550010"
    session(db, busy, hub, "+13125550011", "+12065550110", expires=NOW + MINUTE_MS)
    session(db, busy, hub, "+13125550012", "+12065550111", expires=NOW + MINUTE_MS)
    session(db, busy, "+13125550013", "+13125550014", "+12065550110", expires=NOW + MINUTE_MS)
    session(db, busy, "+13125550015", "+13125550016", "+12065550112", expires=NOW - 1)
    # A number outside the pool countries still carrying a session does not count as pool.
    session(db, busy, "+13125550017", "+13125550018", "+33140000110", expires=NOW + MINUTE_MS)
    with db.read() as connection:
        pools = {p.voice_connector: p for p in database_snapshot(connection, NOW).pools}
    assert set(pools) == {connector_id(db, busy), connector_id(db, idle)}
    busy_pool, idle_pool = pools[connector_id(db, busy)], pools[connector_id(db, idle)]
    # US and GB numbers are the pool (FR is not a pool country); two of them carry sessions.
    assert (busy_pool.numbers, busy_pool.in_use) == (4, 2)
    assert busy_pool.active_sessions == 4  # the FR one counts: it is an active session
    assert busy_pool.busiest_participant == 2
    assert busy_pool.account == "111122223333"
    assert (idle_pool.numbers, idle_pool.in_use, idle_pool.active_sessions) == (1, 0, 0)


def connector_id(db: Database, pk: int) -> str:
    with db.read() as connection:
        return connection.scalar(select(voice_connectors.c.id).where(voice_connectors.c.pk == pk))


def request() -> Request:
    return Request(
        "POST",
        "/voice-connectors/abc/proxy-sessions",
        "",
        {},
        b"",
        "127.0.0.1",
        account="111122223333",
        labels={"voiceConnectorId": "abc"},
    )


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_observe_counts_statuses_latency_and_pool_exhaustion() -> None:
    metrics = Metrics()
    for operation, status in [
        ("CreateProxySession", 201),
        ("CreateProxySession", 201),
        ("CreateProxySession", 400),
        ("GetProxySession", 404),
        ("unknown", 500),
    ]:
        metrics.observe(operation, status, 0.001)
    metrics.pool_exhausted(request())
    found = samples(metrics.exposition(Snapshot()))
    assert found[("chimeproxy_requests_total",
                  (("operation", "CreateProxySession"), ("status", "201")))] == 2  # fmt: skip
    assert found[("chimeproxy_requests_total",
                  (("operation", "CreateProxySession"), ("status", "400")))] == 1  # fmt: skip
    assert found[("chimeproxy_requests_total",
                  (("operation", "GetProxySession"), ("status", "404")))] == 1  # fmt: skip
    assert found[("chimeproxy_requests_total",
                  (("operation", "unknown"), ("status", "500")))] == 1  # fmt: skip
    assert found[("chimeproxy_request_duration_seconds_count",
                  (("operation", "CreateProxySession"),))] == 3  # fmt: skip
    assert found[("chimeproxy_proxy_pool_exhausted_total",
                  (("account", "111122223333"), ("voice_connector", "abc")))] == 1  # fmt: skip


def test_exposition_says_when_the_database_did_not_answer(tmp_path: Path) -> None:
    gone = Database(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")  # its directory does not exist
    with pytest.raises(DatabaseUnavailable), gone.read() as connection:
        database_snapshot(connection, NOW)
    found = samples(Metrics().exposition(None))
    assert found[("chimeproxy_database_up", ())] == 0
    assert not any(name.startswith("chimeproxy_proxy_sessions") for name, _ in found)


def test_two_apps_in_one_process_count_apart() -> None:
    first, second = Metrics(), Metrics()
    first.observe("ListProxySessions", 200, 0.001)
    found = samples(second.exposition(Snapshot()))
    assert not any(name == "chimeproxy_requests_total" for name, _ in found)


def test_tallied_counts_expose_as_counts_made_one_by_one() -> None:
    """One process tallies `observe` and adds the tallies when scraped; written through one by
    one (as several workers do) the same answers expose the same samples, bucket edges and
    the infinite bucket included, and again after more answers between two scrapes."""
    tallied, through = Metrics(), Metrics()
    del through.observe  # type: ignore[attr-defined]  # the class's own: written through
    assert tallied.observe != through.observe
    answers = [
        ("GetProxySession", 200, 0.0),
        ("GetProxySession", 200, 0.001),  # on a bound: its own bucket
        ("GetProxySession", 200, 0.0010001),
        ("GetProxySession", 404, 0.3),
        ("CreateProxySession", 201, 10.0),
        ("CreateProxySession", 201, 11.0),  # past the last bound
    ]

    def shown(metrics: Metrics) -> dict[Any, float]:
        found = samples(metrics.exposition(Snapshot()))
        return {key: value for key, value in found.items() if not key[0].endswith("_created")}

    for round_ in range(2):
        for operation, status, seconds in answers[round_:]:
            tallied.observe(operation, status, seconds)
            through.observe(operation, status, seconds)
        assert shown(tallied) == shown(through)
    found = shown(tallied)
    assert found[("chimeproxy_requests_total",
                  (("operation", "GetProxySession"), ("status", "200")))] == 5  # fmt: skip
    assert found[("chimeproxy_request_duration_seconds_bucket",
                  (("le", "0.001"), ("operation", "GetProxySession")))] == 3  # fmt: skip
