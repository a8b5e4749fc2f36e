"""The `chimeproxy` command line: serve, db upgrade, numbers import."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from chimeproxy import __version__
from chimeproxy.settings import (
    DatabaseSettings,
    Settings,
    SettingsError,
    add_arguments,
    from_arguments,
)

SETTINGS_ENV = "CHIMEPROXY_SETTINGS_JSON"
CATALOG_FORMAT = """\
The CSV has a header row and one number per row:

  e164,country,type,capabilities,city,state
  +12065550123,US,Local,InboundCall|OutboundCall|InboundSMS|OutboundSMS,Seattle,WA
  +18885550123,US,TollFree,InboundCall|OutboundCall,,

e164: the number with + and its country calling code; country: ISO 3166-1 alpha-2;
type: Local or TollFree; capabilities, joined by |: InboundCall, OutboundCall, InboundSMS,
OutboundSMS, InboundMMS, OutboundMMS; city and state are optional. The whole file is checked
before anything changes; a bad row is named by its line."""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=100)


def build_parser() -> argparse.ArgumentParser:
    from chimeproxy.dataplane.edge.settings import EdgeSettings

    parser = argparse.ArgumentParser(prog="chimeproxy", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return commands.add_parser(name, formatter_class=_HelpFormatter, **kwargs)

    add_arguments(command("serve", help="run the API server"), Settings)

    db = command("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    add_arguments(
        db_commands.add_parser(
            "upgrade", help="apply pending migrations", formatter_class=_HelpFormatter
        ),
        DatabaseSettings,
    )

    numbers = command("numbers", help="the catalog of numbers available to order")
    numbers_commands = numbers.add_subparsers(dest="numbers_command", required=True)
    load = numbers_commands.add_parser(
        "import",
        help="offer the numbers you own at your carrier instead of the built-in fictional ones",
        description=CATALOG_FORMAT,
        formatter_class=_HelpFormatter,
    )
    load.add_argument("file", help="CSV file; see above")
    load.add_argument(
        "--add",
        action="store_true",
        help="add the file's numbers to the catalog in force (the built-in one until you "
        "import) instead of replacing it; a number listed again takes the file's row",
    )
    add_arguments(load, DatabaseSettings)
    add_arguments(
        numbers_commands.add_parser(
            "list",
            help="print the catalog in force as CSV, in the import format",
            formatter_class=_HelpFormatter,
        ),
        DatabaseSettings,
    )
    add_arguments(
        numbers_commands.add_parser(
            "reset",
            help="offer the built-in fictional numbers again, forgetting imported ones",
            formatter_class=_HelpFormatter,
        ),
        DatabaseSettings,
    )

    add_arguments(
        command("sip-edge", help="run Kamailio routing calls and messages through proxy sessions"),
        EdgeSettings,
    )
    return parser


# docs/configuration.md's tables are generated from the declarations between these markers
# (`python -m chimeproxy.cli --update-configuration-doc docs/configuration.md`).


def configuration_tables() -> dict[str, str]:
    """The generated table of each command's settings, by command."""
    from chimeproxy.dataplane.edge.settings import EdgeSettings
    from chimeproxy.settings import markdown_table

    return {"serve": markdown_table(Settings), "sip-edge": markdown_table(EdgeSettings)}


def update_configuration_doc(text: str) -> str:
    """`text` with every generated table replaced by the current one."""
    for command, table in configuration_tables().items():
        begin, end = f"<!-- generated: {command} -->", f"<!-- end generated: {command} -->"
        start, stop = text.index(begin) + len(begin), text.index(end)
        text = f"{text[:start]}\n{table}\n{text[stop:]}"
    return text


# Seconds a SIGTERM-ed server lets requests in flight finish before it closes them.
GRACEFUL_SHUTDOWN_S = 30


def create_app_from_env() -> Any:
    """Factory for worker processes: the settings travel in an environment variable."""
    from chimeproxy import logs, workers
    from chimeproxy.app import ChimeProxyApp

    settings = Settings(**orjson.loads(os.environ[SETTINGS_ENV]))
    # A worker is a fresh interpreter (spawned): it logs as the parent does only if told to.
    logs.configure(settings.log_level)
    if supervisor := os.environ.get(workers.SUPERVISOR_ENV):  # set by `serve --workers N`
        workers.die_with_parent(int(supervisor), GRACEFUL_SHUTDOWN_S + 5)
    return ChimeProxyApp(settings, announce=False)  # the parent said it, first


def serve(settings: Settings) -> int:
    import uvicorn

    from chimeproxy import connections, logs, workers
    from chimeproxy.app import ChimeProxyApp
    from chimeproxy.dataplane import providers
    from chimeproxy.metrics import MULTIPROCESS_ENV
    from chimeproxy.protocol.auth import Authenticator
    from chimeproxy.store.database import database_files

    logs.configure(settings.log_level)
    if settings.clock_control and settings.workers > 1:
        print("chimeproxy: --clock-control needs a single process (--workers 1)", file=sys.stderr)
        return 2
    try:
        providers.from_settings(settings)
        # Checked here so that a bad credentials file is one clear line, not a traceback.
        authenticator = Authenticator.from_settings(settings, announce=False)
    except ValueError as exc:
        print(f"chimeproxy: {exc}", file=sys.stderr)
        return 2
    # What would otherwise fail later, inside uvicorn or a worker, with a traceback: one line
    # naming the cause and the fix, before anything starts.
    problem = _listening_problem(settings.host, settings.port) or _prepare_database(settings)
    if problem:
        print(f"chimeproxy: {problem}", file=sys.stderr)
        return 1
    # The log's first line says which authentication mode is active, in every mode.
    authenticator.announce(settings)
    files = database_files(settings.database, settings.db_pool_size)
    settings = dataclasses.replace(
        settings, max_connections=connections.apply_file_limit(files, settings.max_connections)
    )
    assert settings.max_connections is not None
    limits = connections.ConnectionLimits(settings.header_timeout, settings.max_connections)
    connections.log.info(
        "connection limits",
        extra={
            "max_connections": limits.max_connections,
            "header_timeout": limits.header_timeout,
            "open_files": connections.open_files_limit(),
        },
    )
    workers.remove_dead_metrics_directories()
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
        "timeout_keep_alive": settings.keep_alive_timeout,
        "server_header": False,
        "http": connections.protocol_factory(limits),
    }
    if settings.workers > 1:
        os.environ[SETTINGS_ENV] = orjson.dumps(dataclasses.asdict(settings)).decode()
        os.environ[workers.SUPERVISOR_ENV] = str(os.getpid())
        with workers.metrics_directory(MULTIPROCESS_ENV):
            uvicorn.run(
                "chimeproxy.cli:create_app_from_env",
                factory=True,
                workers=settings.workers,
                **options,
            )
    else:
        uvicorn.run(ChimeProxyApp(settings, announce=False), **options)
    return 0


def _listening_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on host:port, in words that name the fix; None when it
    can (uvicorn's own bind follows at once, so the race is short)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot listen on --host {host}: {exc.strerror}; give an address of this host"
    family, kind, protocol, _, address = infos[0]
    with socket.socket(family, kind, protocol) as probe:
        # As uvicorn binds: with SO_REUSEADDR, so only a listening socket is in the way.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (
                    f"port {port} on {host} is already in use (another chimeproxy?): stop "
                    "what listens there, or choose another port with --port or CHIMEPROXY_PORT"
                )
            if exc.errno == errno.EACCES:
                return (
                    f"not allowed to listen on port {port}: ports below 1024 need root or "
                    "CAP_NET_BIND_SERVICE; choose another with --port"
                )
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"cannot listen on {host}: no such address on this host (--host)"
            return f"cannot listen on {host}:{port}: {exc.strerror}"
    return None


def _prepare_database(settings: DatabaseSettings | Settings) -> str | None:
    """Open the database and bring its schema up to date (or, without migrations, check it is);
    why not, in one line, or None. Done once here, before any worker starts."""
    from chimeproxy.store.database import Database, DatabaseConfigurationError, DatabaseUnavailable

    try:
        database = Database(settings.database, log_failures=False)
    except DatabaseConfigurationError as exc:
        return str(exc)
    try:
        if getattr(settings, "migrate", True):
            database.upgrade()
        elif database.pending_migrations():
            return (
                f"{database.describe()}: the database schema is behind this version; run "
                "`chimeproxy db upgrade --database URL`, or start without --no-migrate"
            )
    except DatabaseUnavailable as exc:
        return f"{database.describe()}: {exc.reason}"
    finally:
        database.dispose()
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--update-configuration-doc"] and len(argv) == 2:
        path = Path(argv[1])
        path.write_text(update_configuration_doc(path.read_text()))
        return 0
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return serve(from_arguments(Settings, args))
        if args.command == "sip-edge":
            from chimeproxy.dataplane.edge import command
            from chimeproxy.dataplane.edge.settings import EdgeSettings

            return command.main(from_arguments(EdgeSettings, args))
        database_settings = from_arguments(DatabaseSettings, args)
    except SettingsError as exc:
        print(f"chimeproxy {args.command}: {exc}", file=sys.stderr)
        return 2
    if problem := _prepare_database(database_settings):
        print(f"chimeproxy: {problem}", file=sys.stderr)
        return 1
    from chimeproxy.store.database import Database, DatabaseUnavailable

    database = Database(database_settings.database, log_failures=False)
    if args.command == "db":
        print(f"database {database.describe()} is at the latest schema")
        return 0
    try:
        return _numbers(args, database)
    except DatabaseUnavailable as exc:
        print(f"chimeproxy: {database.describe()}: {exc.reason}", file=sys.stderr)
        return 1
    finally:
        database.dispose()


def _numbers(args: argparse.Namespace, database: Any) -> int:
    """`chimeproxy numbers import|list|reset`: the catalog in force is the built-in one, the
    imported numbers, or the imported numbers added to the built-in ones."""
    from chimeproxy.domain.catalog import CatalogError
    from chimeproxy.domain.catalog_csv import load_catalog_csv, write_catalog_csv
    from chimeproxy.store import catalog as catalog_store

    where = database.describe()
    if args.numbers_command == "list":
        with database.read() as connection:
            offer = catalog_store.offer(connection)
            catalog = catalog_store.in_force(connection)
        write_catalog_csv(catalog, sys.stdout)
        print(f"chimeproxy: {_offer_summary(offer, len(catalog))}", file=sys.stderr)
        return 0
    if args.numbers_command == "reset":
        forgotten = catalog_store.reset(database)
        print(
            f"the catalog of {where} is the built-in fictional one again "
            f"({forgotten} imported numbers forgotten; numbers already ordered stay ordered)"
        )
        return 0
    try:
        catalog = load_catalog_csv(args.file)
    except (OSError, UnicodeDecodeError, CatalogError) as exc:
        print(f"chimeproxy: {exc}", file=sys.stderr)
        return 1
    if args.add:
        added, updated = catalog_store.add(database, catalog)
        with database.read() as connection:
            offer = catalog_store.offer(connection)
            total = len(catalog_store.in_force(connection))
        print(f"added {added} numbers and updated {updated} in the catalog of {where}")
        print(f"chimeproxy: {_offer_summary(offer, total)}", file=sys.stderr)
        return 0
    count = catalog_store.replace(database, catalog)
    print(
        f"imported {count} numbers into the catalog of {where}; they replace the built-in "
        "fictional numbers (`chimeproxy numbers reset` brings those back)"
    )
    return 0


def _offer_summary(offer: Any, total: int) -> str:
    if offer.revision is None:
        return f"the built-in catalog of fictional numbers is in force ({total} numbers)"
    if offer.with_builtin:
        return (
            f"{offer.imported} imported numbers and the built-in fictional ones are in force "
            f"({total} numbers)"
        )
    return f"{offer.imported} imported numbers are in force (the built-in ones are not)"


if __name__ == "__main__":
    sys.exit(main())
