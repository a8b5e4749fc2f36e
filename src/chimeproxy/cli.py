"""The `chimeproxy` command line: serve, db upgrade, numbers import."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from chimeproxy import __version__
from chimeproxy.config import Settings
from chimeproxy.dataplane import options as dataplane_options
from chimeproxy.protocol.errors import ServiceError

DEFAULTS = Settings()
SETTINGS_ENV = "CHIMEPROXY_SETTINGS_JSON"


def _env(name: str, default: Any) -> Any:
    return os.environ.get(f"CHIMEPROXY_{name.upper()}", default)


def _flag(value: str | bool) -> bool:
    return value if isinstance(value, bool) else value.lower() in ("1", "true", "yes", "on")


def _add_database(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database",
        default=_env("database", DEFAULTS.database),
        help="sqlite:///PATH or postgresql://USER@HOST:PORT/DB (env CHIMEPROXY_DATABASE)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chimeproxy", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API server")
    serve.add_argument("--host", default=_env("host", DEFAULTS.host), help="env CHIMEPROXY_HOST")
    serve.add_argument(
        "--port", type=int, default=int(_env("port", DEFAULTS.port)), help="env CHIMEPROXY_PORT"
    )
    _add_database(serve)
    serve.add_argument(
        "--auth",
        choices=["open", "strict"],
        default=_env("auth", None),
        help="open: any caller; strict: SigV4 verified against --credentials "
        "(default: open on loopback, else strict) (env CHIMEPROXY_AUTH)",
    )
    serve.add_argument(
        "--credentials",
        default=_env("credentials", None),
        help="CSV access_key_id,secret_access_key,account_id (env CHIMEPROXY_CREDENTIALS)",
    )
    serve.add_argument(
        "--rate-limit",
        type=float,
        default=_env("rate_limit", None),
        help="requests per second per account, burst the same; off by default "
        "(env CHIMEPROXY_RATE_LIMIT)",
    )
    serve.add_argument(
        "--clock-control",
        action="store_true",
        default=_flag(_env("clock_control", False)),
        help="test mode: POST /_chimeproxy/clock moves the clock forward "
        "(env CHIMEPROXY_CLOCK_CONTROL)",
    )
    serve.add_argument(
        "--max-session-minutes",
        type=int,
        default=int(_env("max_session_minutes", DEFAULTS.max_session_minutes)),
        help="longest allowed proxy session (env CHIMEPROXY_MAX_SESSION_MINUTES)",
    )
    serve.add_argument(
        "--retention-days",
        type=float,
        default=float(_env("retention_days", DEFAULTS.retention_days)),
        help="how long closed sessions stay readable (env CHIMEPROXY_RETENTION_DAYS)",
    )
    serve.add_argument(
        "--sweep-interval",
        type=float,
        default=float(_env("sweep_interval", DEFAULTS.sweep_interval_seconds)),
        help="seconds between sweeps (env CHIMEPROXY_SWEEP_INTERVAL)",
    )
    serve.add_argument(
        "--body-limit",
        type=int,
        default=int(_env("body_limit", DEFAULTS.body_limit)),
        help="largest request body in bytes (env CHIMEPROXY_BODY_LIMIT)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=int(_env("workers", DEFAULTS.workers)),
        help="server processes on this host (env CHIMEPROXY_WORKERS)",
    )
    serve.add_argument(
        "--log-level",
        default=_env("log_level", DEFAULTS.log_level),
        help="debug, info, warning, error (env CHIMEPROXY_LOG_LEVEL)",
    )
    serve.add_argument(
        "--no-migrate",
        action="store_true",
        default=_flag(_env("no_migrate", False)),
        help="refuse to start on an old schema instead of upgrading it (env CHIMEPROXY_NO_MIGRATE)",
    )
    serve.add_argument(
        "--sqlite-synchronous",
        type=str.upper,
        choices=["NORMAL", "FULL"],
        default=_env("sqlite_synchronous", DEFAULTS.sqlite_synchronous).upper(),
        help="SQLite durability: NORMAL survives a killed process, FULL also power loss "
        "(slower writes); see docs/operations.md (env CHIMEPROXY_SQLITE_SYNCHRONOUS)",
    )
    dataplane_options.add_arguments(serve)

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="apply pending migrations")
    _add_database(upgrade)

    numbers = commands.add_parser("numbers", help="the catalog of numbers available to order")
    numbers_commands = numbers.add_subparsers(dest="numbers_command", required=True)
    load = numbers_commands.add_parser(
        "import",
        help="load the numbers you own at your carrier (CSV: e164,country,type,capabilities)",
    )
    load.add_argument("file")
    _add_database(load)

    from chimeproxy.dataplane import sip_edge

    edge = commands.add_parser(
        "sip-edge", help="run Kamailio routing calls and messages through proxy sessions"
    )
    sip_edge.add_arguments(edge)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(
        host=args.host,
        port=args.port,
        database=args.database,
        auth=args.auth,
        credentials=args.credentials,
        rate_limit=float(args.rate_limit) if args.rate_limit else None,
        clock_control=args.clock_control,
        max_session_minutes=args.max_session_minutes,
        retention_days=args.retention_days,
        sweep_interval_seconds=args.sweep_interval,
        body_limit=args.body_limit,
        log_level=args.log_level,
        workers=args.workers,
        migrate=not args.no_migrate,
        sqlite_synchronous=args.sqlite_synchronous,
        **dataplane_options.settings_from(args),
    )


def create_app_from_env() -> Any:
    """Factory for worker processes: the settings travel in an environment variable."""
    from chimeproxy import logs
    from chimeproxy.app import ChimeProxyApp

    settings = Settings(**orjson.loads(os.environ[SETTINGS_ENV]))
    # A worker is a fresh interpreter (spawned): it logs as the parent does only if told to.
    logs.configure(settings.log_level)
    return ChimeProxyApp(settings)


def serve(settings: Settings) -> int:
    import uvicorn

    from chimeproxy import logs
    from chimeproxy.app import ChimeProxyApp
    from chimeproxy.protocol.auth import choose_mode, load_credentials
    from chimeproxy.protocol.throttle import RateLimiter

    logs.configure(settings.log_level)
    try:
        choose_mode(settings)
        dataplane_options.check(settings)
        # Checked here too so that a bad file or rate is one clear line, not a traceback.
        if settings.credentials:
            load_credentials(settings.credentials)
        if settings.rate_limit is not None:
            RateLimiter(settings.rate_limit)
    except ValueError as exc:
        print(f"chimeproxy: {exc}", file=sys.stderr)
        return 2
    if settings.clock_control and settings.workers > 1:
        print("chimeproxy: --clock-control needs a single process (--workers 1)", file=sys.stderr)
        return 2
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": 30,
        "server_header": False,
    }
    if settings.workers > 1:
        from chimeproxy.store.database import Database

        if settings.migrate:  # once here, so that a bad database fails before any worker starts
            database = Database(settings.database)
            try:
                database.upgrade()
            except ServiceError as exc:
                print(f"chimeproxy: {database.describe()}: {_cause(exc)}", file=sys.stderr)
                return 1
        os.environ[SETTINGS_ENV] = orjson.dumps(dataclasses.asdict(settings)).decode()
        with _metrics_directory():
            uvicorn.run(
                "chimeproxy.cli:create_app_from_env",
                factory=True,
                workers=settings.workers,
                **options,
            )
    else:
        uvicorn.run(ChimeProxyApp(settings), **options)
    return 0


def _cause(exc: BaseException) -> str:
    """The database driver's own words, first line only."""
    cause = getattr(exc.__cause__, "orig", None) or exc.__cause__ or exc
    return str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__


@contextlib.contextmanager
def _metrics_directory() -> Iterator[None]:
    """Worker processes add up their metrics through files in an empty directory of their own
    (prometheus_client's multiprocess mode), unless the operator named one."""
    from chimeproxy.metrics import MULTIPROCESS_ENV

    if os.environ.get(MULTIPROCESS_ENV):
        yield
        return
    directory = tempfile.mkdtemp(prefix="chimeproxy-metrics-")
    os.environ[MULTIPROCESS_ENV] = directory
    try:
        yield
    finally:
        del os.environ[MULTIPROCESS_ENV]
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(settings_from(args))
    if args.command == "sip-edge":
        from chimeproxy.dataplane import sip_edge

        return sip_edge.main(args)
    from chimeproxy.store.database import Database

    database = Database(args.database)
    if args.command == "db":
        try:
            database.upgrade()
        except ServiceError as exc:
            print(f"chimeproxy: {database.describe()}: {_cause(exc)}", file=sys.stderr)
            return 1
        print(f"database {database.describe()} is at the latest schema")
        return 0
    from chimeproxy.domain.catalog import CatalogError, load_catalog_csv
    from chimeproxy.store import catalog as catalog_store

    database.upgrade()
    try:
        catalog = load_catalog_csv(args.file)
    except (OSError, UnicodeDecodeError, CatalogError) as exc:
        print(f"chimeproxy: {exc}", file=sys.stderr)
        return 1
    count = catalog_store.replace(database, catalog)
    print(f"imported {count} numbers into the catalog of {database.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
