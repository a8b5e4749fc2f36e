"""Route a raw HTTP method, path and query to an operation of the model, using each `requestUri`."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
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
        self._routes: dict[tuple[str, int], list[Route]] = {}
        for name in model.operation_names:
            route = _route_for(model.operation_model(name))
            key = (route.operation.http["method"], len(route.segments))
            self._routes.setdefault(key, []).append(route)
        for routes in self._routes.values():
            routes.sort(key=Route.specificity, reverse=True)

    def match(self, method: str, raw_path: str, raw_query: str) -> Match | None:
        """Match on the raw path, then percent-decode each label; None when nothing matches."""
        stripped = raw_path.strip("/")
        parts = stripped.split("/") if stripped else []
        candidates = self._routes.get((method, len(parts)))
        if not candidates:
            return None
        query = parse_qsl(raw_query, keep_blank_values=True)
        for route in candidates:
            if not all(
                seg is None or seg == part for seg, part in zip(route.segments, parts, strict=True)
            ):
                continue
            if route.query and not all(pair in query for pair in route.query):
                continue
            labels: dict[str, str] = {}
            for index, name in route.labels:
                value = _decode_label(parts[index], name)
                labels[name] = value
            return Match(route.operation, labels, query)
        return None


def _decode_label(raw: str, name: str) -> str:
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError as exc:
        raise BadRequestException(
            f"Path parameter {name} is not valid percent-encoded UTF-8."
        ) from exc
