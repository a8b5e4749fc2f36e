"""Operation handlers, one module per resource family."""

from __future__ import annotations

import importlib

_MODULES = ("voice_connectors", "phone_numbers", "proxy")


def load_operations() -> None:
    """Import every family so its handlers register themselves."""
    for module in _MODULES:
        importlib.import_module(f"chimeproxy.operations.{module}")
