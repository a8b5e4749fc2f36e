"""Bulk seeding of a fresh chimeproxy database (SQLite, or PostgreSQL with `url`), straight
into the store.

Going through the API would take hours for a million sessions, so the schema comes from the
server's own Alembic migrations and the rows go in with `executemany` (SQLite) or `COPY`
(PostgreSQL), column names taken from
`chimeproxy.store.schema` so they cannot drift from it. What is seeded, and how it keeps the
routing invariant:

- one voice connector with a proxy configuration (pool country US, default expiry 60 min);
- `pool` phone numbers (US local numbers of the built-in fictional catalog), Assigned to it;
- `sessions` proxy sessions: the newest `open_sessions` are Open with their two `active_routes`
  rows each (every Open session has participants of its own, so no participant is twice on a
  proxy number); all the others are Closed and still inside the retention period, so they are
  readable but hold no route — the shape of a busy deployment, where closed sessions kept for
  30 days far outnumber the live ones. One closed session in REGULAR_EVERY belongs to one of
  `regulars` pairs who keep meeting (a patient and a clinic): each such pair had about twenty
  sessions, on about as many numbers;
- a `pair_history` row per (pair, proxy number), with the pair's latest use;
- each number's `last_allocated_at` is the last time a seeded session got it.
"""

from __future__ import annotations

import itertools
import random
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table

from chimeproxy.domain.catalog_builtin import builtin_catalog
from chimeproxy.domain.ids import session_key, voice_connector_id
from chimeproxy.store.database import Database
from chimeproxy.store.schema import (
    active_routes,
    pair_history,
    phone_numbers,
    proxy_configs,
    proxy_sessions,
    voice_connectors,
)

ACCOUNT = "111122223333"
REGION = "us-east-1"
CONNECTOR_PK = 1
DEFAULT_EXPIRY_MINUTES = 60
MINUTE_MS = 60_000
DAY_MS = 86_400_000
CHUNK = 50_000
REGULAR_EVERY = 10
CAPABILITIES = "InboundCall,InboundSMS,OutboundCall,OutboundSMS"
# A version 7 UUID's fixed bits (version, variant) and its 74 random ones (RFC 9562).
_V7 = 0x7 << 76 | 0b10 << 62
_V7_RANDOM = 0x0FFF << 64 | (1 << 62) - 1


@dataclass
class Seeded:
    """What the load generator needs to know about the seeded database."""

    database_path: str
    connector_id: str
    sessions: int
    open_sessions: int
    pool: list[str]
    # A uniform sample of session ids (Get targets) and the Open sessions' ids and participants.
    sample_ids: list[str] = field(default_factory=list)
    open_ids: list[str] = field(default_factory=list)
    open_participants: list[tuple[str, str, str]] = field(default_factory=list)
    # The pairs who keep meeting (see the module's docstring), none of them busy now.
    regular_pairs: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


def _columns(table: Table) -> list[str]:
    return [column.name for column in table.columns]


class _SqliteSink:
    """Rows into SQLite in one transaction, by executemany in chunks."""

    def __init__(self, path: str) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=OFF")
        self.connection.execute("BEGIN")

    def insert(self, table: Table, rows: Iterator[dict[str, Any]]) -> None:
        """executemany in chunks, so a million rows never sit in memory at once."""
        names = _columns(table)
        marks = ", ".join("?" * len(names))
        sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks})"
        chunk: list[tuple[Any, ...]] = []
        for row in rows:
            chunk.append(tuple(row.get(name) for name in names))
            if len(chunk) >= CHUNK:
                self.connection.executemany(sql, chunk)
                chunk.clear()
        if chunk:
            self.connection.executemany(sql, chunk)

    def finish(self) -> None:
        self.connection.execute("COMMIT")
        self.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.connection.close()


class _PostgresSink:
    """Rows into PostgreSQL in one transaction, by COPY; then the sequences of the primary keys
    given explicitly move past them, and the planner's statistics are gathered."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.connection = psycopg.connect(libpq_url(url))

    def insert(self, table: Table, rows: Iterator[dict[str, Any]]) -> None:
        first = next(rows, None)
        if first is None:
            return
        # A primary key not given is the sequence's (SQLite numbers a NULL one itself).
        names = [name for name in _columns(table) if name != "pk" or "pk" in first]
        rows = itertools.chain([first], rows)
        with (
            self.connection.cursor() as cursor,
            cursor.copy(f"COPY {table.name} ({', '.join(names)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(tuple(row.get(name) for name in names))

    def finish(self) -> None:
        with self.connection.cursor() as cursor:
            for table in (voice_connectors, proxy_sessions, phone_numbers):
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', 'pk'), "
                    f"(SELECT max(pk) FROM {table.name}))"
                )
        self.connection.commit()
        self.connection.autocommit = True
        self.connection.execute("VACUUM ANALYZE")
        self.connection.close()


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (`postgresql+psycopg://...`) as libpq reads it."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def participant(kind: int, index: int) -> str:
    """A valid, distinct NANP number per (kind, index); kinds use disjoint area codes.

    kind 0/1: closed sessions' riders/drivers; 2/3: Open sessions' two participants;
    4/5: CreateProxySession's participants (never seeded, so every create is new).
    """
    area = ("206", "253", "425", "360", "503", "971")[kind]
    exchange = 200 + index // 10_000  # 200..999 stays a valid exchange up to 8,000,000
    return f"+1{area}{exchange:03d}{index % 10_000:04d}"


def pool_numbers(count: int) -> list[tuple[str, str]]:
    """(e164, area code) of the first `count` US local numbers of the built-in catalog."""
    numbers = [
        (n.e164, n.area_code or "")
        for n in builtin_catalog()
        if n.country == "US" and n.number_type == "Local"
    ]
    if len(numbers) < count:
        raise ValueError(f"the built-in catalog has only {len(numbers)} US local numbers")
    return numbers[:count]


def seed(
    path: str,
    *,
    sessions: int,
    pool: int,
    open_sessions: int,
    riders: int = 200_000,
    drivers: int = 50_000,
    regulars: int = 5_000,
    sample: int = 20_000,
    rng_seed: int = 7,
    url: str | None = None,
) -> Seeded:
    """Create the schema with the server's migrations, then bulk-insert the dataset: into the
    SQLite file `path`, or into the (empty) PostgreSQL database at `url`."""
    started = time.perf_counter()
    rng = random.Random(rng_seed)
    Database(url or f"sqlite:///{path}").upgrade()
    now = int(time.time() * 1000)
    open_sessions = min(open_sessions, sessions)
    closed = sessions - open_sessions
    connector_id = voice_connector_id()
    numbers = pool_numbers(pool)

    sink = _PostgresSink(url) if url else _SqliteSink(path)
    sink.insert(
        voice_connectors,
        iter(
            [
                {
                    "pk": CONNECTOR_PK,
                    "account": ACCOUNT,
                    "region": REGION,
                    "id": connector_id,
                    "name": "bench",
                    "aws_region": REGION,
                    "require_encryption": False,
                    "created_at": now - 30 * DAY_MS,
                    "updated_at": now - 30 * DAY_MS,
                }
            ]
        ),
    )
    sink.insert(
        proxy_configs,
        iter(
            [
                {
                    "voice_connector_pk": CONNECTOR_PK,
                    "default_expiry_minutes": DEFAULT_EXPIRY_MINUTES,
                    "countries": "US",
                    "fallback_number": None,
                    "disabled": False,
                    "updated_at": now - 30 * DAY_MS,
                }
            ]
        ),
    )

    # Closed sessions over the last 20 days (retention is 30), then the Open ones over the last
    # 10 minutes; created_at increases with pk, as it does when the API creates them (the keys
    # made from time-ordered ids increase with their millisecond).
    span_closed = 20 * DAY_MS
    last_allocated: dict[str, int] = {}
    history: dict[tuple[str, str], int] = {}
    sample_every = max(1, sessions // sample)
    seeded = Seeded(path, connector_id, sessions, open_sessions, [e for e, _ in numbers])

    keyed = url is None  # SQLite: sessions stored under keys made from their ids
    open_pks: list[int] = []

    def session_rows() -> Iterator[dict[str, Any]]:
        last_pk = -1
        for index in range(sessions):
            is_open = index >= closed
            number = numbers[index % len(numbers)][0]
            regular = not is_open and index % REGULAR_EVERY == 0
            if is_open:
                k = index - closed
                created = now - 10 * MINUTE_MS + (k * 10 * MINUTE_MS) // max(1, open_sessions)
                first, second = participant(2, k), participant(3, k)
            elif regular:
                created = now - 20 * DAY_MS - DAY_MS + (index * span_closed) // max(1, closed)
                meeting, pair_index = divmod(index // REGULAR_EVERY, regulars)
                first = participant(0, riders + pair_index)
                second = participant(1, drivers + pair_index)
                # Each meeting on another number (a plain modulo would repeat the same one).
                number = numbers[(index + 7 * meeting) % len(numbers)][0]
            else:
                created = now - 20 * DAY_MS - DAY_MS + (index * span_closed) // max(1, closed)
                first = participant(0, rng.randrange(riders))
                second = participant(1, rng.randrange(drivers))
            expires = created + DEFAULT_EXPIRY_MINUTES * MINUTE_MS
            # Time-ordered, of its creation, as the API makes them (uuids.time_ordered_uuid);
            # on SQLite the row is stored under the key made from it, as the store does.
            session_id = str(uuid.UUID(int=created << 80 | rng.getrandbits(80) & _V7_RANDOM | _V7))
            pk = session_key(session_id) if keyed else index + 1
            assert pk is not None and pk > last_pk, "creation times must increase"
            last_pk = pk
            if index % sample_every == 0:
                seeded.sample_ids.append(session_id)
            if is_open:
                open_pks.append(pk)
                seeded.open_ids.append(session_id)
                seeded.open_participants.append((first, second, number))
            elif regular and index // REGULAR_EVERY < regulars:
                seeded.regular_pairs.append((first, second))
            last_allocated[number] = created
            pair = "|".join(sorted((first, second)))
            history[(pair, number)] = created
            yield {
                "pk": pk,
                "voice_connector_pk": CONNECTOR_PK,
                "id": session_id,
                "name": None,
                "status": "Open" if is_open else "Closed",
                "capabilities": "Voice,SMS",
                "expiry_minutes": DEFAULT_EXPIRY_MINUTES,
                "expiry_minutes_given": False,
                "number_selection_behavior": None,
                "geo_match_level": None,
                "geo_country": None,
                "geo_area_code": None,
                "participant_1": first,
                "participant_2": second,
                "proxy_number": number,
                "created_at": created,
                "updated_at": created,
                "expires_at": expires,
                "ended_at": None if is_open else expires,
            }

    sink.insert(proxy_sessions, session_rows())
    sink.insert(
        active_routes,
        (
            {
                "voice_connector_pk": CONNECTOR_PK,
                "participant": who,
                "proxy_number": number,
                "session_pk": open_pks[k],
                "expires_at": now
                - 10 * MINUTE_MS
                + (k * 10 * MINUTE_MS) // max(1, open_sessions)
                + DEFAULT_EXPIRY_MINUTES * MINUTE_MS,
            }
            for k, (first, second, number) in enumerate(seeded.open_participants)
            for who in (first, second)
        ),
    )
    sink.insert(
        pair_history,
        (
            {
                "voice_connector_pk": CONNECTOR_PK,
                "pair": pair,
                "proxy_number": number,
                "last_used_at": at,
            }
            for (pair, number), at in history.items()
        ),
    )
    history.clear()
    sink.insert(
        phone_numbers,
        (
            {
                "account": ACCOUNT,
                "region": REGION,
                "e164": e164,
                "country": "US",
                "area_code": area_code,
                "number_type": "Local",
                "product_type": "VoiceConnector",
                "status": "Assigned",
                "capabilities": CAPABILITIES,
                "voice_connector_pk": CONNECTOR_PK,
                "associated_at": now - 30 * DAY_MS,
                "last_allocated_at": last_allocated.get(e164),
                "created_at": now - 30 * DAY_MS,
                "updated_at": now - 30 * DAY_MS,
            }
            for e164, area_code in numbers
        ),
    )
    sink.finish()
    seeded.seconds = time.perf_counter() - started
    return seeded


_BROKEN_INVARIANT = (
    "SELECT voice_connector_pk, participant, proxy_number, count(*) FROM active_routes "
    "GROUP BY 1, 2, 3 HAVING count(*) > 1"
)


def check_invariant(path: str, url: str | None = None) -> Sequence[tuple[Any, ...]]:
    """Rows that would break the routing invariant (there should be none)."""
    if url:
        import psycopg

        with psycopg.connect(libpq_url(url)) as connection:
            return connection.execute(_BROKEN_INVARIANT).fetchall()
    with sqlite3.connect(path) as connection:
        return connection.execute(_BROKEN_INVARIANT).fetchall()


# The index docs/performance.md proposes: CreateProxySession's pre-filter orders the pool by
# (last_allocated_at, length(e164), e164), so with it SQLite reads a few index entries instead
# of every number of the connector. It was an experiment here (`--allocation-index`); the
# schema now has its own form of it (migration 0003), so this adds nothing the server needs.
ALLOCATION_INDEX = (
    "CREATE INDEX ix_bench_phone_numbers_allocation "
    "ON phone_numbers (voice_connector_pk, last_allocated_at, length(e164), e164)"
)


def add_allocation_index(path: str) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute(ALLOCATION_INDEX)
