"""Events: what happened to sessions and interactions, for whoever listens.

Producers (the proxy-session operations, the data plane, the sweeper) publish through the
`EventSink` their `Services` was given: `NullSink` when nobody listens, `WebhookSink` to POST
events to `--events-url`.

Publishing never blocks the caller (a request handler, the sweeper's thread): an event is encoded
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
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from chimeproxy.domain.lifecycle import SessionStatus
from chimeproxy.httpclient import HttpError, post
from chimeproxy.protocol.serializer import format_timestamp
from chimeproxy.shapes import with_iso_timestamps
from chimeproxy.uuids import random_uuid

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


def announce_session(
    sink: EventSink, event_type: str, session: dict[str, Any], *, account: str, region: str
) -> None:
    """Publish a change of a session (its API shape): an update that closed it is announced as
    `session.closed` too. The API and the console both announce through here."""
    if not sink.enabled:
        return
    data = with_iso_timestamps(session)
    sink.publish(event_type, data, account=account, region=region)
    if event_type == SESSION_UPDATED and session["Status"] == SessionStatus.CLOSED:
        sink.publish(SESSION_CLOSED, data, account=account, region=region)


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: `sha256=` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class EventSink(Protocol):
    """Where producers publish events."""

    @property
    def enabled(self) -> bool:
        """False when events go nowhere: producers may skip building them."""

    def publish(
        self,
        event_type: str,
        data: dict[str, Any],
        *,
        account: str | None = None,
        region: str | None = None,
    ) -> None:
        """Hand over one event; never waits, safe from any thread."""


class NullSink:
    """Events go nowhere (no `--events-url`)."""

    enabled = False

    def publish(
        self,
        event_type: str,
        data: dict[str, Any],
        *,
        account: str | None = None,
        region: str | None = None,
    ) -> None:
        return None


class WebhookSink:
    """A bounded queue of encoded events and the task that delivers them to a URL."""

    enabled = True

    def __init__(
        self,
        url: str,
        secret: str | None,
        queue_size: int,
        *,
        now_ms: Callable[[], int],
        max_attempts: int = MAX_ATTEMPTS,
        first_delay: float = FIRST_RETRY_DELAY_SECONDS,
        timeout: float = ATTEMPT_TIMEOUT_SECONDS,
    ) -> None:
        self.url = url
        self.secret = secret
        self.now_ms = now_ms
        self.queue_size = queue_size
        self.max_attempts = max_attempts
        self.first_delay = first_delay
        self.timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[str, str, bytes]] | None = None
        self._task: asyncio.Task[None] | None = None

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

    def publish(
        self,
        event_type: str,
        data: dict[str, Any],
        *,
        account: str | None = None,
        region: str | None = None,
    ) -> None:
        """Queue an event; safe from any thread, never waits."""
        event_id = random_uuid()
        body = orjson.dumps(
            {
                "id": event_id,
                "type": event_type,
                "time": format_timestamp(self.now_ms()),
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
