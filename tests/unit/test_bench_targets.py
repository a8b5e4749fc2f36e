"""bench/run.py's verdict on issue #17's targets (`targets`): the line each row is held to,
met or not, and what is not measured."""

from __future__ import annotations

from typing import Any

from bench.run import targets


def _row(key: str, dataset: str, ratio: float, rps: float = 10_000.0, **extra: Any) -> dict:
    return {
        "key": key,
        "dataset": dataset,
        "ratio": ratio,
        "rps": rps,
        "errors": 0,
        "p99_ratio": 2.0,
        **extra,
    }


def _passing_rows() -> list[dict]:
    return [
        _row("get", "1M", 0.30, rps=9_000.0),
        _row("get", "10k", 0.33, rps=10_000.0),
        _row("route", "1M", 0.20),
        _row("update", "1M", 0.08),
        _row("list", "1M", 0.04),
        _row("create", "1M", 0.03),
    ]


MEMORY = {"1M": {"peak_rss_mib": 143.0}}


def test_rows_exactly_on_their_lines_meet_every_target() -> None:
    results = targets(_passing_rows(), MEMORY, "1M", "10k")
    assert {key: result["met"] for key, result in results.items()} == dict.fromkeys(results, True)
    assert results["get_scaling"]["value"] == 0.9


def test_a_ratio_a_thousandth_under_its_line_is_not_met() -> None:
    rows = _passing_rows()
    rows[0]["ratio"] = 0.299
    results = targets(rows, MEMORY, "1M", "10k")
    assert results["get_ratio"]["met"] is False
    assert results["route_ratio"]["met"] is True


def test_the_memory_line_is_150_megabytes_not_mebibytes() -> None:
    """143.1 MiB is 150 MB: 145 MiB would pass a 150 MiB line and is over the issue's."""
    assert targets(_passing_rows(), {"1M": {"peak_rss_mib": 143.0}}, "1M", "10k")["rss"]["met"]
    over = targets(_passing_rows(), {"1M": {"peak_rss_mib": 145.0}}, "1M", "10k")
    assert over["rss"]["met"] is False


def test_errors_p99_and_scaling_each_fail_on_their_own() -> None:
    rows = _passing_rows()
    rows[2]["errors"] = 1
    rows[0]["p99_ratio"] = 3.01
    rows[0]["rps"] = 7_900.0  # against 10,000 at 10k: 0.79
    results = targets(rows, MEMORY, "1M", "10k")
    assert (results["errors"]["met"], results["get_p99"]["met"], results["get_scaling"]["met"]) == (
        False,
        False,
        False,
    )


def test_what_was_not_measured_is_neither_met_nor_missed() -> None:
    results = targets([_row("get", "10k", 0.4)], {}, "1M", "10k")
    assert results["get_ratio"]["met"] is None
    assert results["rss"]["met"] is None
    assert results["get_scaling"]["met"] is None
