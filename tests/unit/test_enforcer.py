"""The session enforcer's pass over the edge's calls (Kamailio and the routing service faked)."""

from __future__ import annotations

from typing import Any

from chimeproxy.dataplane.edge.enforcer import SessionEnforcer


class FakeRpc:
    def __init__(self, dialogs: list[dict[str, Any]]) -> None:
        self.listed = dialogs
        self.ended: list[tuple[int, int]] = []

    def dialogs(self) -> list[dict[str, Any]]:
        return self.listed

    def end_dialog(self, h_entry: int, h_id: int) -> None:
        self.ended.append((h_entry, h_id))


def dialog(interaction_id: str, state: int, h_id: int) -> dict[str, Any]:
    return {"h_entry": 1, "h_id": h_id, "state": state, "variables": {"iid": interaction_id}}


def enforcer_ending_all(rpc: FakeRpc) -> tuple[SessionEnforcer, list[list[str]]]:
    """An enforcer whose routing service says every call it is asked about must end."""
    enforcer = SessionEnforcer(rpc, "http://127.0.0.1:1", None)  # type: ignore[arg-type]
    asked: list[list[str]] = []

    def ask(ids: list[str]) -> list[dict[str, str]]:
        asked.append(ids)
        return [{"interaction_id": i, "reason": "gone"} for i in ids]

    enforcer._ask = ask  # type: ignore[method-assign]
    return enforcer, asked


def test_only_answered_calls_are_ended() -> None:
    """Kamailio can send BYE only in an answered dialog (states 3 and 4): a ringing call is left
    for a later pass, never counted as ended."""
    rpc = FakeRpc(
        [dialog("ringing", 2, 10), dialog("answered", 4, 11), dialog("no-ack-yet", 3, 12)]
    )
    enforcer, asked = enforcer_ending_all(rpc)
    assert enforcer.check_once() == 2
    assert asked == [["answered", "no-ack-yet"]]
    assert rpc.ended == [(1, 11), (1, 12)]
    assert enforcer.ended == 2


def test_a_ringing_call_is_ended_once_answered() -> None:
    rpc = FakeRpc([dialog("call", 1, 20)])
    enforcer, _ = enforcer_ending_all(rpc)
    assert enforcer.check_once() == 0
    rpc.listed = [dialog("call", 4, 20)]
    assert enforcer.check_once() == 1
    assert rpc.ended == [(1, 20)]


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
