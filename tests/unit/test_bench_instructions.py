"""bench/instructions.py's pure parts: reading a callgrind dump's count, the table, the
arguments. The tool itself runs end to end in CI's benchmark smoke test (.ci/run)."""

from __future__ import annotations

import pytest

from bench.instructions import FRESH_EACH_TIME, callgrind_total, format_table, parse_args
from bench.run import SCENARIOS

DUMP = """# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 4242
cmd:  python -m chimeproxy.cli serve
part: 1

desc: Trigger: Client Request: dump

events: Ir
summary: 135539829

fn=(1) main
0 12
totals: 135539829
"""


def test_the_count_is_the_dumps_total() -> None:
    assert callgrind_total(DUMP) == 135_539_829
    assert callgrind_total("events: Ir\ntotals: 42\n") == 42


def test_a_dump_without_a_total_is_refused() -> None:
    with pytest.raises(ValueError, match="no totals"):
        callgrind_total("events: Ir\nfn=(1) main\n0 12\n")


def test_the_table_shows_each_count_and_its_ratio_to_the_baseline() -> None:
    table = format_table(
        {
            "sessions": 10_000,
            "requests": 200,
            "baseline": 134_500,
            "operations": {
                "get": {"instructions": 672_500, "x_baseline": 0.2, "dump": "c.1"},
                "route": {"instructions": 838_066, "x_baseline": 0.16, "dump": "c.2"},
            },
        }
    )
    lines = table.splitlines()
    assert lines[2].split()[-2:] == ["134,500", "1.000"]
    assert lines[3].startswith("GetProxySession") and lines[3].split()[-2:] == ["672,500", "0.200"]
    assert lines[4].startswith("POST /_chimeproxy/route")
    assert lines[4].split()[-2:] == ["838,066", "0.160"]
    assert "10,000 sessions; 200 requests" in lines[-1]


def test_only_known_scenarios_are_taken(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_args(["--scenarios", "get,route"]).scenarios == {"get", "route"}
    with pytest.raises(SystemExit):
        parse_args(["--scenarios", "get,teleport"])
    assert "unknown scenarios: teleport" in capsys.readouterr().err


def test_the_scenarios_that_need_fresh_requests_exist() -> None:
    # Every other scenario replays its requests, as wrk does; a create must be of a new pair.
    assert {scenario.key for scenario in SCENARIOS} >= FRESH_EACH_TIME
