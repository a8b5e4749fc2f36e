"""chimeproxy under granian instead of uvicorn, for measurement only (`python -m bench
--http-server granian`): the same application, settings and options as `chimeproxy serve`
where granian has them, so that the HTTP server is the one difference.

    python -m bench.granian_serve serve --port 8089 --database ... (chimeproxy serve's options)

`chimeproxy serve` stays on uvicorn: docs/performance.md says why.
"""

from __future__ import annotations

import dataclasses
import os
import sys

import orjson


def main() -> int:
    from granian.constants import Interfaces, Loops
    from granian.server import Server

    from chimeproxy.cli import SETTINGS_ENV, build_parser, from_arguments
    from chimeproxy.settings import Settings

    settings = from_arguments(Settings, build_parser().parse_args(sys.argv[1:]))
    # The worker builds the app as `chimeproxy serve --workers N` has uvicorn build it.
    os.environ[SETTINGS_ENV] = orjson.dumps(dataclasses.asdict(settings)).decode()
    if settings.workers > 1:
        from chimeproxy.cli import _metrics_directory

        context = _metrics_directory()
    else:
        from contextlib import nullcontext

        context = nullcontext()
    with context:
        Server(
            "chimeproxy.cli:create_app_from_env",
            address=settings.host,
            port=settings.port,
            interface=Interfaces.ASGI,
            workers=settings.workers,
            loop=Loops.uvloop,
            factory=True,
            log_access=False,
        ).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
