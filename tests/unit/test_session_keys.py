"""Session keys: a session's time-ordered id and the key SQLite stores it under
(domain.ids.session_key, store.proxy.stored_key), against the standard library's `uuid` as the
oracle for the id's fields; and the look-ups that use the key reading the row by it."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import insert, select

from chimeproxy.domain.ids import (
    SESSION_KEY_EPOCH_MS,
    SESSION_KEY_RANDOM_BITS,
    SESSION_KEY_TIME_BITS,
    session_key,
)
from chimeproxy.store import proxy
from chimeproxy.store.database import Database
from chimeproxy.store.prepared import write
from chimeproxy.store.schema import proxy_sessions
from chimeproxy.uuids import random_uuid, time_ordered_uuid
from tests.unit.store_rows import ACCOUNT, CONNECTOR_ID, add_voice_connector, session_row

NOW = 1_800_000_000_000  # 2027
LOW_BITS = (1 << SESSION_KEY_RANDOM_BITS) - 1


def test_a_key_is_the_ids_millisecond_since_2020_then_its_last_random_bits() -> None:
    for millis in (SESSION_KEY_EPOCH_MS, NOW, SESSION_KEY_EPOCH_MS + (1 << 41) - 1):
        for _ in range(200):
            session_id = time_ordered_uuid(millis)
            value = uuid.UUID(session_id).int
            expected = (value >> 80) - SESSION_KEY_EPOCH_MS << SESSION_KEY_RANDOM_BITS
            assert session_key(session_id) == expected | value & LOW_BITS
            assert 0 <= session_key(session_id) < 1 << 62  # type: ignore[operator]


def test_keys_follow_the_ids_time_order() -> None:
    """What keeps a listing's page on neighbouring rows and inserts at the table's end."""
    ids = [time_ordered_uuid(NOW + step) for step in range(0, 5_000, 7)]
    keys = [session_key(session_id) for session_id in ids]
    assert keys == sorted(keys)  # type: ignore[type-var]
    assert len(set(keys)) == len(keys)


def test_ids_of_one_millisecond_take_their_keys_random_bits_from_the_id() -> None:
    keys = {session_key(time_ordered_uuid(NOW)) for _ in range(2_000)}
    assert len(keys) > 1_990  # 21 random bits: a repeat among 2,000 is rare
    assert {key >> SESSION_KEY_RANDOM_BITS for key in keys} == {NOW - SESSION_KEY_EPOCH_MS}  # type: ignore[operator]


@pytest.mark.parametrize(
    "session_id",
    [
        "0b0c8f9e-5d2a-4c4e-9f1a-3e7d6c5b4a39",  # random (version 4): created before
        str(uuid.UUID(int=(SESSION_KEY_EPOCH_MS - 1) << 80 | 0x7 << 76 | 0b10 << 62)),  # 2019
        str(uuid.UUID(int=(SESSION_KEY_EPOCH_MS + (1 << SESSION_KEY_TIME_BITS)) << 80 | 0x7 << 76)),
        "",
        "not-a-session",
        "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4g5h",  # not hex
        "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b6",  # too long
    ],
)
def test_ids_that_make_no_key(session_id: str) -> None:
    assert session_key(session_id) is None


@given(st.text(max_size=64))
def test_any_text_makes_a_key_in_range_or_none(text: str) -> None:
    key = session_key(text)
    assert key is None or 0 <= key < 1 << 62


def test_only_sqlite_stores_sessions_under_keys_made_from_their_ids() -> None:
    session_id = time_ordered_uuid(NOW)
    assert proxy.stored_key("sqlite", session_id) == session_key(session_id)
    assert proxy.stored_key("postgresql", session_id) is None


def _ids(session_id: str) -> dict[str, Any]:
    return {"account": ACCOUNT, "region": "us-east-1", "connector_id": CONNECTOR_ID,
            "session_id": session_id, "now": NOW, "retention_ms": 1}  # fmt: skip


def test_a_new_session_is_stored_under_its_key_and_found_by_it(db: Database) -> None:
    session_id = time_ordered_uuid(NOW)
    with db.write() as connection:
        add_voice_connector(connection, name="keys")
    with write(db) as run:
        assert proxy.insert_session(run, session_row(1, session_id, 1, NOW)) == session_key(
            session_id
        )
    found = proxy.find_session_by_ids(db, ACCOUNT, "us-east-1", CONNECTOR_ID, session_id, NOW, 1)
    assert found is not None and session_id in found
    with write(db) as run:
        row = proxy.session_to_change(run, ACCOUNT, "us-east-1", CONNECTOR_ID, session_id, NOW, 1)
    assert row is not None and row["pk"] == session_key(session_id)


def test_a_session_stored_before_keys_were_made_from_ids_is_found_by_its_id(db: Database) -> None:
    """Sessions of earlier versions (random ids, keys counted up) stay readable and changeable;
    so does one whose key is not the one its id makes."""
    old_id, odd_id = random_uuid(), time_ordered_uuid(NOW)
    with db.write() as connection:
        add_voice_connector(connection, name="keys")
        connection.execute(insert(proxy_sessions).values(pk=7, **session_row(1, old_id, 1, NOW)))
        connection.execute(insert(proxy_sessions).values(pk=8, **session_row(1, odd_id, 2, NOW)))
    for session_id, pk in ((old_id, 7), (odd_id, 8)):
        with write(db) as run:
            row = proxy.session_to_change(
                run, ACCOUNT, "us-east-1", CONNECTOR_ID, session_id, NOW, 1
            )
        assert row is not None and row["pk"] == pk
    # Get's one statement finds the old one; the odd one it leaves to the path by id, which
    # words the errors (operations.proxy.get_proxy_session).
    assert proxy.find_session_by_ids(db, ACCOUNT, "us-east-1", CONNECTOR_ID, old_id, NOW, 1)
    with db.read() as connection:
        assert proxy.find_session(connection, 1, odd_id, NOW, 1) is not None
        stored = connection.scalar(select(proxy_sessions.c.pk).where(proxy_sessions.c.id == odd_id))
    assert stored == 8


@pytest.mark.parametrize("statement", ["_SESSION_BY_KEY", "_SESSION_TO_CHANGE_BY_KEY"])
def test_a_look_up_by_key_reads_the_row_by_it_not_through_the_ids_index(
    db: Database, statement: str
) -> None:
    compiled = getattr(proxy, statement).compiled(db.engine.dialect)
    params = {**_ids(time_ordered_uuid(NOW)), "session_pk": 1}
    with db.read() as connection:
        driver = connection.connection.driver_connection
        rows = driver.execute(  # type: ignore[union-attr]
            f"EXPLAIN QUERY PLAN {compiled.sql}", compiled.arguments(params)
        ).fetchall()
    plan = "\n".join(row[-1] for row in rows)
    assert "SEARCH proxy_sessions USING INTEGER PRIMARY KEY (rowid=?)" in plan, plan
    assert "sqlite_autoindex_proxy_sessions" not in plan, plan
