"""Summarize py-spy `--format raw` (collapsed stacks) by where request time goes.

    .venv/bin/python -m bench.profile bench/results/profiles/1M-get.txt

Each sample is attributed to the first layer found walking from the innermost frame outwards,
so a sample in `hmac` under `sigv4.py` counts as SigV4, and one in sqlite3 under SQLAlchemy
counts as SQLite (the driver's own work), not as SQLAlchemy.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

# (layer, substrings of a frame "function (file:line)"), innermost match wins; order matters
# only for frames that match several layers.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "sqlite (driver)",
        ("sqlite3/", "(sqlite3", "<built-in method execute", "fetchall", "fetchone"),
    ),
    ("sqlalchemy", ("sqlalchemy/",)),
    ("sigv4 + auth", ("protocol/sigv4.py", "protocol/auth.py")),
    ("router", ("protocol/router.py",)),
    ("parse + validate", ("protocol/parser.py", "protocol/validate.py")),
    ("serializer", ("protocol/serializer.py",)),
    ("logging", ("logging/", "chimeproxy/logs.py")),
    ("domain", ("chimeproxy/domain/",)),
    ("store (chimeproxy)", ("chimeproxy/store/",)),
    ("operations", ("chimeproxy/operations/",)),
    ("app + middleware", ("chimeproxy/app.py", "protocol/http.py")),
    ("uvicorn + httptools", ("uvicorn/", "httptools")),
    ("asyncio / uvloop", ("asyncio/", "uvloop", "base_events", "events.py")),
]


def load(path: Path) -> Counter[str]:
    """Collapsed stacks ("frame;frame;... count") as a Counter."""
    stacks: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[stack] += int(count)
    return stacks


def layer_of(stack: str) -> str:
    for frame in reversed(stack.split(";")):
        for layer, needles in LAYERS:
            if any(needle in frame for needle in needles):
                return layer
    return "other"


def summarize(stacks: Counter[str], top: int = 25) -> str:
    total = sum(stacks.values()) or 1
    layers: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    for stack, count in stacks.items():
        layers[layer_of(stack)] += count
        functions[stack.rsplit(";", 1)[-1]] += count
    lines = [f"{total} samples", "", "by layer (self time of the innermost known layer):"]
    for layer, count in layers.most_common():
        lines.append(f"  {100 * count / total:5.1f}%  {layer}")
    lines += ["", f"top {top} innermost frames:"]
    for frame, count in functions.most_common(top):
        lines.append(f"  {100 * count / total:5.1f}%  {frame[:110]}")
    return "\n".join(lines)


def inclusive(stacks: Counter[str], needle: str) -> float:
    """Share of samples with a frame containing `needle` anywhere on the stack."""
    total = sum(stacks.values()) or 1
    return sum(count for stack, count in stacks.items() if needle in stack) / total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--inclusive", action="append", default=[], help="substring to total")
    args = parser.parse_args(argv)
    for path in args.files:
        stacks = load(path)
        print(f"== {path}")
        print(summarize(stacks, args.top))
        for needle in args.inclusive:
            print(f"  inclusive {needle!r}: {100 * inclusive(stacks, needle):.1f}%")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
