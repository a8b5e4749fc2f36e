"""Structured JSON logs, one object per line, with the request id where there is one.

Phone numbers are `sensitive` in the API model, so log lines carry ids, never numbers: the
formatter redacts anything shaped like a phone number from messages and exception texts, a last
line of defence behind messages that already leave them out.
"""

from __future__ import annotations

import atexit
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
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


_second: tuple[int, str] = (-1, "")  # the last second formatted, and its text


_millisecond: tuple[int, str] = (-1, "")  # the last millisecond formatted, and its text


def _timestamp(now: float) -> str:
    """`now` as JsonFormatter writes a record's time (milliseconds truncated, as logging's).
    Under load, several lines share a millisecond: its text is made once."""
    global _second, _millisecond
    whole = int(now)
    millis = int((now - whole) * 1000)
    if _millisecond[0] == whole * 1000 + millis:
        return _millisecond[1]
    if _second[0] != whole:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    text = f"{_second[1]}.{millis:03d}Z"
    _millisecond = (whole * 1000 + millis, text)
    return text


def access(
    request_id: str,
    operation: str | None,
    method: str,
    status: int,
    error: str | None,
    account: str | None,
    seconds: float,
) -> None:
    """Write one access line: the JSON object JsonFormatter writes for a record of the
    `chimeproxy.access` logger with these fields as extras (`ms`: `seconds` in milliseconds,
    to the microsecond), without building a LogRecord (its `findCaller`, its formatting and the
    redaction pass took 10 µs of a 180 µs request). The fields are chosen by the code (ids,
    names, numbers), so there is nothing to redact. Through the writing thread like every other
    line, so lines keep their order; logged the ordinary way when `configure` has not set up
    chimeproxy's logging."""
    # round(x, 3) on a float goes through its decimal digits: three times this.
    ms = round(seconds * 1_000_000) / 1000
    line = {
        "time": _timestamp(time.time()),
        "level": "info",
        "logger": "chimeproxy.access",
        "message": "request",
        "request_id": request_id,
        "operation": operation,
        "method": method,
        "status": status,
        "error": error,
        "account": account,
        "ms": ms,
    }
    writer = _writer
    if writer is None:
        for head in ("time", "level", "logger", "message"):  # the record's own
            del line[head]
        logging.getLogger("chimeproxy.access").info("request", extra=line)
        return
    writer.put_line(orjson.dumps(line))


class _Writer(threading.Thread):
    """The thread that formats and writes every line, so that no write holds the event loop.

    Lines wait in a list, in order: access lines as finished bytes, other records as records,
    formatted here. An idle writer is woken by the first line; once awake it takes everything
    waiting, writes it in one call, then lets `BATCH_SECONDS` pass before the next write. Under
    load that is one wake-up and one write per batch instead of per line: woken per line, the
    thread took the GIL from the event loop at every release (each SQLite call), which cost a
    Get about 60 µs in futex calls and context switches (docs/performance.md). A batch of
    access lines alone is joined in one call, with no Python step per line: that work holds the
    GIL the event loop needs, and one CPU may serve both."""

    BATCH_SECONDS = 0.01

    def __init__(self, handler: logging.StreamHandler[Any]) -> None:
        super().__init__(name="chimeproxy-log", daemon=True)
        self.handler = handler
        # Taken and replaced whole by the writer, under the lock: an append racing the swap
        # must land in one list or the other, never in one already written.
        self._lock = threading.Lock()
        self._lines: list[bytes | logging.LogRecord] = []
        self._records = False  # a record waits among the lines (else they are all bytes)
        self._idle = False
        self._wake = threading.Event()
        self._stopping = threading.Event()

    def put_line(self, line: bytes) -> None:
        """A finished line (JSON, no newline)."""
        with self._lock:
            self._lines.append(line)
        self._wake_if_idle()

    def put(self, record: logging.LogRecord) -> None:
        """A record, formatted by this thread when its turn comes."""
        with self._lock:
            self._lines.append(record)
            self._records = True
        self._wake_if_idle()

    def _wake_if_idle(self) -> None:
        if self._idle:
            self._idle = False
            self._wake.set()

    def run(self) -> None:
        while True:
            self._idle = True
            # A line put just before `_idle` was set did not wake us: look before sleeping.
            if not self._lines:
                self._wake.wait()
            self._idle = False
            self._wake.clear()
            self._write_waiting()
            if self._stopping.is_set():
                self._write_waiting()
                return
            self._stopping.wait(self.BATCH_SECONDS)

    def _write_waiting(self) -> None:
        with self._lock:
            lines, self._lines = self._lines, []
            records, self._records = self._records, False
        if not lines:
            return
        handler = self.handler
        if not records:
            _write(handler, b"\n".join(lines).decode())  # type: ignore[arg-type]
            return
        text: list[str] = []
        for item in lines:
            if isinstance(item, bytes):
                text.append(item.decode())
                continue
            if item.levelno < handler.level:
                continue
            try:
                text.append(handler.format(item))
            except Exception:
                handler.handleError(item)
        if text:
            _write(handler, handler.terminator.join(text))

    def stop(self) -> None:
        """Write what is waiting and end the thread."""
        self._stopping.set()
        self._wake.set()
        self.join()


def _write(handler: logging.StreamHandler[Any], text: str) -> None:
    with handler.lock:  # type: ignore[union-attr]
        handler.stream.write(text + handler.terminator)
        handler.flush()


class _Enqueue(logging.Handler):
    """Hands records to the writing thread as they are: formatting and writing happen there."""

    def __init__(self, writer: _Writer) -> None:
        super().__init__()
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        self.writer.put(record)


_writer: _Writer | None = None


def flush() -> None:
    """Writes every line still waiting and stops the writing thread (until `configure`)."""
    global _writer
    writer, _writer = _writer, None
    if writer is not None:
        writer.stop()


def write_directly() -> None:
    """From now on every line is written as it is logged, the waiting ones first: for the end
    of the process (uvicorn ends it by raising SIGTERM again once its graceful shutdown is done,
    which skips `atexit`, and the shutdown's last lines were lost in the queue)."""
    writer = _writer
    if writer is not None:
        # Handler first, then the waiting lines: a line another thread logs meanwhile may come
        # out ahead of waiting ones, but none is lost.
        logging.getLogger().handlers[:] = [writer.handler]
        flush()


def configure(level: str) -> None:
    """Send every logger's records to stderr as JSON lines; uvicorn's access log stays off
    (the application writes its own, with the request id and without the path).

    Records are formatted and written by a thread of their own (`_Writer`): a write to a slow
    disk (or a full pipe) must not hold the event loop, which measured up to 0.9 s of a
    2,000-request burst in write calls. Lines keep their order; they are flushed at exit, and
    written directly from the start of the graceful shutdown (`write_directly`)."""
    global _writer
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    flush()
    _writer = _Writer(handler)
    _writer.start()
    atexit.unregister(flush)
    atexit.register(flush)
    root = logging.getLogger()
    root.handlers[:] = [_Enqueue(_writer)]
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
