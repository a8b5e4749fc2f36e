"""Calls end when their session does. Every second the edge lists its calls in progress
(Kamailio's dialogs, each with its interaction id), asks the routing service which must end
(`POST /_chimeproxy/calls/check`: the session closed, expired or was deleted, or the call is
longer than the maximum call length), and ends those with a BYE to both sides. It holds across
restarts of either side: the dialogs are in SQLite, the sessions in the server's database. The
dialog timeout each call gets when routed ends it at the session's expiry even while the
routing service cannot be reached."""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request

from chimeproxy.dataplane.edge.rpc import KamailioRpc, RpcError
from chimeproxy.dataplane.edge.settings import service_headers

log = logging.getLogger("chimeproxy.sip_edge.calls")

INTERVAL_SECONDS = 1.0
BATCH = 1000
TIMEOUT_SECONDS = 5.0
# Kamailio's dialog states: 3 confirmed without ACK yet, 4 confirmed (1, 2: not answered yet;
# 5: ended).
ANSWERED_STATES = (3, 4)


class SessionEnforcer:
    def __init__(self, rpc: KamailioRpc, service_url: str, route_secret: str | None) -> None:
        self.rpc = rpc
        self.url = f"{service_url}/_chimeproxy/calls/check"
        self.headers = service_headers(route_secret)
        self.ended = 0
        # Calls told to end and still listed (their BYE transactions take a moment): they are
        # told again on the next pass, should the first BYE have been lost, but counted once.
        self._ending: set[str] = set()
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.wait(INTERVAL_SECONDS):
            try:
                self.check_once()
            except (RpcError, OSError, ValueError) as exc:
                log.debug("calls not checked this time", extra={"problem": str(exc)})
            except Exception:  # never let one bad answer stop calls from ending with sessions
                log.exception("calls not checked this time")

    def stop(self) -> None:
        self._stopping.set()

    def check_once(self) -> int:
        """One pass; answers how many calls it ended."""
        calls: dict[str, tuple[int, int]] = {}
        for dialog in self.rpc.dialogs():
            interaction_id = dialog["variables"].get("iid")
            # Kamailio can BYE only an answered call: one still ringing is checked again once
            # answered (at most INTERVAL_SECONDS later) and ended then.
            if dialog.get("state") not in ANSWERED_STATES:
                continue
            if interaction_id and dialog.get("h_entry") is not None:
                calls[str(interaction_id)] = (int(dialog["h_entry"]), int(dialog["h_id"]))
        ids = list(calls)
        self._ending &= calls.keys()
        ended = 0
        for start in range(0, len(ids), BATCH):
            for item in self._ask(ids[start : start + BATCH]):
                interaction_id = item.get("interaction_id")
                if interaction_id not in calls:
                    continue
                try:
                    self.rpc.end_dialog(*calls[interaction_id])
                except RpcError as exc:  # it ended meanwhile
                    log.debug("call already gone", extra={"problem": str(exc)})
                    continue
                if interaction_id in self._ending:
                    continue
                self._ending.add(interaction_id)
                ended += 1
                log.info(
                    "call ended",
                    extra={"interaction_id": interaction_id, "reason": item.get("reason")},
                )
        self.ended += ended
        return ended

    def _ask(self, ids: list[str]) -> list[dict[str, str]]:
        request = urllib.request.Request(
            self.url,
            data=json.dumps({"interaction_ids": ids}).encode(),
            headers=self.headers,
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as answer:
            return list(json.loads(answer.read()).get("end", []))
