"""What handlers share: settings, database, clock, the event sink, the number catalog, the
token key and the group commit of the hot writes. Built once by the application and handed to
every operation and endpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from chimeproxy.clock import Clock
from chimeproxy.domain.catalog import Catalog
from chimeproxy.events import EventSink, NullSink
from chimeproxy.settings import Settings
from chimeproxy.store import catalog as catalog_store
from chimeproxy.store.database import Database
from chimeproxy.store.prepared import WriteBatch


@dataclass
class Services:
    settings: Settings
    db: Database
    clock: Clock
    events: EventSink = field(default_factory=NullSink)

    _catalog: tuple[str | None, Catalog] | None = None

    def catalog(self) -> Catalog:
        """The catalog in force (store/catalog.py), reloaded when an import changes it."""
        with self.db.read() as connection:
            current = catalog_store.revision(connection)
            if self._catalog is None or self._catalog[0] != current:
                self._catalog = (current, catalog_store.in_force(connection))
        return self._catalog[1]

    @cached_property
    def token_key(self) -> bytes:
        return self.db.token_key()

    @cached_property
    def writes(self) -> WriteBatch:
        """The write path of the hot writes (`/route`, Create, Update and Delete of sessions): on
        SQLite those arriving in one turn of the event loop share a commit; on PostgreSQL each
        runs in a transaction of its own in a worker thread (store/prepared.py)."""
        return WriteBatch(self.db)
