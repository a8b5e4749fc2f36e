"""CreatedTimestamp never repeats or goes back within a voice connector, so keyset pages by
(CreatedTimestamp, id) cannot skip a session created while someone pages."""

from __future__ import annotations

from pathlib import Path

from chimeproxy.store import proxy
from chimeproxy.store.database import Database
from chimeproxy.store.schema import proxy_sessions, voice_connectors
from tests.unit.store_rows import session_row


def test_stamps_follow_the_newest_session_of_the_connector(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'db'}")
    database.upgrade()
    with database.write() as connection:
        pks = [
            connection.execute(
                voice_connectors.insert().values(
                    account="123456789012", region="us-east-1", id=f"vc{n}", name="x",
                    aws_region="us-east-1", require_encryption=False, created_at=0, updated_at=0,
                )
            ).inserted_primary_key[0]
            for n in range(2)
        ]  # fmt: skip
        assert proxy.creation_stamp(connection, pks[0], 1_000) == 1_000  # no session yet
        connection.execute(
            proxy_sessions.insert().values(**session_row(pks[0], "session-1", 1, 1_000))
        )
        assert proxy.creation_stamp(connection, pks[0], 1_000) == 1_001  # same millisecond
        assert proxy.creation_stamp(connection, pks[0], 400) == 1_001  # wall clock went back
        assert proxy.creation_stamp(connection, pks[0], 5_000) == 5_000  # time moved on
        assert proxy.creation_stamp(connection, pks[1], 1_000) == 1_000  # per connector
    database.dispose()
