"""Minimal HTTP request and response types over ASGI."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from chimeproxy.protocol.errors import ServiceError
from chimeproxy.uuids import random_uuid


@dataclass(slots=True)
class Request:
    method: str
    raw_path: str
    query_string: str
    headers: dict[str, str]
    body: bytes
    client_host: str | None
    scheme: str = "http"  # "https" behind TLS (uvicorn reads a trusted proxy's X-Forwarded-Proto)
    request_id: str = field(default_factory=random_uuid)
    account: str = ""
    region: str = ""
    operation: str | None = None  # the matched operation or endpoint's name
    labels: dict[str, str] = field(default_factory=dict)  # its path labels, percent-decoded
    query: list[tuple[str, str]] = field(default_factory=list)  # parsed query (model operations)
    model_operation: Any = None  # botocore's OperationModel, for an operation of the model
    # Arrived over the server's connection limit (connections.OVER_LIMIT): answered 503.
    over_connection_limit: bool = False


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    error_type: str | None = None

    @classmethod
    def json(cls, status: int, document: Any) -> Response:
        return cls(status, orjson.dumps(document))

    @classmethod
    def error(cls, error: ServiceError) -> Response:
        response = cls(error.status, orjson.dumps(error.body()), error_type=error.type_name)
        response.headers.append((b"x-amzn-errortype", error.type_name.encode()))
        response.headers.extend(error.headers)
        return response
