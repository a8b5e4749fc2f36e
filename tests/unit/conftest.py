"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chimeproxy.store.database import Database


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A migrated SQLite database of the test's own, disposed of afterwards."""
    database = Database(f"sqlite:///{tmp_path / 'unit.db'}")
    database.upgrade()
    yield database
    database.dispose()
