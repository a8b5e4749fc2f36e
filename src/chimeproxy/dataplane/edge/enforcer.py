"""Calls end when their session does. Every second the edge lists its calls in progress
(Kamailio's dialogs, each with its interaction id), asks the routing service which must end
(`POST /_chimeproxy/calls/check`: the session closed, expired or was deleted, or the call is
longer than the maximum call length), and ends those: an answered call with a BYE to both
sides, one still ringing with a CANCEL to the callee (the caller gets its 487). It holds across
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
# Kamailio's dialog states: 1 no reply yet, 2 ringing (a provisional reply), 3 confirmed without
# ACK yet, 4 confirmed; 5 ended.
RINGING_STATES = (1, 2)
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
        answered: dict[str, tuple[int, int]] = {}  # interaction id: the dialog's (entry, id)
        ringing: dict[str, tuple[str, str]] = {}  # interaction id: its INVITE's (Call-ID, CSeq)
        for dialog in self.rpc.dialogs():
            interaction_id = dialog["variables"].get("iid")
            if not interaction_id:
                continue
            state = dialog.get("state")
            if state in ANSWERED_STATES and dialog.get("h_entry") is not None:
                answered[str(interaction_id)] = (int(dialog["h_entry"]), int(dialog["h_id"]))
            elif state in RINGING_STATES and dialog.get("call-id"):
                # The INVITE's CSeq, kept when routed: the caller's in the dialog moves on with
                # a PRACK.
                cseq = dialog["variables"].get("cseq")
                if cseq:
                    ringing[str(interaction_id)] = (str(dialog["call-id"]), str(cseq))
        ids = [*answered, *ringing]
        self._ending &= set(ids)
        ended = 0
        for start in range(0, len(ids), BATCH):
            for item in self._ask(ids[start : start + BATCH]):
                interaction_id = item.get("interaction_id")
                try:
                    if interaction_id in answered:
                        self.rpc.end_dialog(*answered[interaction_id])
                    elif interaction_id in ringing:
                        # Answered meanwhile, the CANCEL does nothing: the next pass sends BYEs.
                        self.rpc.cancel_call(*ringing[interaction_id])
                    else:
                        continue
                except RpcError as exc:  # it ended meanwhile
                    log.debug("call already gone", extra={"problem": str(exc)})
                    continue
                if interaction_id in self._ending:
                    continue
                self._ending.add(interaction_id)
                ended += 1
                log.info(
                    "call ended",
                    extra={
                        "interaction_id": interaction_id,
                        "reason": item.get("reason"),
                        "ringing": interaction_id in ringing,
                    },
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
