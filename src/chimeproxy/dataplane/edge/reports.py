"""Delivery of end-of-call reports. Kamailio queues each report in SQLite (`end_reports` in
reports.db) instead of posting it itself, so no report is lost while the routing service is
down or Kamailio restarts; this loop posts them to `/_chimeproxy/interactions/{id}/end` and
deletes each once the server has acknowledged it (the server keeps the first end it is told,
so a report delivered twice changes nothing). A report Kamailio could not queue (the file
locked past its busy timeout, a full disk) is in the error line it logs instead: it is taken
from there and delivered from memory, and put into the queue after a failed attempt when the
file takes it then, so it is lost only if the edge stops while the server is unreachable and
the file refuses it."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from chimeproxy.dataplane.edge.kamailio import unqueued_report
from chimeproxy.dataplane.edge.settings import service_headers
from chimeproxy.httpclient import HttpError, post_blocking

log = logging.getLogger("chimeproxy.sip_edge.reports")

POLL_SECONDS = 0.25
BATCH = 50
MAX_BACKOFF_SECONDS = 30.0
POST_TIMEOUT_SECONDS = 5.0


def _backoff(attempts: int) -> float:
    """Seconds before the next attempt at a report that failed `attempts` times before."""
    return min(MAX_BACKOFF_SECONDS, 0.5 * 2**attempts)


class ReportDelivery:
    def __init__(self, database: Path, service_url: str, route_secret: str | None) -> None:
        self.database = database
        self.service_url = service_url
        self.headers = service_headers(route_secret)
        self.delivered = 0
        self.failed_attempts = 0
        self._stopping = threading.Event()
        # Reports Kamailio could not queue: (interaction id, body, attempts, next attempt).
        self._unqueued: deque[tuple[str, str, int, float]] = deque()
        self._unqueued_lock = threading.Lock()

    def pending(self) -> int:
        with self._connect() as connection:
            queued = int(connection.execute("SELECT count(*) FROM end_reports").fetchone()[0])
        return queued + len(self._unqueued)

    def take_unqueued(self, line: str) -> None:
        """A Kamailio log line; when it says a report could not be queued, that report is
        delivered from memory."""
        found = unqueued_report(line)
        if found is not None:
            with self._unqueued_lock:
                self._unqueued.append((*found, 0, 0.0))

    def run(self) -> None:
        """Deliver until `stop()`; a report the server cannot take now is tried again later,
        waiting longer after each failure (up to MAX_BACKOFF_SECONDS)."""
        while not self._stopping.is_set():
            try:
                self.deliver_due()
            except sqlite3.Error as exc:
                log.warning("report queue unreadable; will try again", extra={"problem": str(exc)})
            except Exception:  # a report must never stop the ones after it from being delivered
                log.exception("end-of-call reports not delivered this time; will try again")
            self._stopping.wait(POLL_SECONDS)

    def stop(self) -> None:
        self._stopping.set()

    def deliver_due(self) -> int:
        """One pass over the reports due now; answers how many were delivered."""
        from_memory = self._deliver_unqueued()
        delivered = 0
        now = time.time()
        with self._connect() as connection:
            due = connection.execute(
                "SELECT id, interaction_id, body, attempts FROM end_reports "
                "WHERE next_attempt <= ? ORDER BY id LIMIT ?",
                (now, BATCH),
            ).fetchall()
        for row_id, interaction_id, body, attempts in due:
            if self._stopping.is_set():
                break
            if self._deliver(interaction_id, body):
                self._forget(row_id)
                delivered += 1
            else:
                self.failed_attempts += 1
                self._postpone(row_id, attempts + 1, now + _backoff(attempts))
        self.delivered += delivered
        return from_memory + delivered

    def _deliver_unqueued(self) -> int:
        """The reports held in memory that are due: before the queue's, which a locked file
        may keep from being read at all."""
        with self._unqueued_lock:
            held, self._unqueued = self._unqueued, deque()
        now = time.time()
        delivered = 0
        kept: list[tuple[str, str, int, float]] = []
        for interaction_id, body, attempts, when in held:
            if when > now or self._stopping.is_set():
                kept.append((interaction_id, body, attempts, when))
            elif self._deliver(interaction_id, body):
                delivered += 1
            else:
                self.failed_attempts += 1
                retry = (interaction_id, body, attempts + 1, now + _backoff(attempts))
                if not self._queue(*retry):
                    kept.append(retry)
        with self._unqueued_lock:
            self._unqueued.extendleft(reversed(kept))
        self.delivered += delivered
        return delivered

    def _queue(self, interaction_id: str, body: str, attempts: int, when: float) -> bool:
        """Put a report held in memory into the queue, where it outlives a restart of the edge,
        when the file takes it now; whether it did."""
        try:
            with self._connect(timeout=0.1) as connection:
                connection.execute(
                    "INSERT INTO end_reports (interaction_id, body, created, attempts, "
                    "next_attempt) VALUES (?, ?, ?, ?, ?)",
                    (interaction_id, body, int(time.time()), attempts, when),
                )
        except sqlite3.Error:
            return False
        return True

    def _deliver(self, interaction_id: str, body: str) -> bool:
        url = f"{self.service_url}/_chimeproxy/interactions/{quote(interaction_id, safe='')}/end"
        try:
            status = post_blocking(url, body.encode(), self.headers, timeout=POST_TIMEOUT_SECONDS)
        except HttpError as exc:
            log.warning(
                "end of call not delivered; will retry",
                extra={"interaction_id": interaction_id, "problem": str(exc)},
            )
            return False
        if 200 <= status < 300:
            return True
        if status == 404:
            # The interaction is gone (its session deleted, or purged): nothing to record.
            log.info(
                "end of call for an interaction the server no longer has",
                extra={"interaction_id": interaction_id},
            )
            return True
        if 400 <= status < 500 and status not in (403, 408, 429):
            log.error(
                "end of call refused by the server; dropped",
                extra={"interaction_id": interaction_id, "status": status},
            )
            return True
        log.warning(
            "end of call not delivered; will retry",
            extra={"interaction_id": interaction_id, "status": status},
        )
        return False

    def _forget(self, row_id: int) -> None:
        with self._connect() as connection:
            connection.execute("DELETE FROM end_reports WHERE id = ?", (row_id,))

    def _postpone(self, row_id: int, attempts: int, when: float) -> None:
        with self._connect() as connection:
            connection.execute(
                "UPDATE end_reports SET attempts = ?, next_attempt = ? WHERE id = ?",
                (attempts, when, row_id),
            )

    @contextlib.contextmanager
    def _connect(self, timeout: float = 5.0) -> Iterator[sqlite3.Connection]:
        # One statement per transaction: Kamailio's inserts do not wait for a lock (db_sqlite
        # sets no busy timeout), so this side holds it as briefly as it can.
        connection = sqlite3.connect(self.database, timeout=timeout, isolation_level=None)
        try:
            yield connection
        finally:
            connection.close()
