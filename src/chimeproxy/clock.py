"""The service clock: real time, moved forward only through test mode's clock control."""

from __future__ import annotations

import time


class Clock:
    """Milliseconds since the epoch, plus an offset that `--clock-control` may advance."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.offset_ms += round(seconds * 1000)
