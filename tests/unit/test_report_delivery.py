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


def test_an_unqueued_report_is_delivered_and_retried_until_the_server_takes_it(
    delivery: ReportDelivery, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = Server()
    monkeypatch.setattr(delivery, "_deliver", server.deliver)
    delivery.take_unqueued(" 3(2620) INFO: <core>: anything else")
    delivery.take_unqueued(LINE)
    assert delivery.pending() == 1
    assert delivery.deliver_due() == 0  # the server is down: kept, with a backoff
    assert delivery.pending() == 1 and delivery.failed_attempts == 1
    server.up = True
    assert delivery.deliver_due() == 0  # not due yet
    monkeypatch.setattr("chimeproxy.dataplane.edge.reports.time.time", lambda: 2e9)
    assert delivery.deliver_due() == 1
    assert server.received == [
        ("01a236e2-c941-7300-acff-81c3546646d3", '{"outcome":"completed","duration_seconds":61}')
    ]
    assert (delivery.pending(), delivery.delivered) == (0, 1)
