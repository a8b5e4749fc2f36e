"""UUIDs from OS randomness read in blocks rather than a system call each (every request takes
at least one): random ones (version 4) for request, order and event ids, and time-ordered ones
(version 7) for the ids of rows written on hot paths, whose unique index then grows at its end
(sessions, interactions)."""

from __future__ import annotations

import os
import threading
import time

# Random ids made from OS randomness 4 KiB at a time: `uuid.uuid4()` makes a getrandom call per
# id, and every request takes one (its request id), some two or three. The block's 256 ids are
# written out as text together, in one comprehension over its hex digits: an id then costs a
# list pop, about half of what reading and formatting it one at a time did (docs/performance.md).
_RANDOM_CHUNK = 4096
_HEX_DIGITS = 32  # 128 bits
_ready: list[str] = []
_random_lock = threading.Lock()  # ids are made in worker threads too: no two may share bytes
# The variant digit of an RFC 4122 UUID (binary 10xx) from a random hex digit's two low bits.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def _forget_random() -> None:
    """A forked child must not hand out the ids its parent still holds."""
    global _ready, _random_lock
    _ready, _random_lock = [], threading.Lock()


os.register_at_fork(after_in_child=_forget_random)


def _random_ids() -> list[str]:
    """A block's worth of version 4 UUIDs: every bit random but the version's 4 and the
    variant's 2."""
    h = os.urandom(_RANDOM_CHUNK).hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-4{h[i + 13 : i + 16]}-"
        f"{_VARIANT[h[i + 16]]}{h[i + 17 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, 2 * _RANDOM_CHUNK, _HEX_DIGITS)
    ]


def random_uuid() -> str:
    """A random (version 4) UUID in its canonical text form, as `str(uuid.uuid4())`."""
    global _ready
    with _random_lock:
        if not _ready:
            _ready = _random_ids()
        return _ready.pop()


_MS_MASK = (1 << 48) - 1
_millisecond: tuple[int, str] = (-1, "")  # the last millisecond, and its ids' prefix


def time_ordered_uuid(now_ms: int | None = None) -> str:
    """A version 7 UUID (RFC 9562) in its canonical text form: the Unix time in milliseconds
    (`now_ms`, or the clock's), then 74 random bits. Ids made later sort after those made
    earlier, so a table's unique index on them grows at its last page, which stays cached and
    is shared by the writes of one commit. A random id lands on a random page of that index,
    which each write must read, change and copy to the WAL (docs/performance.md, fifth pass).
    What it tells about a row that a random id would not is when the row was made, which
    every row with such an id already shows."""
    global _millisecond
    millis = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    millis &= _MS_MASK
    # The random version 4 id's last 21 digits (rand_a's 12 bits after its version digit, the
    # variant and rand_b's 62) are a version 7 id's too: only the time and the version differ.
    random_part = random_uuid()[15:]
    last, prefix = _millisecond  # one read: another thread may replace it
    if last != millis:  # ids made under load share their millisecond
        text = f"{millis:012x}"
        prefix = f"{text[:8]}-{text[8:]}-7"
        _millisecond = (millis, prefix)
    return prefix + random_part
