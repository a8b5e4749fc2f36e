"""UUIDs from OS randomness read in blocks rather than a system call each (every request takes
at least one): random ones (version 4) for request, order, session and event ids, and
time-ordered ones (version 7) for the ids of rows written on hot paths, whose unique index
then grows at its end (interactions)."""

from __future__ import annotations

import os
import threading
import time

# Random bytes for random_uuid, read from the OS 4 KiB at a time: `uuid.uuid4()` makes a getrandom
# call per id, and every request takes one (its request id), some two or three.
_RANDOM_CHUNK = 4096
_random = b""
_random_at = 0
_random_lock = threading.Lock()  # ids are made in worker threads too: no two may share bytes


def _forget_random() -> None:
    """A forked child must not hand out the ids its parent still holds."""
    global _random, _random_at, _random_lock
    _random, _random_at, _random_lock = b"", 0, threading.Lock()


os.register_at_fork(after_in_child=_forget_random)

_VERSION_MASK = ~(0xF000 << 64) & ~(0xC000 << 48)
_VERSION_BITS = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant
_V7_BITS = (0x7000 << 64) | (0x8000 << 48)  # version 7, the same variant
_V7_RANDOM_A = 0x0FFF << 64  # 12 random bits after the version nibble
_V7_RANDOM_B = (1 << 62) - 1  # 62 after the variant bits
_MS_MASK = (1 << 48) - 1


def _random_int() -> int:
    """128 random bits, from the buffered block."""
    global _random, _random_at
    with _random_lock:
        at = _random_at
        if at + 16 > len(_random):
            _random, at = os.urandom(_RANDOM_CHUNK), 0
        _random_at = at + 16
        chunk = _random[at : at + 16]
    return int.from_bytes(chunk, "big")


def _text(value: int) -> str:
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def random_uuid() -> str:
    """A random (version 4) UUID in its canonical text form, as `str(uuid.uuid4())`."""
    return _text(_random_int() & _VERSION_MASK | _VERSION_BITS)


def time_ordered_uuid(now_ms: int | None = None) -> str:
    """A version 7 UUID (RFC 9562) in its canonical text form: the Unix time in milliseconds
    (`now_ms`, or the clock's), then 74 random bits. Ids made later sort after those made
    earlier, so a table's unique index on them grows at its last page, which stays cached and
    is shared by the writes of one commit. A random id lands on a random page of that index,
    which each write must read, change and copy to the WAL (docs/performance.md, fifth pass).
    What it tells about a row that a random id would not is when the row was made, which
    every row with such an id already shows."""
    millis = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    random_bits = _random_int() & (_V7_RANDOM_A | _V7_RANDOM_B)
    return _text((millis & _MS_MASK) << 80 | random_bits | _V7_BITS)
