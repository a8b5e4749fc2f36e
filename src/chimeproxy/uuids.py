"""Random (version 4) UUIDs, for request, interaction, order and event ids: every request takes
at least one, so they come from OS randomness read in blocks rather than a system call each."""

from __future__ import annotations

import os
import threading

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


def random_uuid() -> str:
    """A random (version 4) UUID in its canonical text form, as `str(uuid.uuid4())`."""
    global _random, _random_at
    with _random_lock:
        at = _random_at
        if at + 16 > len(_random):
            _random, at = os.urandom(_RANDOM_CHUNK), 0
        _random_at = at + 16
        chunk = _random[at : at + 16]
    value = int.from_bytes(chunk, "big") & _VERSION_MASK | _VERSION_BITS
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
