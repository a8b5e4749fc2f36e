"""Fixtures of the SIP edge's tests (test_sip_*.py): the routing service they call through."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from chimeproxy.testing import ChimeProxyServer, drop_test_database
from tests.conftest import database_url, make_client, require_tool
from tests.integration.sip import ROUTE_SECRET


@pytest.fixture(scope="module")
def routing_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChimeProxyServer]:
    """A server for one SIP test module: the route secret the edges send, clock control."""
    # Every edge runs Kamailio and rtpengine, with its media filter (nft); SIPp plays the phones.
    for tool in ("kamailio", "rtpengine", "nft", "sipp"):
        require_tool(tool)
    directory = tmp_path_factory.mktemp("routing")
    database = database_url(directory)
    running = ChimeProxyServer(
        database=database,
        extra_args=["--clock-control"],
        env={"CHIMEPROXY_ROUTE_SECRET": ROUTE_SECRET},
        log_path=directory / "server.log",
    ).start()
    yield running
    running.stop()
    drop_test_database(database)


@pytest.fixture(scope="module")
def voice(routing_server: ChimeProxyServer) -> Any:
    """boto3's chime-sdk-voice client of the routing server."""
    return make_client(routing_server.url)
