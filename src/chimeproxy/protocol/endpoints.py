"""The table of endpoints that are not operations of the model (health, metrics, the data
plane's), matched by method and path template like the model's operations, each with its name
and access rule, so that every request goes through the same authentication, rate limiting and
metrics whichever table answered it."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import unquote

from chimeproxy.protocol.http import Request, Response


class Access(StrEnum):
    """Who may call an endpoint."""

    NONE = "none"  # anyone (health, metrics; SNS messages carry their own signature)
    ROUTE_SECRET = "route-secret"  # the SIP edge and SMS webhooks: the route secret, or loopback
    SIGV4 = "sigv4"  # API callers: as the server's --auth mode says
    # The operator console: its own signed-in sessions (console/); in open mode loopback only.
    CONSOLE = "console"


EndpointHandler = Callable[[Request, dict[str, str]], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str  # the operation name in metrics and logs
    access: Access
    handler: EndpointHandler
    # False only for what operators watch the server with (health, metrics): a flood from
    # one address must not make a load balancer or a scraper see a healthy server as failing.
    rate_limited: bool = True


_LABEL = re.compile(r"\{([A-Za-z][A-Za-z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class _Entry:
    method: str
    pattern: re.Pattern[str]
    labels: tuple[str, ...]
    endpoint: Endpoint


class EndpointTable:
    """Path templates such as `/_chimeproxy/interactions/{interaction_id}/end`: a label matches
    one non-empty path segment, percent-decoded when matched."""

    def __init__(self) -> None:
        self._fixed: dict[tuple[str, str], Endpoint] = {}
        self._templated: list[_Entry] = []
        # Per method, its templates as one alternation, and for the number of the last group
        # of each alternative, its entry and the index of its first group: one `fullmatch`
        # a request, instead of one per template (every API request is tried here first).
        self._alternations: dict[str, tuple[re.Pattern[str], dict[int, tuple[_Entry, int]]]] = {}

    def add(self, method: str, template: str, endpoint: Endpoint) -> None:
        labels = tuple(_LABEL.findall(template))
        if not labels:
            if (method, template) in self._fixed:
                raise ValueError(f"{method} {template} is already an endpoint")
            self._fixed[(method, template)] = endpoint
            return
        parts = _LABEL.split(template)
        # split() alternates literal text and label names: escape the text, match the labels.
        regex = "".join(
            re.escape(part) if i % 2 == 0 else "([^/]+)" for i, part in enumerate(parts)
        )
        self._templated.append(_Entry(method, re.compile(regex), labels, endpoint))
        self._alternations[method] = self._alternation(method)

    def _alternation(self, method: str) -> tuple[re.Pattern[str], dict[int, tuple[_Entry, int]]]:
        """The method's templates in the order added, so that the first added that matches
        wins, as if each were tried in turn."""
        entries = [entry for entry in self._templated if entry.method == method]
        by_last_group: dict[int, tuple[_Entry, int]] = {}
        groups = 0
        for entry in entries:
            by_last_group[groups + len(entry.labels)] = (entry, groups)
            groups += len(entry.labels)
        pattern = "|".join(f"(?:{entry.pattern.pattern})" for entry in entries)
        return re.compile(pattern), by_last_group

    def match(self, method: str, raw_path: str) -> tuple[Endpoint, dict[str, str]] | None:
        endpoint = self._fixed.get((method, raw_path))
        if endpoint is not None:
            return endpoint, {}
        alternation = self._alternations.get(method)
        if alternation is None:
            return None
        pattern, by_last_group = alternation
        found = pattern.fullmatch(raw_path)
        if found is None:
            return None
        # Every template has a label, so the alternative that matched holds the last group.
        entry, first = by_last_group[found.lastindex]  # type: ignore[index]
        values = found.groups()[first : first + len(entry.labels)]
        return entry.endpoint, {
            name: unquote(value) for name, value in zip(entry.labels, values, strict=True)
        }

    def paths(self) -> list[tuple[str, str]]:
        """(method, path or pattern) of every endpoint, for error messages and docs."""
        return [*self._fixed, *((e.method, e.pattern.pattern) for e in self._templated)]
