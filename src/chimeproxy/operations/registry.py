"""Typed dispatch: one handler per operation name of the model, given the parsed input members.

A handler is a plain function, which the application runs where the database's work runs
(`Database.run`: inline on SQLite, a worker thread on PostgreSQL), or a coroutine function, run
on the event loop, for the hot writes that go through `Services.writes` (group commit)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chimeproxy.protocol.model import service_model

if TYPE_CHECKING:
    from chimeproxy.services import Services

Output = dict[str, Any] | None


# Not frozen: one is built per request (see sigv4.SignedRequest).
@dataclass(slots=True)
class Context:
    """Who is asking, and the services a handler may use."""

    account: str
    region: str
    request_id: str
    services: Services


OperationHandler = Callable[[Context, dict[str, Any]], Output | Awaitable[Output]]
OPERATIONS: dict[str, OperationHandler] = {}
AWAITED: set[str] = set()  # the operations whose handler is a coroutine function


def operation(name: str) -> Callable[[OperationHandler], OperationHandler]:
    """Register the handler of a modelled operation."""
    if name not in service_model().operation_names:
        raise ValueError(f"{name} is not an operation of the model")

    def register(handler: OperationHandler) -> OperationHandler:
        OPERATIONS[name] = handler
        if inspect.iscoroutinefunction(handler):
            AWAITED.add(name)
        return handler

    return register
