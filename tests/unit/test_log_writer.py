"""The log writing thread (logs.py `_Writer`): every line, in order, whether it comes in a
burst or alone, and nothing left behind when it stops."""

from __future__ import annotations

import io
import logging
import threading
import time

import orjson

from chimeproxy import logs


def writer() -> tuple[logs._Writer, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    running = logs._Writer(handler)
    running.start()
    return running, stream


def wait_for(condition, seconds: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def record(message: str, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.makeLogRecord(
        {"name": "chimeproxy.test", "levelno": level, "levelname": "WARNING", "msg": message}
    )


def test_a_burst_from_several_threads_keeps_each_threads_order_and_loses_nothing() -> None:
    """Finished lines and records, put while the writer takes batches: each lands in one
    batch or the next, none lost, each thread's in its order."""
    running, stream = writer()

    def burst(thread: int) -> None:
        for index in range(2_000):
            if index % 500 == 0:
                running.put(record(f"record {thread} {index}"))
            else:
                running.put_line(f'{{"thread":{thread},"index":{index}}}'.encode())

    threads = [threading.Thread(target=burst, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    running.stop()
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 8_000
    for thread in range(4):
        order = [
            line["index"] if "index" in line else int(line["message"].split()[2])
            for line in lines
            if line.get("thread") == thread
            or line.get("message", "").startswith(f"record {thread} ")
        ]
        assert order == list(range(2_000))


def test_a_line_alone_is_written_at_once_not_at_the_next_batch() -> None:
    running, stream = writer()
    try:
        time.sleep(0.05)  # the writer is idle, waiting for work
        started = time.monotonic()
        running.put_line(b'{"alone":true}')
        wait_for(lambda: '"alone":true' in stream.getvalue())
        assert time.monotonic() - started < 1.0
    finally:
        running.stop()


def test_records_are_formatted_in_order_with_formatted_lines() -> None:
    running, stream = writer()
    running.put_line(b'{"first":1}')
    running.put(record("second 1 +12065550123"))  # formatted (and redacted) by the writer
    running.put_line(b'{"third":3}')
    running.stop()
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0] == {"first": 1}
    assert lines[1]["message"] == f"second 1 {logs.REDACTED}"
    assert lines[2] == {"third": 3}


def test_stop_writes_what_is_waiting() -> None:
    running, stream = writer()
    for index in range(500):
        running.put_line(f'{{"index":{index}}}'.encode())
    running.stop()
    assert not running.is_alive()
    assert len(stream.getvalue().splitlines()) == 500


def test_under_load_lines_are_written_in_batches() -> None:
    """One write per batch, not per line: what keeps the writer off the event loop's GIL."""
    writes = 0

    class Counting(io.StringIO):
        def write(self, text: str) -> int:
            nonlocal writes
            writes += 1
            return super().write(text)

    stream = Counting()
    handler = logging.StreamHandler(stream)
    running = logs._Writer(handler)
    running.start()
    for index in range(20_000):
        running.put_line(f'{{"index":{index}}}'.encode())
        if index % 1000 == 0:
            time.sleep(0.002)
    running.stop()
    assert len(stream.getvalue().splitlines()) == 20_000
    assert writes < 200


def test_access_line_times_read_as_the_formatter_writes_them() -> None:
    """`_timestamp` (texts made once per second and per millisecond) against JsonFormatter's
    own time for a record made at the same instant, over instants that share a millisecond,
    cross one, and cross a second."""
    formatter = logs.JsonFormatter()
    base = 1_764_800_000.0
    for offset in (0.0, 0.0001, 0.0009, 0.001, 0.0015, 0.999, 0.9999, 1.0, 1.0004, 61.5, 0.0):
        now = base + offset
        record = logging.makeLogRecord({"msg": "x", "levelname": "INFO"})
        record.created, record.msecs = now, int((now - int(now)) * 1000) + 0.0
        assert logs._timestamp(now) == orjson.loads(formatter.format(record))["time"], offset


def test_an_access_line_is_what_the_formatter_writes_for_its_record() -> None:
    """`access` builds its line without a LogRecord: the same object as JsonFormatter's for
    a record of the access logger with the same fields as extras, `ms` to the microsecond."""
    running, stream = writer()
    previous, logs._writer = logs._writer, running
    try:
        before = time.time()
        logs.access("req-1", "GetProxySession", "GET", 200, None, "111122223333", 0.0012344)
        logs.access("req-2", None, "POST", 404, "UnknownOperationException", None, 0.0123456)
        after = time.time()
    finally:
        logs._writer = previous
        running.stop()
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    formatter = logs.JsonFormatter()
    expected = []
    for request_id, operation, method, status, error, account, ms in [
        ("req-1", "GetProxySession", "GET", 200, None, "111122223333", 1.234),
        ("req-2", None, "POST", 404, "UnknownOperationException", None, 12.346),
    ]:
        record = logging.makeLogRecord(
            {"name": "chimeproxy.access", "msg": "request", "levelname": "INFO", "levelno": 20}
        )
        record.__dict__.update(
            request_id=request_id, operation=operation, method=method, status=status,
            error=error, account=account, ms=ms,
        )  # fmt: skip
        expected.append(orjson.loads(formatter.format(record)))
    for line, wanted in zip(lines, expected, strict=True):
        assert logs._timestamp(before) <= line.pop("time") <= logs._timestamp(after)
        wanted.pop("time")
        assert line == wanted
        assert list(line) == list(wanted)  # the same order of keys too
