"""The overview's small chart: sessions created and pool-exhaustion refusals per hour, drawn as
inline SVG bars by the template from the numbers computed here. Pure."""

from __future__ import annotations

from dataclasses import dataclass

HOUR_MS = 3_600_000
HOURS = 24
WIDTH = 240  # the SVG's viewBox; it scales to its box
HEIGHT = 48


def window_start(now: int, hours: int = HOURS) -> int:
    """The start of the oldest hourly bucket: buckets end with the hour that holds `now`."""
    return (now // HOUR_MS - hours + 1) * HOUR_MS


def bucket_of(start: int, at: int) -> int:
    return (at - start) // HOUR_MS


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    width: float
    created: int
    refused: int
    created_height: float
    refused_height: float
    label: str  # "14:00 UTC: 12 created, 1 refused", for screen readers and tooltips


@dataclass(frozen=True, slots=True)
class Chart:
    bars: list[Bar]
    peak: int
    created: int
    refused: int
    width: int = WIDTH
    height: int = HEIGHT


def hourly(
    created: dict[int, int], refused: dict[int, int], start: int, hours: int = HOURS
) -> Chart:
    """Bars for `hours` buckets from `start`; `created` and `refused` count per bucket index."""
    peak = max([1, *created.values(), *refused.values()])
    slot = WIDTH / hours
    bars = []
    for index in range(hours):
        made, refusals = created.get(index, 0), refused.get(index, 0)
        hour = (start // HOUR_MS + index) % 24
        bars.append(
            Bar(
                x=round(index * slot, 2),
                width=round(slot * 0.8, 2),
                created=made,
                refused=refusals,
                created_height=round(HEIGHT * made / peak, 2),
                refused_height=round(HEIGHT * refusals / peak, 2),
                label=f"{hour:02d}:00 UTC: {made} created, {refusals} refused",
            )
        )
    return Chart(bars, peak, sum(created.values()), sum(refused.values()))
