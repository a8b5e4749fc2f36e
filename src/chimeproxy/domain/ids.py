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
