"""Pieces every operation family uses: paging with opaque tokens and resource lookups."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, RowMapping

from chimeproxy.domain.pagination import InvalidToken, decode_token, encode_token
from chimeproxy.domain.phone import (
    InvalidPhoneNumber,
    normalize_e164,
)
from chimeproxy.operations.registry import Context
from chimeproxy.protocol.errors import BadRequestException, NotFoundException
from chimeproxy.store import voice_connectors

T = TypeVar("T")
DEFAULT_PAGE = 100


def page_after(context: Context, listing: str, token: str | None) -> list[Any] | None:
    """The keyset position a NextToken carries, or None for the first page."""
    if token is None:
        return None
    try:
        return decode_token(context.services.token_key, _scope(context, listing), token)
    except InvalidToken as exc:
        raise BadRequestException(f"Invalid NextToken: {exc}") from exc


def next_token(
    context: Context,
    listing: str,
    items: Sequence[T],
    limit: int,
    position: Callable[[T], list[Any]],
) -> str | None:
    """A token for the page after `items` when a further item was fetched (limit + 1 rows)."""
    if len(items) <= limit:
        return None
    return encode_token(
        context.services.token_key, _scope(context, listing), position(items[limit - 1])
    )


def _scope(context: Context, listing: str) -> str:
    return f"{context.account}:{context.region}:{listing}"


def e164_member(raw: str, member: str) -> str:
    """A phone-number member in E.164 (a missing `+` added), or 400 naming the member."""
    try:
        return normalize_e164(raw)
    except InvalidPhoneNumber as exc:
        raise BadRequestException(f"Invalid value for {member}: {exc}.") from exc


def e164_members(values: Sequence[str], member: str) -> list[str]:
    """A list member of phone numbers: each in E.164, duplicates removed (first kept), and at
    least one (400 naming the member otherwise)."""
    numbers = list(dict.fromkeys(e164_member(value, member) for value in values))
    if not numbers:
        raise BadRequestException(
            f"Invalid value for {member}: must not be empty; give at least one phone number."
        )
    return numbers


def require_connector(connection: Connection, context: Context, connector_id: str) -> RowMapping:
    row = voice_connectors.find(connection, context.account, context.region, connector_id)
    if row is None:
        raise NotFoundException(f"Voice connector {connector_id} not found.")
    return row
