"""Kamailio's JSON-RPC (jsonrpcs over xhttp, on the edge's loopback RPC port): calls in
progress, counters and gateway states, and ending a call, answered or ringing."""

from __future__ import annotations

import itertools
import json
import urllib.error
import urllib.request
from typing import Any

TIMEOUT_SECONDS = 3.0


class RpcError(Exception):
    """Kamailio did not answer, or answered with an error."""


class KamailioRpc:
    def __init__(self, url: str, timeout: float = TIMEOUT_SECONDS) -> None:
        self.url = url
        self.timeout = timeout
        self._ids = itertools.count(1)

    def call(self, method: str, *params: Any) -> Any:
        request = {"jsonrpc": "2.0", "method": method, "id": next(self._ids)}
        if params:
            request["params"] = list(params)
        http = urllib.request.Request(
            self.url,
            data=json.dumps(request).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(http, timeout=self.timeout) as answer:
                document = json.loads(answer.read() or b"{}")
        except (OSError, urllib.error.URLError, ValueError) as exc:
            raise RpcError(f"{method}: {exc}") from exc
        if "error" in document:
            raise RpcError(f"{method}: {document['error'].get('message', document['error'])}")
        return document.get("result")

    def statistics(self, group: str) -> dict[str, int]:
        """Counters of a group (`script`, `dialog`, ...) by name, without the group prefix."""
        found: dict[str, int] = {}
        for entry in self.call("stats.get_statistics", f"{group}:") or []:
            name, _, value = str(entry).partition(" = ")
            found[name.split(":", 1)[-1].strip()] = int(value.strip() or 0)
        return found

    def dialogs(self) -> list[dict[str, Any]]:
        """Calls in progress: each with `h_entry`, `h_id`, `state` and its variables merged
        into one dict under `variables`."""
        listed = self.call("dlg.list") or []
        if isinstance(listed, dict):
            listed = [listed]
        for dialog in listed:
            merged: dict[str, Any] = {}
            for item in dialog.get("variables") or []:
                if isinstance(item, dict):
                    merged.update(item)
            dialog["variables"] = merged
        return listed

    def end_dialog(self, h_entry: int, h_id: int) -> None:
        """BYE to both sides of a call."""
        self.call("dlg.end_dlg", h_entry, h_id)

    def cancel_call(self, call_id: str, cseq: str) -> None:
        """CANCEL to the callee of a call still ringing (its INVITE is the transaction of that
        Call-ID and CSeq number), whose 487 then reaches the caller. The call is marked first,
        so that its failure route records it `cancelled`, as when the caller hangs up (tm's RPC
        cancel does not set the flag a caller's CANCEL does); the mark goes when no such
        transaction is left to cancel."""
        key = f"{call_id}:{cseq}"
        self.call("htable.seti", "session_ended", key, 1)
        try:
            self.call("tm.cancel", call_id, cseq)
        except RpcError:
            self.call("htable.delete", "session_ended", key)
            raise

    def gateways(self, group: int = 1) -> list[dict[str, Any]]:
        """The dispatcher's destinations of a set: `uri`, `flags` (A active / I inactive;
        P probing)."""
        answer = self.call("dispatcher.list") or {}
        found = []
        for record in answer.get("RECORDS", []):
            if record.get("SET", {}).get("ID") != group:
                continue
            for target in record.get("SET", {}).get("TARGETS", []):
                destination = target.get("DEST", {})
                found.append({"uri": destination.get("URI"), "flags": destination.get("FLAGS", "")})
        return found
