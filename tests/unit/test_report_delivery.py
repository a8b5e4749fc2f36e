"""End-of-call report delivery (dataplane/edge/reports.py): a report Kamailio could not queue
is read from its log line and delivered from memory, with the queue's retries (the server
faked at `_deliver`, the queue a real SQLite file)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from chimeproxy.dataplane.edge.config import END_REPORTS_SCHEMA
from chimeproxy.dataplane.edge.kamailio import unqueued_report
from chimeproxy.dataplane.edge.reports import ReportDelivery

# As Kamailio prints it (route[REPORT_END]'s xlog), and as forward_logs hands it on.
LINE = (
    " 7(2619) ERROR: <script>: end report not queued: 01a236e2-c941-7300-acff-81c3546646d3 "
    '{"outcome":"completed","duration_seconds":61}'
)


def test_the_line_gives_the_interaction_and_its_report() -> None:
    assert unqueued_report(LINE) == (
        "01a236e2-c941-7300-acff-81c3546646d3",
        '{"outcome":"completed","duration_seconds":61}',
    )


@pytest.mark.parametrize(
    "line",
    [
        " 7(2619) ERROR: sqlops [sql_api.c:297]: sql_do_query(): cannot do the query [INSERT",
        " 7(2619) ERROR: <script>: end report not queued: bad/id {}",
        " 7(2619) ERROR: <script>: end report not queued: 0190 not-json",
    ],
)
def test_other_lines_give_nothing(line: str) -> None:
    assert unqueued_report(line) is None


class Server:
    def __init__(self) -> None:
        self.up = False
        self.received: list[tuple[str, str]] = []

    def deliver(self, interaction_id: str, body: str) -> bool:
        if self.up:
            self.received.append((interaction_id, body))
        return self.up


@pytest.fixture
def delivery(tmp_path: Path) -> ReportDelivery:
    database = tmp_path / "reports.db"
    with sqlite3.connect(database) as connection:
        connection.executescript(END_REPORTS_SCHEMA)
    return ReportDelivery(database, "http://127.0.0.1:1", None)


def test_an_unqueued_report_is_delivered_from_memory(
    delivery: ReportDelivery, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = Server()
    server.up = True
    monkeypatch.setattr(delivery, "_deliver", server.deliver)
    delivery.take_unqueued(" 3(2620) INFO: <core>: anything else")
    delivery.take_unqueued(LINE)
    assert delivery.pending() == 1
    assert delivery.deliver_due() == 1
    assert server.received == [
        ("01a236e2-c941-7300-acff-81c3546646d3", '{"outcome":"completed","duration_seconds":61}')
    ]
    assert (delivery.pending(), delivery.delivered) == (0, 1)


def test_one_the_server_did_not_take_goes_into_the_queue_and_is_retried_from_there(
    delivery: ReportDelivery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where it outlives a restart of the edge; delivered once the server is back and its
    backoff is over."""
    server = Server()
    monkeypatch.setattr(delivery, "_deliver", server.deliver)
    delivery.take_unqueued(LINE)
    assert delivery.deliver_due() == 0  # the server is down
    assert (delivery.pending(), len(delivery._unqueued), delivery.failed_attempts) == (1, 0, 1)
    with sqlite3.connect(delivery.database) as connection:
        assert connection.execute("SELECT attempts FROM end_reports").fetchall() == [(1,)]
    server.up = True
    assert delivery.deliver_due() == 0  # not due yet
    monkeypatch.setattr("chimeproxy.dataplane.edge.reports.time.time", lambda: 2e9)
    assert delivery.deliver_due() == 1
    assert [interaction for interaction, _ in server.received] == [
        "01a236e2-c941-7300-acff-81c3546646d3"
    ]
    assert (delivery.pending(), delivery.delivered) == (0, 1)


def test_one_the_file_refuses_too_stays_in_memory(
    delivery: ReportDelivery, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = Server()
    monkeypatch.setattr(delivery, "_deliver", server.deliver)
    delivery.take_unqueued(LINE)
    locker = sqlite3.connect(delivery.database, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        assert delivery._deliver_unqueued() == 0
        assert len(delivery._unqueued) == 1  # not lost
    finally:
        locker.execute("ROLLBACK")
        locker.close()
