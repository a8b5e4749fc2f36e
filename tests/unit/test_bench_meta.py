"""bench/run.py's description of the CPU in a results file's `meta`: the ratios depend on the
CPU, so a results file says which one it was measured on."""

from __future__ import annotations

from pathlib import Path

from bench.run import cpu_description

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
cache size\t: 55296 KB

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
"""


def _caches(root: Path, entries: list[tuple[str, str, str]]) -> Path:
    for number, (level, kind, size) in enumerate(entries):
        index = root / f"index{number}"
        index.mkdir(parents=True)
        (index / "level").write_text(f"{level}\n")
        (index / "type").write_text(f"{kind}\n")
        (index / "size").write_text(f"{size}\n")
    return root


def test_the_model_and_every_cache_level_are_named(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO)
    caches = _caches(
        tmp_path / "cache",
        [("1", "Data", "48K"), ("1", "Instruction", "32K"), ("2", "Unified", "1280K"),
         ("3", "Unified", "55296K")],
    )  # fmt: skip
    assert cpu_description(cpuinfo, caches) == (
        "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz (L1d 48K, L1i 32K, L2 1280K, L3 55296K)"
    )


def test_what_the_machine_does_not_tell_is_left_out(tmp_path: Path) -> None:
    """No model line (some ARM kernels), no cache directory (some containers): the results
    file is still written."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nBogoMIPS\t: 50.00\n")
    assert cpu_description(cpuinfo, tmp_path / "none") == "unknown CPU"
    assert (
        cpu_description(tmp_path / "none", _caches(tmp_path / "c", [("2", "Unified", "2048K")]))
        == "unknown CPU (L2 2048K)"
    )
