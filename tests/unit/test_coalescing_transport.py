"""connections.CoalescingTransport: a response's writes leave as one, none is lost or
reordered, and nothing is held back past the loop's turn or the connection's end; and
connections.TurnWrites: one callback a turn sends every transport's bytes, and the answers
finished in one turn leave together, at its end or once the first has waited long enough."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from chimeproxy.connections import CoalescingTransport, TurnWrites, turn_writes


class Recording:
    """A transport that records what it is asked to do."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.events: list[str] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self.events.append("write")

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True
        self.events.append("close")

    def abort(self) -> None:
        self.closing = True
        self.events.append("abort")

    def write_eof(self) -> None:
        self.events.append("eof")

    def get_write_buffer_size(self) -> int:
        return 7

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.2", 5060) if name == "peername" else None


def run(test: Any) -> None:
    asyncio.run(test())


def test_the_writes_of_one_turn_leave_as_one_write_in_order() -> None:
    async def test() -> None:
        raw = Recording()
        transport = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        transport.write(b"{}")
        assert raw.writes == []  # held for the rest of this turn
        await asyncio.sleep(0)
        assert raw.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
        transport.write(b"next")  # a later turn's writes are a write of their own
        await asyncio.sleep(0)
        assert raw.writes[1:] == [b"next"]

    run(test)


def test_the_answers_of_one_turn_leave_at_its_end_in_the_order_they_began() -> None:
    async def test() -> None:
        loop = asyncio.get_running_loop()
        order: list[bytes] = []
        raws = [Recording(), Recording(), Recording()]
        for raw in raws:
            raw.write = order.append  # type: ignore[method-assign]
        first, second, third = (CoalescingTransport(raw, loop) for raw in raws)  # type: ignore[arg-type]
        second.write(b"second")
        first.write(b"first")
        third.write(b"third")
        first.write(b" again")
        assert order == []  # none leaves before the turn's end
        await asyncio.sleep(0)
        assert order == [b"second", b"first again", b"third"]

    run(test)


def test_flush_sends_at_once_and_the_scheduled_flush_then_finds_nothing() -> None:
    async def test() -> None:
        raw = Recording()
        transport = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"head")
        transport.write(b"body")
        transport.flush()  # what the protocol does when a response completes alone
        assert raw.writes == [b"headbody"]
        await asyncio.sleep(0)
        assert raw.writes == [b"headbody"]

    run(test)


def test_close_sends_what_is_held_first_and_abort_drops_it() -> None:
    async def test() -> None:
        raw = Recording()
        transport = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.writelines([b"a", b"b"])
        transport.close()
        assert raw.events == ["write", "close"] and raw.writes == [b"ab"]
        await asyncio.sleep(0)  # the scheduled flush writes nothing to a closing transport
        assert raw.writes == [b"ab"]

        aborted = Recording()
        transport = CoalescingTransport(aborted, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"lost with the connection")
        transport.abort()
        await asyncio.sleep(0)
        assert aborted.events == ["abort"]

    run(test)


def test_write_eof_sends_what_is_held_first() -> None:
    async def test() -> None:
        raw = Recording()
        transport = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"last")
        transport.write_eof()
        assert raw.events == ["write", "eof"]

    run(test)


def test_everything_else_is_the_transports() -> None:
    async def test() -> None:
        raw = Recording()
        transport = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
        assert transport.get_extra_info("peername") == ("127.0.0.2", 5060)
        transport.write(b"12345")
        assert transport.get_write_buffer_size() == 7 + 5
        assert not transport.is_closing()
        transport.flush()

    run(test)


def test_answers_held_in_one_turn_leave_at_its_end_in_the_order_finished() -> None:
    async def test() -> None:
        loop = asyncio.get_running_loop()
        order: list[bytes] = []
        raws = [Recording(), Recording()]
        for raw in raws:
            raw.write = order.append  # type: ignore[method-assign]
        turn = TurnWrites(loop, max_hold_s=60)
        first, second = (CoalescingTransport(raw, loop, turn) for raw in raws)  # type: ignore[arg-type]
        for transport, answer in ((first, b"first"), (second, b"second")):
            transport.write(answer)  # as the protocol does: the answer, then it is finished
            transport.hold()
        assert order == []
        await asyncio.sleep(0)
        assert order == [b"first", b"second"]

    run(test)


def test_the_answer_finished_after_the_longest_hold_sends_every_held_one() -> None:
    async def test() -> None:
        loop = asyncio.get_running_loop()
        raws = [Recording(), Recording(), Recording()]
        turn = TurnWrites(loop, max_hold_s=0.05)
        first, second, third = (CoalescingTransport(raw, loop, turn) for raw in raws)  # type: ignore[arg-type]
        for transport, answer in ((first, b"1"), (second, b"2"), (third, b"3")):
            transport.write(answer)
        first.hold()
        second.hold()
        assert [raw.writes for raw in raws] == [[], [], []]
        time.sleep(0.06)  # the turn ran long: the first answer has waited its longest
        third.hold()
        assert [raw.writes for raw in raws] == [[b"1"], [b"2"], [b"3"]]
        await asyncio.sleep(0)  # the turn's end finds nothing more to send
        assert [raw.writes for raw in raws] == [[b"1"], [b"2"], [b"3"]]
        first.write(b"next turn")  # written again after the batch left: sent at this turn's end
        first.hold()
        await asyncio.sleep(0)
        assert raws[0].writes == [b"1", b"next turn"]

    run(test)


def test_one_callback_a_turn_sends_every_transport() -> None:
    async def test() -> None:
        loop = asyncio.get_running_loop()
        scheduled: list[Any] = []
        real_call_soon = loop.call_soon

        def counting_call_soon(callback: Any, *args: Any, **kwargs: Any) -> Any:
            scheduled.append(callback)
            return real_call_soon(callback, *args, **kwargs)

        loop.call_soon = counting_call_soon  # type: ignore[method-assign]
        try:
            turn = TurnWrites(loop)
            raws = [Recording() for _ in range(20)]
            for raw in raws:
                transport = CoalescingTransport(raw, loop, turn)  # type: ignore[arg-type]
                transport.write(b"head")
                transport.write(b"body")
            assert len(scheduled) == 1
            await asyncio.sleep(0)
            assert all(raw.writes == [b"headbody"] for raw in raws)
        finally:
            loop.call_soon = real_call_soon  # type: ignore[method-assign]

    run(test)


def test_each_loop_has_its_own_turn_writes() -> None:
    """A batch left waiting on a loop that closed does not hold back another loop's writes."""
    first_loop = asyncio.new_event_loop()
    stranded = Recording()
    CoalescingTransport(stranded, first_loop).write(b"never sent: its loop never ran")  # type: ignore[arg-type]
    first_loop.close()

    async def test() -> None:
        loop = asyncio.get_running_loop()
        assert turn_writes(loop) is turn_writes(loop)
        assert turn_writes(loop) is not turn_writes(first_loop)
        raw = Recording()
        CoalescingTransport(raw, loop).write(b"sent")  # type: ignore[arg-type]
        await asyncio.sleep(0)
        assert raw.writes == [b"sent"]

    run(test)
