"""The edge's Kamailio RPC client: cancelling a ringing call marks it for its failure route and
takes the mark back when there is no such call to cancel (Kamailio faked at `call`)."""

from __future__ import annotations

from typing import Any

import pytest

from chimeproxy.dataplane.edge.rpc import KamailioRpc, RpcError


class Recording(KamailioRpc):
    def __init__(self, gone: bool) -> None:
        super().__init__("http://127.0.0.1:1/RPC")
        self.calls: list[tuple[Any, ...]] = []
        self.gone = gone

    def call(self, method: str, *params: Any) -> Any:
        self.calls.append((method, *params))
        if method == "tm.cancel" and self.gone:
            raise RpcError("tm.cancel: Transaction not found")
        return None


def test_a_cancel_is_marked_first_for_the_failure_route() -> None:
    rpc = Recording(gone=False)
    rpc.cancel_call("abc@host", "7")
    assert rpc.calls == [
        ("htable.seti", "session_ended", "abc@host:7", 1),
        ("tm.cancel", "abc@host", "7"),
    ]


def test_the_mark_goes_when_there_was_nothing_to_cancel() -> None:
    """Answered meanwhile, or gone: the mark must not make a later failure of that Call-ID and
    CSeq read as cancelled."""
    rpc = Recording(gone=True)
    with pytest.raises(RpcError):
        rpc.cancel_call("abc@host", "7")
    assert rpc.calls[-1] == ("htable.delete", "session_ended", "abc@host:7")
