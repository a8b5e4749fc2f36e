"""The session enforcer's pass over the edge's calls (Kamailio and the routing service faked)."""

from __future__ import annotations

from typing import Any

from chimeproxy.dataplane.edge.enforcer import SessionEnforcer
from chimeproxy.dataplane.edge.rpc import RpcError


class FakeRpc:
    def __init__(self, dialogs: list[dict[str, Any]]) -> None:
        self.listed = dialogs
        self.ended: list[tuple[int, int]] = []
        self.cancelled: list[tuple[str, str]] = []
        self.gone: set[str] = set()  # Call-IDs whose INVITE transaction no longer exists

    def dialogs(self) -> list[dict[str, Any]]:
        return self.listed

    def end_dialog(self, h_entry: int, h_id: int) -> None:
        self.ended.append((h_entry, h_id))

    def cancel_call(self, call_id: str, cseq: str) -> None:
        if call_id in self.gone:
            raise RpcError("tm.cancel: Transaction not found")
        self.cancelled.append((call_id, cseq))


def dialog(interaction_id: str, state: int, h_id: int) -> dict[str, Any]:
    """As Kamailio's dlg.list shows a call (the Call-ID and the caller's CSeq are its INVITE's)."""
    return {
        "h_entry": 1,
        "h_id": h_id,
        "state": state,
        "call-id": f"cid-{interaction_id}",
        "caller": {"cseq": "8"},  # moved on with a PRACK: not the INVITE's
        "variables": {"iid": interaction_id, "cseq": "7"},
    }


def enforcer_ending_all(rpc: FakeRpc) -> tuple[SessionEnforcer, list[list[str]]]:
    """An enforcer whose routing service says every call it is asked about must end."""
    enforcer = SessionEnforcer(rpc, "http://127.0.0.1:1", None)  # type: ignore[arg-type]
    asked: list[list[str]] = []

    def ask(ids: list[str]) -> list[dict[str, str]]:
        asked.append(ids)
        return [{"interaction_id": i, "reason": "gone"} for i in ids]

    enforcer._ask = ask  # type: ignore[method-assign]
    return enforcer, asked


def test_answered_calls_get_byes_and_ringing_ones_a_cancel() -> None:
    """Kamailio sends BYE only in an answered dialog (states 3 and 4); a call not answered yet
    (1: no reply, 2: ringing) is cancelled by its INVITE's Call-ID and CSeq (kept in a dialog
    variable when routed) instead of being left to ring until answered and then hung up."""
    rpc = FakeRpc(
        [
            dialog("ringing", 2, 10),
            dialog("answered", 4, 11),
            dialog("no-ack-yet", 3, 12),
            dialog("no-reply", 1, 13),
        ]
    )
    enforcer, asked = enforcer_ending_all(rpc)
    assert enforcer.check_once() == 4
    assert asked == [["answered", "no-ack-yet", "ringing", "no-reply"]]
    assert rpc.ended == [(1, 11), (1, 12)]
    assert rpc.cancelled == [("cid-ringing", "7"), ("cid-no-reply", "7")]
    assert enforcer.ended == 4


def test_a_call_answered_as_it_was_cancelled_gets_byes_and_is_counted_once() -> None:
    """The CANCEL crossed the 200: the call is answered on the next pass, and ended then."""
    rpc = FakeRpc([dialog("call", 2, 20)])
    enforcer, _ = enforcer_ending_all(rpc)
    assert enforcer.check_once() == 1
    rpc.listed = [dialog("call", 4, 20)]
    assert enforcer.check_once() == 0
    assert rpc.cancelled == [("cid-call", "7")] and rpc.ended == [(1, 20)]
    assert enforcer.ended == 1


def test_a_ringing_call_gone_before_its_cancel_is_not_counted() -> None:
    rpc = FakeRpc([dialog("call", 2, 21)])
    rpc.gone.add("cid-call")
    enforcer, _ = enforcer_ending_all(rpc)
    assert enforcer.check_once() == 0
    assert enforcer.ended == 0


def test_a_ringing_call_without_its_invites_cseq_is_not_asked_about() -> None:
    """Routed before the edge kept the INVITE's CSeq: it is ended once answered, as before."""
    shown = dialog("call", 2, 22)
    del shown["variables"]["cseq"]
    rpc = FakeRpc([shown])
    enforcer, asked = enforcer_ending_all(rpc)
    assert enforcer.check_once() == 0
    assert asked == []


def test_calls_without_an_interaction_are_not_asked_about() -> None:
    rpc = FakeRpc([{"h_entry": 1, "h_id": 30, "state": 4, "variables": {}}])
    enforcer, asked = enforcer_ending_all(rpc)
    assert enforcer.check_once() == 0
    assert asked == []


def test_a_call_told_to_end_is_counted_once() -> None:
    """A call still listed while its BYEs complete is told again (a lost BYE is sent anew) but
    counted and logged once; once gone from the list it is forgotten."""
    rpc = FakeRpc([dialog("call", 4, 40)])
    enforcer, _ = enforcer_ending_all(rpc)
    assert enforcer.check_once() == 1
    assert enforcer.check_once() == 0
    assert rpc.ended == [(1, 40), (1, 40)]
    assert enforcer.ended == 1
    rpc.listed = []
    enforcer.check_once()
    assert enforcer._ending == set()
