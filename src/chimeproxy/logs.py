"""Structured JSON logs, one object per line, with the request id where there is one.

Phone numbers are `sensitive` in the API model, so log lines carry ids, never numbers: the
formatter redacts anything shaped like a phone number from messages and exception texts, a last
line of defence behind messages that already leave them out.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from queue import SimpleQueue
from typing import Any

import orjson

# Record attributes that are not structured fields; uvicorn adds `color_message`, a copy of
# the message with terminal colour escapes, which has no place in a JSON line.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

REDACTED = "[redacted]"
# E.164 with its '+' (raw or percent-encoded, as in a request path), or a bare run of 10 to 15
# digits standing alone (a number sent without '+'). Shorter runs (ports, counts, line numbers)
# and digits inside ids (`abc123...`, UUIDs, hex addresses) are left alone.
_E164 = r"(?:\+|%2[bB])[0-9]{6,15}(?![0-9])"
_PHONE_NUMBER = re.compile(_E164 + r"|(?<![\w.:+%-])[0-9]{10,15}(?![\w.-])", re.ASCII)
# Structured fields are chosen by the code (account ids are 12 bare digits and must stay
# readable), so in them only the unmistakable E.164 form is redacted.
_E164_NUMBER = re.compile(_E164, re.ASCII)


def redact(text: str) -> str:
    """`text` with every phone-number-like run replaced by `[redacted]`."""
    return _PHONE_NUMBER.sub(REDACTED, text)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _E164_NUMBER.sub(REDACTED, value)
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(item) for item in value]
    if isinstance(value, dict):
        return {key: _scrub(item) for key, item in value.items()}
    return value


def shown_path(raw_path: str, limit: int = 200) -> str:
    """A request path fit to repeat in an error message or a log: redacted and truncated."""
    path = redact(raw_path)
    return path if len(path) <= limit else path[:limit] + "..."


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(_ANSI_ESCAPE.sub("", record.getMessage())),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                document[key] = _scrub(value)
        if record.exc_info:
            # Exception texts may quote SQL parameters or input values.
            document["exception"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(document, default=str).decode()


_ACCESS_HEAD = {"level": "info", "logger": "chimeproxy.access", "message": "request"}
_second: tuple[int, str] = (-1, "")  # the last second formatted, and its text


def _timestamp(now: float) -> str:
    """`now` as JsonFormatter writes a record's time (milliseconds truncated, as logging's)."""
    global _second
    whole = int(now)
    if _second[0] != whole:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_second[1]}.{int((now - whole) * 1000):03d}Z"


def access(fields: dict[str, Any]) -> None:
    """Write one access line, the same JSON object JsonFormatter writes for a record of the
    `chimeproxy.access` logger with `fields` as extras, without building a LogRecord (its
    `findCaller`, its formatting and the redaction pass took 10 µs of a 180 µs request). The
    fields are chosen by the code (ids, names, numbers), so there is nothing to redact. Through
    the writing thread like every other line, so lines keep their order; logged the ordinary
    way when `configure` has not set up chimeproxy's logging."""
    handler = _handler
    if handler is None:
        logging.getLogger("chimeproxy.access").info("request", extra=fields)
        return
    line = orjson.dumps({"time": _timestamp(time.time()), **_ACCESS_HEAD, **fields}).decode()
    listener = _listener
    if listener is not None:
        listener.queue.put_nowait(line)  # type: ignore[arg-type]
    else:
        _write(handler, line)


def _write(handler: logging.StreamHandler[Any], line: str) -> None:
    with handler.lock:  # type: ignore[union-attr]
        handler.stream.write(line + handler.terminator)
        handler.flush()


class _Listener(logging.handlers.QueueListener):
    """Writes records through its handlers, and lines already formatted (`access`) as they are."""

    def handle(self, record: logging.LogRecord | str) -> None:  # type: ignore[override]
        if isinstance(record, str):
            if _handler is not None:
                _write(_handler, record)
            return
        super().handle(record)


class _Enqueue(logging.handlers.QueueHandler):
    """Hands records to the writing thread as they are: formatting and writing happen there."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


_listener: logging.handlers.QueueListener | None = None
_handler: logging.StreamHandler[Any] | None = None  # where configure's lines go


def flush() -> None:
    """Writes every line still queued and stops the writing thread (until `configure`)."""
    global _listener
    listener, _listener = _listener, None
    if listener is not None:
        listener.stop()


def write_directly() -> None:
    """From now on every line is written as it is logged, the queued ones first: for the end
    of the process (uvicorn ends it by raising SIGTERM again once its graceful shutdown is done,
    which skips `atexit`, and the shutdown's last lines were lost in the queue)."""
    listener = _listener
    if listener is not None:
        # Handlers first, then the queue: a line another thread logs meanwhile may come out
        # ahead of queued ones, but none is lost.
        logging.getLogger().handlers[:] = list(listener.handlers)
        flush()


def configure(level: str) -> None:
    """Send every logger's records to stderr as JSON lines; uvicorn's access log stays off
    (the application writes its own, with the request id and without the path).

    Records are formatted and written by a thread of their own: a write to a slow disk (or a
    full pipe) must not hold the event loop, which measured up to 0.9 s of a 2,000-request
    burst in write calls. Lines keep their order; they are flushed at exit, and written directly
    from the start of the graceful shutdown (`write_directly`)."""
    global _listener, _handler
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    flush()
    queue: SimpleQueue[logging.LogRecord] = SimpleQueue()
    _handler = handler
    _listener = _Listener(queue, handler)
    _listener.start()
    atexit.unregister(flush)
    atexit.register(flush)
    root = logging.getLogger()
    root.handlers[:] = [_Enqueue(queue)]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("alembic").setLevel(logging.WARNING)


class EpisodeLog:
    """Trouble that repeats, logged as episodes: the first occurrence of each kind at once, in
    the source's own words; then at most one line per `interval` for that kind, saying how many
    occurrences went unlogged meanwhile; and one line when an episode that was logged ends. An
    outage of a minute writes a few lines, not one per request, and trouble that comes and goes
    with every other request is no louder than trouble that stays.

    Thread-safe: occurrences come from the event loop and from worker threads alike."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._kinds: dict[str, _Episode] = {}

    @property
    def open_kinds(self) -> frozenset[str]:
        return frozenset(kind for kind, episode in self._kinds.items() if episode.open)

    def occurred(self, kind: str, message: str, level: int = logging.ERROR, **fields: Any) -> None:
        """One occurrence of `kind`; `message` says what happened."""
        now = self.clock()
        with self._lock:
            episode = self._kinds.setdefault(kind, _Episode())
            episode.open = True
            if episode.last_line is not None and now - episode.last_line < self.interval:
                episode.unlogged += 1
                return
            unlogged, episode.unlogged = episode.unlogged, 0
            episode.last_line, episode.logged = now, True
        if unlogged:
            message = f"{message} (and {unlogged} more since the last line)"
        self.logger.log(level, message, extra={"kind": kind, **fields})

    def ended(self, kinds: Iterable[str], message: str, **fields: Any) -> None:
        """The trouble of `kinds` is over: one line if an open episode among them was logged."""
        with self._lock:
            closed = []
            for kind in kinds:
                episode = self._kinds.get(kind)
                if episode is not None and episode.open:
                    episode.open = False
                    if episode.logged:
                        closed.append(kind)
                    episode.logged = False
        if closed:
            self.logger.info(message, extra={"ended": sorted(closed), **fields})


@dataclass(slots=True)
class _Episode:
    open: bool = False
    logged: bool = False  # a line about this episode was written
    unlogged: int = 0  # occurrences since the last line that no line mentioned
    last_line: float | None = None
