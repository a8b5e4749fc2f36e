"""Identifiers in the shapes the hosted service uses."""

from __future__ import annotations

import secrets
import string

_ID_ALPHABET = string.ascii_lowercase + string.digits


def voice_connector_id() -> str:
    """22 characters of [a-z0-9], like `abcdef1ghij2klmno3pqr4`."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(22))


def voice_connector_arn(region: str, account: str, connector_id: str) -> str:
    return f"arn:aws:chime:{region}:{account}:vc/{connector_id}"


def outbound_host_name(connector_id: str) -> str:
    return f"{connector_id}.voiceconnector.chime.aws"


# Session keys. A session's id is a time-ordered UUID (version 7: its millisecond, then random
# bits), and on SQLite the session is stored under a key made from that id. SQLite keeps a
# table's rows in the B-tree of its integer key, so a Get that knows the key reads the row in
# one descent; by the id it would first descend the id's index, a second random page of a
# large database (docs/performance.md). The key keeps the id's time order in its high bits,
# so sessions created together stay together, as with keys counted up: a page of a listing
# reads neighbouring rows, and an insert lands at the table's end.
SESSION_KEY_EPOCH_MS = 1_577_836_800_000  # 2020-01-01T00:00:00Z: keys fit 62 bits until 2089
SESSION_KEY_TIME_BITS = 41
SESSION_KEY_RANDOM_BITS = 21  # two sessions of one millisecond collide one time in 2 million


def session_key(session_id: str) -> int | None:
    """The key a session with this id is stored under: the id's millisecond since 2020, then
    the last 21 of its random bits. None for an id that is not a version 7 UUID of those years
    (a session created before ids were time-ordered: its key was counted up by the database)."""
    if len(session_id) != 36 or session_id[14] != "7":
        return None
    try:
        millis = int(session_id[:8] + session_id[9:13], 16)
        random_bits = int(session_id[30:], 16)
    except ValueError:
        return None
    since = millis - SESSION_KEY_EPOCH_MS
    if not 0 <= since < 1 << SESSION_KEY_TIME_BITS:
        return None
    return since << SESSION_KEY_RANDOM_BITS | random_bits & ((1 << SESSION_KEY_RANDOM_BITS) - 1)
