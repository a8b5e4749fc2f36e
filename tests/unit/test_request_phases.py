"""A request yields to the event loop between its phases only while other requests are in
progress, and then exactly once between each two phases (app.ChimeProxyApp.handle): a lone
request never waits for turns of the loop, and a signed request under load pays for two
yields, no more; one without a signature to check, or whose work waited for a write batch, for
fewer. The coroutine is stepped by hand, so every suspension is counted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chimeproxy import app as app_module
from chimeproxy.app import ChimeProxyApp
from chimeproxy.protocol.endpoints import Access, Endpoint
from chimeproxy.protocol.http import Response
from tests.conftest import in_process_settings

HEALTH_SCOPE = {
    "type": "http",
    "http_version": "1.1",
    "method": "GET",
    "path": "/_chimeproxy/health",
    "raw_path": b"/_chimeproxy/health",
    "query_string": b"",
    "headers": [(b"host", b"127.0.0.1:8089")],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8089),
}


LISTING_SCOPE = {**HEALTH_SCOPE, "path": "/voice-connectors", "raw_path": b"/voice-connectors"}


def _suspensions(app: ChimeProxyApp, scope: dict[str, Any] = HEALTH_SCOPE) -> tuple[int, list[int]]:
    """How often one request's coroutine suspends before it finishes, and the statuses sent."""
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        raise AssertionError("a request without a body never asks for one")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    coroutine = app(dict(scope), receive, send)
    suspended = 0
    while True:
        try:
            coroutine.send(None)
        except StopIteration:
            return suspended, statuses
        suspended += 1


@pytest.fixture
def app(tmp_path: Path) -> ChimeProxyApp:
    return ChimeProxyApp(in_process_settings(tmp_path), announce=False)


def test_a_lone_request_never_yields(app: ChimeProxyApp) -> None:
    assert _suspensions(app) == (0, [503])  # 503: the app was not started


def test_a_signed_request_among_others_yields_once_between_each_two_phases(
    app: ChimeProxyApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_module, "others_in_progress", lambda: True)
    listing = app.operations["ListVoiceConnectors"]

    async def work(request: Any, labels: dict[str, str]) -> Response:
        return Response(200, b"{}")

    app.operations["ListVoiceConnectors"] = Endpoint(listing.name, listing.access, work)
    assert listing.access is Access.SIGV4
    assert _suspensions(app, LISTING_SCOPE) == (2, [200])


def test_a_request_without_a_signature_to_check_yields_only_after_its_work(
    app: ChimeProxyApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Health (as the data plane): no signature phase to gather, so no yield before the work."""
    monkeypatch.setattr(app_module, "others_in_progress", lambda: True)
    assert _suspensions(app) == (1, [503])


def test_a_request_whose_work_waited_for_a_write_batch_answers_without_another_yield(
    app: ChimeProxyApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_module, "others_in_progress", lambda: True)
    monkeypatch.setattr(app_module, "waited_for_batch", lambda: True)
    assert _suspensions(app) == (0, [503])
