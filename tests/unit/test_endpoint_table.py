"""protocol.endpoints.EndpointTable: fixed paths, then templates matched as one alternation per
method, the first added winning, labels percent-decoded."""

from __future__ import annotations

import pytest

from chimeproxy.protocol.endpoints import Access, Endpoint, EndpointTable
from chimeproxy.protocol.http import Request, Response


async def _handler(request: Request, labels: dict[str, str]) -> Response:
    return Response(200)


def _endpoint(name: str) -> Endpoint:
    return Endpoint(name, Access.NONE, _handler)


@pytest.fixture
def table() -> EndpointTable:
    table = EndpointTable()
    table.add("GET", "/_chimeproxy/health", _endpoint("Health"))
    table.add("GET", "/things/{thing}", _endpoint("Thing"))
    table.add("GET", "/things/{thing}/parts/{part}", _endpoint("Part"))
    table.add("GET", "/things/{thing}/parts/{part}/{rest}", _endpoint("PartRest"))
    table.add("GET", "/{anything}/parts/{part}", _endpoint("Shadowed"))  # after "Part"
    table.add("POST", "/things/{thing}/end", _endpoint("End"))
    table.add("POST", "/{first}/{second}/end", _endpoint("LaterEnd"))
    return table


@pytest.mark.parametrize(
    ("method", "path", "name", "labels"),
    [
        ("GET", "/_chimeproxy/health", "Health", {}),
        ("GET", "/things/a%2Bb", "Thing", {"thing": "a+b"}),
        ("GET", "/things/t/parts/p", "Part", {"thing": "t", "part": "p"}),
        ("GET", "/things/t/parts/p/r", "PartRest", {"thing": "t", "part": "p", "rest": "r"}),
        ("GET", "/other/parts/p", "Shadowed", {"anything": "other", "part": "p"}),
        ("POST", "/things/t/end", "End", {"thing": "t"}),
        ("POST", "/x/y/end", "LaterEnd", {"first": "x", "second": "y"}),
    ],
)
def test_the_first_template_added_that_matches_answers_with_its_labels(
    table: EndpointTable, method: str, path: str, name: str, labels: dict[str, str]
) -> None:
    found = table.match(method, path)
    assert found is not None
    endpoint, matched = found
    assert (endpoint.name, matched) == (name, labels)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/things/"),  # a label matches a non-empty segment
        ("GET", "/things/a/b"),
        ("GET", "/things/t/parts/p/r/s"),
        ("DELETE", "/things/t"),  # no template of this method
        ("POST", "/things/t"),
        ("GET", "/_chimeproxy/health/"),
        ("GET", "/voice-connectors/abc/proxy-sessions/def"),
    ],
)
def test_nothing_else_matches(table: EndpointTable, method: str, path: str) -> None:
    assert table.match(method, path) is None


def test_a_path_added_twice_is_refused(table: EndpointTable) -> None:
    with pytest.raises(ValueError, match="already an endpoint"):
        table.add("GET", "/_chimeproxy/health", _endpoint("Again"))
