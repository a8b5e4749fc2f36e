"""bench/compare.py's pure parts: the variants it accepts and the summary of its runs. The tool
itself runs end to end in CI's benchmark smoke test (.ci/run)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.compare import parse_args, schema_difference, summarize

SOURCE = str(Path(__file__).resolve().parents[2] / "src")


def _run(variant: str, cpu_us: float, rps: float, p99_ms: float, errors: int = 0) -> dict:
    return {"variant": variant, "cpu_us": cpu_us, "rps": rps, "p99_ms": p99_ms, "errors": errors}


def test_variants_are_named_trees_that_hold_the_package() -> None:
    args = parse_args(["before=" + SOURCE, "after=" + SOURCE, "--scenario", "route"])
    assert [name for name, _ in args.variants] == ["before", "after"]
    assert args.variants[0][1] == Path(SOURCE)
    assert args.scenario == "route"


@pytest.mark.parametrize("given", ["before", "=" + SOURCE, "before=/nonexistent"])
def test_a_variant_without_a_name_or_a_package_is_refused(
    given: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_args([given])
    assert "expected NAME=DIR" in capsys.readouterr().err


def test_two_variants_may_not_share_a_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["same=" + SOURCE, "same=" + SOURCE])
    assert "a name of its own" in capsys.readouterr().err


def _tree(root: Path) -> Path:
    """A tree holding the package's marker and a copy of this tree's migrations."""
    package = root / "chimeproxy"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    shutil.copytree(
        Path(SOURCE) / "chimeproxy" / "store" / "migrations" / "versions",
        package / "store" / "migrations" / "versions",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return root


def test_a_tree_with_the_same_migrations_shares_the_schema(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "same")
    assert schema_difference(tree, Path(SOURCE)) is None
    assert parse_args(["same=" + str(tree)]).variants[0][1] == tree


def test_a_variant_whose_migrations_differ_is_refused_with_what_differs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An older tree (a migration missing), a newer one (one more), or one whose migration
    was edited: each named, for the seeded dataset would not be of its schema."""
    tree = _tree(tmp_path / "other")
    versions = tree / "chimeproxy" / "store" / "migrations" / "versions"
    newest = sorted(versions.glob("0*.py"))[-1]
    newest.unlink()
    (versions / "0099_later.py").write_text('revision = "0099"\n')
    first = sorted(versions.glob("0*.py"))[0]
    first.write_text(first.read_text() + "\n# edited\n")
    assert schema_difference(tree, Path(SOURCE)) == (
        f"lacks {newest.name}; adds 0099_later.py; changes {first.name}"
    )
    with pytest.raises(SystemExit):
        parse_args(["before=" + SOURCE, "other=" + str(tree)])
    error = capsys.readouterr().err
    assert "other: its migrations differ from this tree's" in error
    assert f"lacks {newest.name}" in error


def test_the_summary_takes_medians_and_reads_them_against_the_first_variant() -> None:
    runs = [
        _run("before", 200.0, 5_000, 10.0),
        _run("after", 150.0, 6_000, 8.0),
        _run("after", 160.0, 6_500, 7.0, errors=1),
        _run("before", 180.0, 5_500, 12.0),
        _run("before", 220.0, 4_000, 11.0),
        _run("after", 140.0, 7_000, 9.0),
    ]
    before, after = summarize(runs, ["before", "after"])
    assert before == {
        "variant": "before",
        "runs": 3,
        "cpu_us": 200.0,
        "least_cpu_us": 180.0,
        "rps": 5_000,
        "p99_ms": 11.0,
        "errors": 0,
        "cpu_us_ratio": 1.0,
        "rps_ratio": 1.0,
        "p99_ms_ratio": 1.0,
    }
    assert (after["cpu_us"], after["least_cpu_us"], after["rps"], after["p99_ms"]) == (
        150.0,
        140.0,
        6_500,
        8.0,
    )
    assert after["errors"] == 1
    assert (after["cpu_us_ratio"], after["rps_ratio"], after["p99_ms_ratio"]) == (0.75, 1.3, 0.727)
