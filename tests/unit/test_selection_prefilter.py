"""The SQL pre-filter of CreateProxySession's candidates picks what the full candidate list picks.

`operations.proxy.ranked_numbers` reads either the connector's whole pool (`prefilter=False`,
the reference) or only the rows that can win (`store.proxy.candidate_numbers`); the domain's
selection ranks both. Random pools, routes and pair histories must give the same choice, the
same relative order, and the same PoolExhausted rule and message.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection

from chimeproxy.domain.selection import GeoRequirement, PoolExhausted, SelectionRequest
from chimeproxy.operations.proxy import PREFILTER_LIMIT, ranked_numbers
from chimeproxy.store.database import Database
from chimeproxy.store.proxy import pair_key
from chimeproxy.store.schema import (
    active_routes,
    pair_history,
    phone_numbers,
    proxy_sessions,
    voice_connectors,
)
from chimeproxy.testing import drop_test_database
from tests.conftest import database_url

NOW = 1_704_067_200_000
A = "+12065550100"
B = "+14155550101"
CONNECTOR = 1
NUMBER_CAPABILITIES = ("InboundCall", "OutboundCall", "InboundSMS", "OutboundSMS")

# Numbers of several lengths, so that "lowest number" (numeric) and text order differ.
e164s = st.one_of(
    st.integers(0, 99).map(lambda n: f"+1206555{n:04d}"),
    st.integers(0, 99).map(lambda n: f"+4420{n:08d}"),
    st.integers(0, 99).map(lambda n: f"+99{n:04d}"),
    st.integers(0, 99).map(lambda n: f"+6118001{n:05d}"),
)
instants = st.one_of(st.none(), st.sampled_from([NOW - 50_000, NOW - 40_000, NOW - 30_000]))
numbers = st.fixed_dictionaries(
    {
        "e164": e164s,
        "country": st.sampled_from(["US", "US", "GB", "AU"]),
        "area_code": st.sampled_from(["206", "415", None]),
        # Mostly numbers that pass every filter, so that the ranking is what gets tested.
        "capabilities": st.one_of(
            st.just(",".join(sorted(NUMBER_CAPABILITIES))),
            st.sets(st.sampled_from(NUMBER_CAPABILITIES)).map(lambda caps: ",".join(sorted(caps))),
        ),
        "status": st.sampled_from(["Assigned", "Assigned", "Assigned", "Unassigned"]),
        "voice_connector_pk": st.sampled_from([CONNECTOR, CONNECTOR, CONNECTOR, 2]),
        "last_allocated_at": instants,
    }
)
requests = st.builds(
    lambda caps, pool, behavior, geo: SelectionRequest((A, B), caps, pool, behavior, geo),
    st.sets(st.sampled_from(["Voice", "SMS"]), min_size=1).map(frozenset),
    st.one_of(
        st.just(frozenset({"US", "GB", "AU"})),
        st.sets(st.sampled_from(["US", "GB", "AU"]), min_size=1).map(frozenset),
    ),
    st.sampled_from(["PreferSticky", "AvoidSticky"]),
    st.one_of(
        st.none(),
        st.none(),
        st.sampled_from(["US", "GB"]).map(lambda c: GeoRequirement("Country", c)),
        st.sampled_from(["206", "415"]).map(lambda a: GeoRequirement("AreaCode", "US", a)),
    ),
)


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Connection]:
    """The real schema (migrations) on the backend under test: SQLite, or PostgreSQL in the
    PostgreSQL pass, whose NULL ordering differs."""
    url = database_url(tmp_path_factory.mktemp("prefilter"))
    db = Database(url)
    db.upgrade()
    with db.engine.connect() as connection:
        with connection.begin():  # what the rows of each example refer to
            for pk in (CONNECTOR, 2):
                connection.execute(
                    voice_connectors.insert().values(
                        pk=pk, account="111122223333", region="us-east-1", id=f"vc{pk}",
                        name="prefilter", aws_region="us-east-1", require_encryption=False,
                        created_at=NOW, updated_at=NOW,
                    )
                )  # fmt: skip
            connection.execute(
                proxy_sessions.insert().values(
                    pk=1, voice_connector_pk=CONNECTOR, id="s1", status="Open",
                    capabilities="Voice", expiry_minutes=60, expiry_minutes_given=False,
                    participant_1=A, participant_2=B, proxy_number="+12065550000",
                    created_at=NOW, updated_at=NOW, expires_at=NOW + 3_600_000,
                )
            )  # fmt: skip
        yield connection
    db.dispose()
    drop_test_database(url)


def _outcome(
    connection: Connection, request: SelectionRequest, prefilter: bool, limit: int
) -> list[str] | tuple[str, str]:
    try:
        ranked = ranked_numbers(
            connection, CONNECTOR, request, NOW, prefilter=prefilter, limit=limit
        )
    except PoolExhausted as exc:
        return (exc.rule, str(exc))
    return [candidate.e164 for candidate in ranked]


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    pool=st.lists(numbers, max_size=2 * PREFILTER_LIMIT, unique_by=lambda n: n["e164"]),
    busy=st.lists(
        st.tuples(st.sampled_from([A, B, "+13105550102"]), st.integers(0, 60), st.booleans())
    ),
    history=st.lists(st.tuples(st.integers(0, 60), instants.filter(lambda t: t is not None))),
    request=requests,
    # Small limits make a wrong SQL order or a missing sticky number change the choice.
    limit=st.sampled_from([1, 2, PREFILTER_LIMIT]),
)
def test_prefilter_picks_what_the_full_pool_picks(
    database: Connection,
    pool: list[dict[str, object]],
    busy: list[tuple[str, int, bool]],
    history: list[tuple[int, int]],
    request: SelectionRequest,
    limit: int,
) -> None:
    transaction = database.begin()
    try:
        if pool:
            database.execute(phone_numbers.insert(), [_number_row(n) for n in pool])
        e164 = [str(n["e164"]) for n in pool] or ["+12065550000"]
        routes = {
            (who, e164[index % len(e164)]): NOW + (60_000 if live else -60_000)
            for who, index, live in busy
        }
        if routes:
            database.execute(
                active_routes.insert(),
                [
                    {
                        "voice_connector_pk": CONNECTOR,
                        "participant": who,
                        "proxy_number": number,
                        "session_pk": 1,
                        "expires_at": expires,
                    }
                    for (who, number), expires in routes.items()
                ],
            )
        pair_rows = {e164[index % len(e164)]: at for index, at in history}
        if pair_rows:
            database.execute(
                pair_history.insert(),
                [
                    {
                        "voice_connector_pk": CONNECTOR,
                        "pair": pair_key(A, B),
                        "proxy_number": number,
                        "last_used_at": at,
                    }
                    for number, at in pair_rows.items()
                ],
            )
        full = _outcome(database, request, prefilter=False, limit=limit)
        pre = _outcome(database, request, prefilter=True, limit=limit)
    finally:
        transaction.rollback()

    if isinstance(full, tuple):
        assert pre == full
        return
    assert isinstance(pre, list)
    assert pre[0] == full[0]
    # Same relative order: the pre-filtered ranking is the full ranking with rows left out.
    assert [number for number in full if number in set(pre)] == pre


def _number_row(number: dict[str, object]) -> dict[str, object]:
    return {
        **number,
        "account": "111122223333",
        "region": "us-east-1",
        "number_type": "Local",
        "product_type": "VoiceConnector",
        "created_at": NOW,
        "updated_at": NOW,
    }
