"""Typed dispatch: one handler per operation name of the model, given the parsed input members."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chimeproxy.protocol.model import service_model

if TYPE_CHECKING:
    from chimeproxy.services import Services

Output = dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Context:
    """Who is asking, and the services a handler may use."""

    account: str
    region: str
    request_id: str
    services: Services


OperationHandler = Callable[[Context, dict[str, Any]], Output]
OPERATIONS: dict[str, OperationHandler] = {}


def operation(name: str) -> Callable[[OperationHandler], OperationHandler]:
    """Register the handler of a modelled operation."""
    if name not in service_model().operation_names:
        raise ValueError(f"{name} is not an operation of the model")

    def register(handler: OperationHandler) -> OperationHandler:
        OPERATIONS[name] = handler
        return handler

    return register
