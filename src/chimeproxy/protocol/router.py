"""Route a raw HTTP method, path and query to an operation of the model, using each `requestUri`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any
from urllib.parse import parse_qsl, unquote

from botocore.model import OperationModel, ServiceModel

from chimeproxy.protocol.errors import BadRequestException


@dataclass(frozen=True, slots=True)
class Route:
    operation: OperationModel
    segments: tuple[str | None, ...]  # literal segment, or None for a {label}
    labels: tuple[tuple[int, str], ...]  # (segment index, label name)
    query: tuple[tuple[str, str], ...]  # discriminators such as ("operation", "restore")

    def specificity(self) -> tuple[int, int]:
        return (len(self.query), sum(1 for s in self.segments if s is not None))

    def literals(self) -> tuple[Callable[[list[str]], Any], Any]:
        """A function picking the path's parts at this route's literal segments, and what it
        must answer (one C call per candidate instead of a generator over the segments)."""
        positions = [index for index, segment in enumerate(self.segments) if segment is not None]
        expected = tuple(self.segments[index] for index in positions)
        if not positions:
            return (lambda parts: ()), ()
        if len(positions) == 1:
            return itemgetter(positions[0]), expected[0]
        return itemgetter(*positions), expected


# Not frozen: one is built per request (see sigv4.SignedRequest).
@dataclass(slots=True)
class Match:
    operation: OperationModel
    labels: dict[str, str]
    query: list[tuple[str, str]]


def _route_for(operation: OperationModel) -> Route:
    uri = operation.http["requestUri"]
    path, _, query = uri.partition("?")
    segments: list[str | None] = []
    labels: list[tuple[int, str]] = []
    for index, part in enumerate(path.strip("/").split("/") if path.strip("/") else []):
        if part.startswith("{") and part.endswith("}"):
            segments.append(None)
            labels.append((index, part[1:-1].rstrip("+")))
        else:
            segments.append(part)
    return Route(
        operation=operation,
        segments=tuple(segments),
        labels=tuple(labels),
        query=tuple(parse_qsl(query, keep_blank_values=True)),
    )


class Router:
    """Index of routes by (method, segment count), most specific first."""

    def __init__(self, model: ServiceModel) -> None:
        routes_by_key: dict[tuple[str, int], list[Route]] = {}
        for name in model.operation_names:
            route = _route_for(model.operation_model(name))
            key = (route.operation.http["method"], len(route.segments))
            routes_by_key.setdefault(key, []).append(route)
        # Each candidate with its literal-segment check, most specific first.
        self._routes: dict[tuple[str, int], list[tuple[Route, Callable[[list[str]], Any], Any]]]
        self._routes = {
            key: [
                (route, *route.literals())
                for route in sorted(routes, key=Route.specificity, reverse=True)
            ]
            for key, routes in routes_by_key.items()
        }

    def match(self, method: str, raw_path: str, raw_query: str) -> Match | None:
        """Match on the raw path, then percent-decode each label; None when nothing matches."""
        stripped = raw_path.strip("/")
        parts = stripped.split("/") if stripped else []
        candidates = self._routes.get((method, len(parts)))
        if not candidates:
            return None
        query = parse_qsl(raw_query, keep_blank_values=True) if raw_query else []
        for route, pick, expected in candidates:
            if pick(parts) != expected:
                continue
            if route.query and not all(pair in query for pair in route.query):
                continue
            labels = {name: _decode_label(parts[index], name) for index, name in route.labels}
            return Match(route.operation, labels, query)
        return None


def _decode_label(raw: str, name: str) -> str:
    if "%" not in raw:
        return raw  # nothing encoded (ids, names): what unquote would answer, without its call
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError as exc:
        raise BadRequestException(
            f"Path parameter {name} is not valid percent-encoded UTF-8."
        ) from exc
