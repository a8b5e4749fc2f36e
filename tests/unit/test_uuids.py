"""Request, session and interaction ids: `random_uuid` and `time_ordered_uuid` against the standard
library's `uuid` as the oracle (its parser; RFC 9562's layout for version 7)."""

from __future__ import annotations

import os
import threading
import time
import uuid

from chimeproxy import uuids


def test_uuid_ids_are_canonical_version_4_uuids() -> None:
    for _ in range(20_000):  # several refills of the random buffer
        text = uuids.random_uuid()
        parsed = uuid.UUID(text)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text


def test_uuid_ids_use_every_random_bit_but_the_fixed_ones() -> None:
    """122 random bits: over many ids each of them is seen both set and clear."""
    seen_set, seen_clear = 0, 0
    for _ in range(2_000):
        value = uuid.UUID(uuids.random_uuid()).int
        seen_set |= value
        seen_clear |= ~value
    fixed = (0xF000 << 64) | (0xC000 << 48)
    assert (seen_set & seen_clear & ((1 << 128) - 1)) == ((1 << 128) - 1) & ~fixed


def test_threads_never_share_an_id() -> None:
    made: list[list[str]] = [[] for _ in range(8)]

    def make(into: list[str]) -> None:
        into.extend(uuids.random_uuid() for _ in range(5_000))

    threads = [threading.Thread(target=make, args=(into,)) for into in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [text for into in made for text in into]
    assert len(set(every)) == len(every)


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    uuids.random_uuid()  # the parent now holds buffered random bytes
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.close(read)
        os.write(write, "\n".join(uuids.random_uuid() for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split("\n"))
    os.waitpid(pid, 0)
    parent = {uuids.random_uuid() for _ in range(100)}
    assert len(child) == 100 and not child & parent


def test_time_ordered_ids_are_canonical_version_7_uuids_of_their_millisecond() -> None:
    for millis in (0, 1, 1_796_213_568_871, (1 << 48) - 1):
        text = uuids.time_ordered_uuid(millis)
        parsed = uuid.UUID(text)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text
        assert parsed.int >> 80 == millis  # unix_ts_ms: the first 48 bits


def test_time_ordered_ids_default_to_the_clock() -> None:
    before = time.time_ns() // 1_000_000
    made = uuid.UUID(uuids.time_ordered_uuid()).int >> 80
    after = time.time_ns() // 1_000_000
    assert before <= made <= after


def test_time_ordered_ids_sort_by_their_millisecond() -> None:
    """What the index locality rests on: an id of a later millisecond sorts after every id of an
    earlier one, as text (the column's order) as well as as a number."""
    ids = [uuids.time_ordered_uuid(millis) for millis in range(1_000, 1_200) for _ in range(20)]
    by_millisecond = [uuid.UUID(text).int >> 80 for text in sorted(ids)]
    assert by_millisecond == sorted(by_millisecond)


def test_time_ordered_ids_use_every_random_bit_but_the_fixed_ones() -> None:
    """74 random bits (rand_a and rand_b): over many ids of one millisecond each is seen both
    set and clear; the version and variant never change."""
    seen_set, seen_clear = 0, 0
    for _ in range(2_000):
        value = uuid.UUID(uuids.time_ordered_uuid(42)).int
        seen_set |= value
        seen_clear |= ~value
    random_bits = (0x0FFF << 64) | ((1 << 62) - 1)
    assert seen_set & seen_clear & ((1 << 80) - 1) == random_bits
