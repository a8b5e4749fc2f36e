"""Event webhooks: session and interaction events POSTed to `--events-url`.

Emitting never blocks the caller (a request handler, the sweeper's thread): an event is encoded
at once and put on a bounded queue; when the queue is full it is dropped and logged. One
background task delivers the queue in order, retrying each event with exponential back-off.
Each body is signed with HMAC-SHA256 when `--events-secret` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import threading
import uuid
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Connection

from chimeproxy.dataplane.httpclient import HttpError, post
from chimeproxy.protocol.serializer import format_timestamp

if TYPE_CHECKING:
    from chimeproxy.config import Settings
    from chimeproxy.operations.registry import Context
    from chimeproxy.services import Services

log = logging.getLogger("chimeproxy.events")

SESSION_CREATED = "session.created"
SESSION_UPDATED = "session.updated"
SESSION_CLOSED = "session.closed"
SESSION_DELETED = "session.deleted"
INTERACTION_STARTED = "interaction.started"
INTERACTION_ENDED = "interaction.ended"
OUT_OF_SESSION_CONTACT = "contact.out_of_session"

SIGNATURE_HEADER = "X-Chimeproxy-Signature"
ATTEMPT_TIMEOUT_SECONDS = 5.0
MAX_ATTEMPTS = 6
FIRST_RETRY_DELAY_SECONDS = 0.5


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: `sha256=` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class EventBus:
    """A bounded queue of encoded events and the task that delivers them."""

    def __init__(
        self,
        url: str,
        secret: str | None,
        queue_size: int,
        *,
        max_attempts: int = MAX_ATTEMPTS,
        first_delay: float = FIRST_RETRY_DELAY_SECONDS,
        timeout: float = ATTEMPT_TIMEOUT_SECONDS,
    ) -> None:
        self.url = url
        self.secret = secret
        self.queue_size = queue_size
        self.max_attempts = max_attempts
        self.first_delay = first_delay
        self.timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[str, str, bytes]] | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> EventBus | None:
        if not settings.events_url:
            return None
        return cls(settings.events_url, settings.events_secret, settings.events_queue_size)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(maxsize=self.queue_size)
        self._task = asyncio.create_task(self._run(), name="chimeproxy-events")

    async def stop(self) -> None:
        """Stop delivering; events still queued are lost (delivery is best effort)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._queue is not None and (left := self._queue.qsize()):
            log.warning("events not delivered at shutdown", extra={"events": left})

    def emit(
        self,
        event_type: str,
        data: dict[str, Any],
        *,
        time_ms: int,
        account: str | None = None,
        region: str | None = None,
    ) -> None:
        """Queue an event; safe from any thread, never waits."""
        event_id = str(uuid.uuid4())
        body = orjson.dumps(
            {
                "id": event_id,
                "type": event_type,
                "time": format_timestamp(time_ms),
                "account": account,
                "region": region,
                "data": data,
            },
            option=orjson.OPT_SORT_KEYS,
        )
        item = (event_type, event_id, body)
        loop = self._loop
        if loop is None or loop.is_closed():
            log.warning("event dropped: delivery not running", extra={"event": event_type})
            return
        if _on_loop(loop):
            self._enqueue(item)
        else:
            loop.call_soon_threadsafe(self._enqueue, item)

    def _enqueue(self, item: tuple[str, str, bytes]) -> None:
        assert self._queue is not None
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            log.warning(
                "event dropped: queue full",
                extra={"event": item[0], "event_id": item[1], "queue_size": self.queue_size},
            )

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            item = await self._queue.get()
            try:
                await self._deliver(*item)
            except Exception:
                log.exception("event delivery failed", extra={"event": item[0]})

    async def _deliver(self, event_type: str, event_id: str, body: bytes) -> None:
        headers = {
            "Content-Type": "application/json",
            "X-Chimeproxy-Event": event_type,
            "X-Chimeproxy-Event-Id": event_id,
        }
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        problem = ""
        for attempt in range(self.max_attempts):
            if attempt:
                await asyncio.sleep(self.first_delay * 2 ** (attempt - 1))
            try:
                status = await post(self.url, body, headers, self.timeout)
            except HttpError as exc:
                problem = str(exc)
                continue
            if 200 <= status < 300:
                return
            problem = f"status {status}"
            # The receiver refused this event for good; retrying would not change its mind.
            if 400 <= status < 500 and status not in (408, 425, 429):
                break
        log.warning(
            "event not delivered",
            extra={"event": event_type, "event_id": event_id, "problem": problem},
        )


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


# The bus of each running app, found from the Services its handlers share.
_buses: dict[int, EventBus] = {}
_buses_lock = threading.Lock()


def attach(services: Services, bus: EventBus) -> None:
    with _buses_lock:
        _buses[id(services)] = bus


def detach(services: Services) -> None:
    with _buses_lock:
        _buses.pop(id(services), None)


def enabled(services: Services) -> bool:
    return id(services) in _buses


def publish(
    services: Services,
    event_type: str,
    data: dict[str, Any],
    *,
    account: str | None = None,
    region: str | None = None,
) -> None:
    """Emit an event when event webhooks are configured; otherwise nothing."""
    bus = _buses.get(id(services))
    if bus is not None:
        bus.emit(event_type, data, time_ms=services.clock.now_ms(), account=account, region=region)


def with_iso_timestamps(shape: dict[str, Any]) -> dict[str, Any]:
    """An API shape with its `...Timestamp` members as the API writes them."""
    return {
        key: format_timestamp(value) if key.endswith("Timestamp") and value is not None else value
        for key, value in shape.items()
    }


def session_event(context: Context, change: str, session: dict[str, Any]) -> dict[str, Any]:
    """Hook of the proxy-session operations: `change` is created, updated or deleted; an update
    that closed the session is announced as closed too. Answers `session` unchanged."""
    if not enabled(context.services):
        return session
    data = with_iso_timestamps(session)
    where = {"account": context.account, "region": context.region}
    publish(context.services, f"session.{change}", data, **where)
    if change == "updated" and session.get("Status") == "Closed":
        publish(context.services, SESSION_CLOSED, data, **where)
    return session


def expiring_sessions(services: Services, connection: Connection, now: int) -> list[Any]:
    """For the sweeper, before it closes expired sessions: those it is about to close, as
    events to publish once its transaction commits (none when events are off)."""
    if not enabled(services):
        return []
    from chimeproxy.operations.proxy import session_shape
    from chimeproxy.store import interactions

    return [
        (
            with_iso_timestamps(session_shape(row, row["connector_id"], now)),
            row["connector_account"],
            row["connector_region"],
        )
        for row in interactions.expiring_sessions(connection, now)
    ]


def announce_closed(services: Services, closed: list[Any]) -> None:
    for data, account, region in closed:
        publish(services, SESSION_CLOSED, data, account=account, region=region)
