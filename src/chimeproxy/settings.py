"""Every setting declared once, as a dataclass field: its flag, environment variable, default,
help and check. The command line's parsers, `--help` (with each default), the settings objects
and docs/configuration.md's tables are all derived from these declarations.

A value given as a flag wins over the environment variable, which wins over the default. Flags
and environment variables are read by the same `parse` function, so both say the same thing
about a bad value: one line naming the flag and the rule.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

S = TypeVar("S")

VALUE = "value"  # FLAG VALUE
SWITCH = "switch"  # FLAG alone sets True
OFF_SWITCH = "off-switch"  # FLAG alone sets False (`--no-migrate` for `migrate`)
REPEATED = "repeated"  # FLAG VALUE, again for more values; the environment separates with commas


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the flag and says what it must be."""


@dataclass(frozen=True, slots=True)
class Opt:
    """How one setting is given: see `option`."""

    flag: str
    env: str
    help: str
    parse: Callable[[str], Any] = str
    kind: str = VALUE
    choices: tuple[str, ...] | None = None
    shown_default: str | None = None
    group: str | None = None
    metavar: str | None = None


def option(
    default: Any,
    *,
    flag: str,
    env: str,
    help: str,
    parse: Callable[[str], Any] = str,
    kind: str = VALUE,
    choices: Sequence[str] | None = None,
    shown_default: str | None = None,
    group: str | None = None,
    metavar: str | None = None,
) -> Any:
    """A settings field with its command-line flag and environment variable.

    `parse` turns the text of a flag or of the environment variable into the value (raising
    ValueError with the rule broken); `shown_default` is how the default reads in help and docs
    when the value alone would not say it (a default computed at run time, say)."""
    if kind == REPEATED and not isinstance(default, tuple):
        raise TypeError(f"{flag}: a repeated option's default must be a tuple")
    return field(
        default=default,
        metadata={
            "option": Opt(
                flag=flag,
                env=env,
                help=help,
                parse=parse,
                kind=kind,
                choices=tuple(choices) if choices else None,
                shown_default=shown_default,
                group=group,
                metavar=metavar,
            )
        },
    )


def options(cls: type) -> Iterator[tuple[dataclasses.Field[Any], Opt]]:
    """The declared options of a settings class, in declaration order."""
    for item in dataclasses.fields(cls):
        opt = item.metadata.get("option")
        if opt is not None:
            yield item, opt


# Parsers shared by the declarations.


def boolean(text: str) -> bool:
    """An environment variable's truth: 1/true/yes/on or 0/false/no/off (any case)."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def integer(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError("must be a whole number") from None
        _check_range(value, low, high)
        return value

    return parse


def number(low: float | None = None, high: float | None = None) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError("must be a number") from None
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        _check_range(value, low, high)
        return value

    return parse


def positive_number(text: str) -> float:
    value = number()(text)
    if value <= 0:
        raise ValueError("must be a positive number")
    return value


def optional(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An empty value means "not set" (None), so an environment variable can be blanked."""

    def parse_optional(text: str) -> Any:
        return None if not text.strip() else parse(text)

    return parse_optional


def _check_range(value: float, low: float | None, high: float | None) -> None:
    if low is not None and high is not None and not low <= value <= high:
        raise ValueError(f"must be between {low:g} and {high:g}")
    if low is not None and value < low:
        raise ValueError(f"must be at least {low:g}")
    if high is not None and value > high:
        raise ValueError(f"must be at most {high:g}")


# Deriving the command line.


def shown(item: dataclasses.Field[Any], opt: Opt) -> str:
    """The default as help and docs show it."""
    if opt.shown_default is not None:
        return opt.shown_default
    default = item.default
    if opt.kind in (SWITCH, OFF_SWITCH):
        return "off" if opt.kind == SWITCH else "on"
    if default is None or default == ():
        return "none"
    if isinstance(default, tuple):
        return ", ".join(str(value) for value in default)
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return str(default)


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One argparse argument per declared option; defaults are applied by `from_arguments`, so
    that a flag the user did not give falls back on the environment, then the default."""
    groups: dict[str, Any] = {}
    for item, opt in options(cls):
        target: Any = parser
        if opt.group:
            target = groups.get(opt.group) or parser.add_argument_group(opt.group)
            groups[opt.group] = target
        text = f"{opt.help} (default: {shown(item, opt)}; env {opt.env})"
        # argparse expands %: a literal one in the help must be doubled.
        text = text.replace("%", "%%")
        common: dict[str, Any] = {"dest": item.name, "default": None, "help": text}
        if opt.kind == SWITCH or opt.kind == OFF_SWITCH:
            target.add_argument(opt.flag, action="store_const", const=opt.kind == SWITCH, **common)
        else:
            target.add_argument(
                opt.flag,
                action="append" if opt.kind == REPEATED else "store",
                metavar=opt.metavar
                or (opt.choices and "{" + ",".join(opt.choices) + "}")
                or opt.flag.lstrip("-").replace("-", "_").upper(),
                **common,
            )


def from_arguments(
    cls: type[S],
    arguments: argparse.Namespace | Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
) -> S:
    """The settings the flags (else the environment, else the defaults) give; SettingsError
    names the first flag whose value cannot be used."""
    environ = os.environ if environ is None else environ
    given = vars(arguments) if isinstance(arguments, argparse.Namespace) else dict(arguments)
    values: dict[str, Any] = {}
    for item, opt in options(cls):
        raw = given.get(item.name)
        if raw is None and opt.env in environ:
            raw = _from_environment(opt, environ[opt.env])
        if raw is None:
            continue  # the declared default
        values[item.name] = _parse(opt, raw)
    return cls(**values)


def _from_environment(opt: Opt, text: str) -> Any:
    if opt.kind in (SWITCH, OFF_SWITCH):
        try:
            on = boolean(text)
        except ValueError as exc:
            raise SettingsError(f"{opt.env}: {exc}") from None
        return on if opt.kind == SWITCH else not on
    if opt.kind == REPEATED:
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


def _parse(opt: Opt, raw: Any) -> Any:
    if isinstance(raw, bool):
        return raw
    if opt.kind == REPEATED:
        return tuple(_parse_one(opt, text) for text in raw)
    return _parse_one(opt, raw)


def _parse_one(opt: Opt, text: str) -> Any:
    if opt.choices is not None and text not in opt.choices:
        raise SettingsError(f"{opt.flag} must be one of {', '.join(opt.choices)}, not {text!r}")
    try:
        return opt.parse(text)
    except ValueError as exc:
        raise SettingsError(f"{opt.flag} {exc}") from None


def markdown_table(cls: type) -> str:
    """docs/configuration.md's table of one command's settings."""
    lines = ["| flag | environment | default | meaning |", "|---|---|---|---|"]
    for item, opt in options(cls):
        default = shown(item, opt)
        default = default if default in ("none", "off", "on") or " " in default else f"`{default}`"
        meaning = opt.help
        if opt.choices:
            meaning += ": " + ", ".join(f"`{choice}`" for choice in opt.choices)
        if opt.kind == REPEATED:
            meaning += " (repeatable; the environment variable takes a comma-separated list)"
        lines.append(f"| `{opt.flag}` | `{opt.env}` | {default} | {meaning} |")
    return "\n".join(lines)


# The server: `chimeproxy serve`.

DATA_PLANE = "data plane (calls, messages, events)"
SMS_PROVIDERS = ("none", "webhook", "aws")
LOG_LEVELS = ("debug", "info", "warning", "error")


def _http_url(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise ValueError("must be an http(s) URL")
    return text


def _upper(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().upper()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return parse


def database_url(text: str) -> str:
    """A database URL chimeproxy can open: SQLite, or PostgreSQL through psycopg 3."""
    text = text.strip()
    scheme, separator, rest = text.partition("://")
    if not separator:
        raise ValueError(
            "must be a database URL, not a path: for a SQLite file write "
            f"sqlite:///{text} (four slashes before an absolute path), for PostgreSQL "
            "postgresql://USER@HOST:PORT/DB"
        )
    backend, _, driver = scheme.lower().partition("+")
    if backend == "postgres":  # what Heroku and others write; SQLAlchemy wants postgresql
        backend, text = "postgresql", f"postgresql{scheme[len('postgres') :]}://{rest}"
    if backend == "sqlite":
        if driver not in ("", "pysqlite"):
            raise ValueError("reaches SQLite through Python's sqlite3 only: sqlite:///PATH")
    elif backend == "postgresql":
        if driver not in ("", "psycopg"):
            raise ValueError(
                "reaches PostgreSQL through psycopg 3 only: postgresql://USER@HOST:PORT/DB"
            )
    else:
        raise ValueError(
            f"cannot be a {scheme}:// database: chimeproxy stores its data in SQLite "
            "(sqlite:///PATH) or PostgreSQL (postgresql://USER@HOST:PORT/DB)"
        )
    from sqlalchemy.engine import make_url  # here, so the SIP edge never imports SQLAlchemy

    try:
        make_url(text)
    except Exception as exc:  # ArgumentError, or ValueError for a port that is not a number
        raise ValueError(f"is not a valid database URL ({exc})") from None
    return text


# Options that more than one command has, declared once.
DATABASE: dict[str, Any] = {
    "flag": "--database",
    "env": "CHIMEPROXY_DATABASE",
    "help": "`sqlite:///PATH` or `postgresql://USER@HOST:PORT/DB`",
    "parse": database_url,
    "metavar": "URL",
}
ROUTE_SECRET: dict[str, Any] = {
    "flag": "--route-secret",
    "env": "CHIMEPROXY_ROUTE_SECRET",
    "help": "shared secret of the SIP edge and the server's data-plane endpoints "
    "(X-Chimeproxy-Route-Secret); prefer the environment variable, which process listings do "
    "not show",
    "parse": optional(str),
}
LOG_LEVEL: dict[str, Any] = {
    "flag": "--log-level",
    "env": "CHIMEPROXY_LOG_LEVEL",
    "help": "how much to log; logs are JSON lines on stderr",
    "choices": LOG_LEVELS,
}


@dataclass(frozen=True, slots=True)
class Settings:
    """`chimeproxy serve`'s settings."""

    host: str = option("127.0.0.1", flag="--host", env="CHIMEPROXY_HOST", help="listening address")
    port: int = option(
        8089,
        flag="--port",
        env="CHIMEPROXY_PORT",
        help="listening port",
        parse=integer(1, 65535),
    )
    database: str = option("sqlite:///chimeproxy.db", **DATABASE)
    auth: str | None = option(
        None,
        flag="--auth",
        env="CHIMEPROXY_AUTH",
        help="`open`: any caller, account from the access key; `strict`: SigV4 verified "
        "against --credentials",
        choices=("open", "strict"),
        shown_default="open on loopback, else strict",
    )
    credentials: str | None = option(
        None,
        flag="--credentials",
        env="CHIMEPROXY_CREDENTIALS",
        help="CSV `access_key_id,secret_access_key,account_id`; implies strict",
        parse=optional(str),
        metavar="FILE",
    )
    rate_limit: float | None = option(
        None,
        flag="--rate-limit",
        env="CHIMEPROXY_RATE_LIMIT",
        help="requests per second per caller (an account, the data plane, or an address), "
        "bursts the same; beyond it 429 ThrottledClientException",
        parse=optional(positive_number),
        shown_default="off",
    )
    clock_control: bool = option(
        False,
        flag="--clock-control",
        env="CHIMEPROXY_CLOCK_CONTROL",
        help='test mode: `POST /_chimeproxy/clock {"advance_seconds": N}` moves the clock',
        kind=SWITCH,
    )
    max_session_minutes: int = option(
        720,
        flag="--max-session-minutes",
        env="CHIMEPROXY_MAX_SESSION_MINUTES",
        help="longest ExpiryMinutes / DefaultSessionExpiryMinutes accepted",
        parse=integer(1, 525_600),
    )
    retention_days: float = option(
        30.0,
        flag="--retention-days",
        env="CHIMEPROXY_RETENTION_DAYS",
        help="how long Closed sessions stay readable before they are purged",
        parse=number(0, 3650),
    )
    sweep_interval_seconds: float = option(
        60.0,
        flag="--sweep-interval",
        env="CHIMEPROXY_SWEEP_INTERVAL",
        help="seconds between sweeps (closing expired sessions, purging)",
        parse=number(0.05, 86_400),
    )
    body_limit: int = option(
        1024 * 1024,
        flag="--body-limit",
        env="CHIMEPROXY_BODY_LIMIT",
        help="largest request body in bytes (413 beyond)",
        parse=integer(1024, 1024**3),
    )
    keep_alive_timeout: float = option(
        75.0,
        flag="--keep-alive-timeout",
        env="CHIMEPROXY_KEEP_ALIVE_TIMEOUT",
        help="seconds an idle keep-alive connection stays open between requests; keep it "
        "above the idle time after which clients and load balancers still reuse a connection",
        parse=number(1, 3600),
    )
    header_timeout: float = option(
        10.0,
        flag="--header-timeout",
        env="CHIMEPROXY_HEADER_TIMEOUT",
        help="seconds a connection may take to send a request's headers, from when it opens or "
        "after an idle keep-alive period ends; then it is closed (idle and slow connections "
        "cannot hold the server's file descriptors)",
        parse=number(0.1, 3600),
    )
    max_connections: int | None = option(
        None,
        flag="--max-connections",
        env="CHIMEPROXY_MAX_CONNECTIONS",
        help="open connections per process; beyond, health and readiness are still answered "
        "and any other request gets 503 ServiceUnavailableException with Retry-After "
        "(docs/operations.md#limits)",
        parse=optional(integer(1, 1_000_000)),
        shown_default="what the open-files limit allows, at most 10000",
    )
    workers: int = option(
        1,
        flag="--workers",
        env="CHIMEPROXY_WORKERS",
        help="server processes on this host",
        parse=integer(1, 256),
    )
    log_level: str = option("info", **LOG_LEVEL)
    migrate: bool = option(
        True,
        flag="--no-migrate",
        env="CHIMEPROXY_NO_MIGRATE",
        help="refuse to start on an old schema instead of upgrading it",
        kind=OFF_SWITCH,
        shown_default="off (migrations run at start)",
    )
    sqlite_synchronous: str = option(
        "NORMAL",
        flag="--sqlite-synchronous",
        env="CHIMEPROXY_SQLITE_SYNCHRONOUS",
        help="SQLite durability: NORMAL survives a killed process, FULL also power loss "
        "(slower writes)",
        parse=_upper(("NORMAL", "FULL")),
        metavar="{NORMAL,FULL}",
    )
    db_deadline: float = option(
        30.0,
        flag="--db-deadline",
        env="CHIMEPROXY_DB_DEADLINE",
        help="seconds a request waits for database work in a worker thread (PostgreSQL) before "
        "it answers 503 and its write is rolled back",
        parse=number(0.05, 600),
    )
    db_pool_size: int = option(
        10,
        flag="--db-pool-size",
        env="CHIMEPROXY_DB_POOL_SIZE",
        help="PostgreSQL connections each process keeps for its handlers",
        parse=integer(1, 1000),
    )
    db_threads: int | None = option(
        None,
        flag="--db-threads",
        env="CHIMEPROXY_DB_THREADS",
        help="database work done at once per process, each in a thread holding one connection "
        "(PostgreSQL requests; on SQLite only the sweeper)",
        parse=optional(integer(1, 1000)),
        shown_default="one per --db-pool-size connection",
    )
    # Set by the application, not by a flag: which account and region unsigned requests act as.
    default_account: str = "123456789012"
    default_region: str = "us-east-1"
    # The data plane.
    route_secret: str | None = option(
        None,
        **ROUTE_SECRET
        | {
            "help": ROUTE_SECRET["help"] + "; without one, the data-plane endpoints answer "
            "loopback callers only",
            "group": DATA_PLANE,
        },
    )
    sms_provider: str = option(
        "none",
        flag="--sms-provider",
        env="CHIMEPROXY_SMS_PROVIDER",
        help="where relayed SMS go out",
        choices=SMS_PROVIDERS,
        group=DATA_PLANE,
    )
    sms_webhook_url: str | None = option(
        None,
        flag="--sms-webhook-url",
        env="CHIMEPROXY_SMS_WEBHOOK_URL",
        help="webhook provider: POST `{from, to, body}` here",
        parse=optional(_http_url),
        group=DATA_PLANE,
    )
    sms_webhook_secret: str | None = option(
        None,
        flag="--sms-webhook-secret",
        env="CHIMEPROXY_SMS_WEBHOOK_SECRET",
        help="webhook provider: HMAC-SHA256 key of `X-Chimeproxy-Signature`",
        parse=optional(str),
        group=DATA_PLANE,
    )
    sms_aws_region: str | None = option(
        None,
        flag="--sms-aws-region",
        env="CHIMEPROXY_SMS_AWS_REGION",
        help="aws provider: End User Messaging region",
        parse=optional(str),
        shown_default="the server's default region",
        group=DATA_PLANE,
    )
    sms_aws_endpoint_url: str | None = option(
        None,
        flag="--sms-aws-endpoint-url",
        env="CHIMEPROXY_SMS_AWS_ENDPOINT_URL",
        help="aws provider: endpoint override",
        parse=optional(_http_url),
        shown_default="AWS's",
        group=DATA_PLANE,
    )
    sns_topic_arns: str | None = option(
        None,
        flag="--sns-topic-arns",
        env="CHIMEPROXY_SNS_TOPIC_ARNS",
        help="comma-separated SNS topics whose inbound-SMS notifications are accepted",
        parse=optional(str),
        group=DATA_PLANE,
    )
    sns_trusted_url_prefix: str | None = option(
        None,
        flag="--sns-trusted-url-prefix",
        env="CHIMEPROXY_SNS_TRUSTED_URL_PREFIX",
        help="also trust SNS certificate and subscribe URLs under this prefix (tests, private "
        "endpoints)",
        parse=optional(str),
        group=DATA_PLANE,
    )
    max_call_minutes: int | None = option(
        None,
        flag="--max-call-minutes",
        env="CHIMEPROXY_MAX_CALL_MINUTES",
        help="longest a call may last; calls also end when their session closes",
        parse=optional(integer(1, 525_600)),
        shown_default="none beyond the session",
        group=DATA_PLANE,
    )
    store_message_bodies: bool = option(
        False,
        flag="--store-message-bodies",
        env="CHIMEPROXY_STORE_MESSAGE_BODIES",
        help="keep relayed message bodies in interactions and events",
        kind=SWITCH,
        group=DATA_PLANE,
    )
    events_url: str | None = option(
        None,
        flag="--events-url",
        env="CHIMEPROXY_EVENTS_URL",
        help="POST session and interaction events here",
        parse=optional(_http_url),
        group=DATA_PLANE,
    )
    events_secret: str | None = option(
        None,
        flag="--events-secret",
        env="CHIMEPROXY_EVENTS_SECRET",
        help="HMAC-SHA256 key of the events' `X-Chimeproxy-Signature`",
        parse=optional(str),
        group=DATA_PLANE,
    )
    events_queue_size: int = option(
        1000,
        flag="--events-queue-size",
        env="CHIMEPROXY_EVENTS_QUEUE_SIZE",
        help="events waiting for delivery before new ones are dropped",
        parse=integer(1, 10_000_000),
        group=DATA_PLANE,
    )

    @property
    def retention_ms(self) -> int:
        return int(self.retention_days * 86_400_000)

    @property
    def max_call_ms(self) -> int | None:
        return None if self.max_call_minutes is None else self.max_call_minutes * 60_000


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    """The settings of the commands that only open the database (`db upgrade`, `numbers`)."""

    database: str = option("sqlite:///chimeproxy.db", **DATABASE)
