"""Finding the outside programs the edge runs (kamailio, rtpengine)."""

from __future__ import annotations

import os
import shutil


def find_program(explicit: str | None, name: str, fallback: str) -> str | None:
    """A program to run: the one given, else `name` on PATH, else `fallback` (where Debian
    installs it); None when none of them is an executable file."""
    candidate = explicit or shutil.which(name) or fallback
    return candidate if os.path.isfile(candidate) and os.access(candidate, os.X_OK) else None
