"""Run `chimeproxy` with the optimizations of docs/performance.md switched off, so that the
harness can measure before and after on the same machine in the same conditions:

    python -m bench.variants before serve --port 8089 ...   (what `python -m bench --variant
    before` starts)

`before` restores, by patching at start-up (the code base keeps only the fast paths):
- GetProxySession through SQLAlchemy Core: two statements in a read transaction;
- CreateProxySession reading every number of the connector's pool into Python;
- the serializer's strftime per timestamp and a call per passed-through member;
- start-up objects left to the garbage collector (no `gc.freeze()`).

`no-gc-freeze` restores only the last.
"""

from __future__ import annotations

import functools
import gc
import sys
import time
from typing import Any

from chimeproxy.protocol import serializer


def _old_format_timestamp(value: Any) -> str:
    seconds, millis = divmod(value, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def _old_encoder(shape: Any) -> Any:
    kind = shape.type_name
    if kind == "structure":
        members = sorted(
            (name, _old_encoder(member))
            for name, member in shape.members.items()
            if member.serialization.get("location") is None
        )

        def encode_structure(value: dict[str, Any]) -> dict[str, Any]:
            out = {}
            for name, encode in members:
                item = value.get(name)
                out[name] = None if item is None else encode(item)
            return out

        return encode_structure
    if kind == "list":
        encode_item = _old_encoder(shape.member)
        if encode_item is serializer._identity:
            return list
        return lambda value: [encode_item(item) for item in value]
    if kind == "map":
        encode_value = _old_encoder(shape.value)
        return lambda value: {k: encode_value(v) for k, v in sorted(value.items())}
    if kind == "timestamp":
        return _old_format_timestamp
    return serializer._identity


def before() -> None:
    """Patch the fast paths out (module attributes are looked up at call time)."""
    from chimeproxy.operations import proxy as operations
    from chimeproxy.store import proxy as store

    store.find_session_by_ids = lambda *args, **kwargs: None  # type: ignore[assignment]
    operations.ranked_numbers = functools.partial(  # type: ignore[assignment]
        operations.ranked_numbers, prefilter=False
    )
    serializer._encoder = _old_encoder  # type: ignore[assignment]
    no_gc_freeze()


def no_gc_freeze() -> None:
    """Start-up objects left to the collector's full passes (app.py calls gc.freeze)."""
    gc.freeze = lambda: None  # type: ignore[assignment]


VARIANTS = {"before": before, "no-gc-freeze": no_gc_freeze}


def main() -> int:
    variant = sys.argv.pop(1)
    VARIANTS[variant]()
    from chimeproxy.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
