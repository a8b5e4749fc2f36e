"""Finding, checking and running the Kamailio binary, and copying its log lines into ours."""

from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from chimeproxy.dataplane.edge.programs import find_program

SHM_MEGABYTES = 64  # shared memory: transactions and dialogs of a modest edge
PKG_MEGABYTES = 8  # per-process memory: parsing, http_client bodies


class KamailioError(Exception):
    """Kamailio cannot be found or refuses the configuration."""


def find_kamailio(explicit: str | None) -> str:
    """The kamailio binary: the one given, else the one on PATH, else Debian's /usr/sbin."""
    found = find_program(explicit, "kamailio", "/usr/sbin/kamailio")
    if found is None:
        raise KamailioError(
            f"kamailio not found ({explicit or 'kamailio'}); install the Debian packages "
            "kamailio, kamailio-utils-modules and kamailio-extra-modules, or pass --kamailio PATH"
        )
    return found


def validate(kamailio: str, config: Path) -> None:
    """`kamailio -c`: syntax, module loading and parameters, before anything listens."""
    check = subprocess.run(
        [kamailio, "-c", "-f", str(config), "-M", str(PKG_MEGABYTES)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check.returncode != 0:
        raise KamailioError(f"kamailio rejected {config}:\n{check.stdout}{check.stderr}")


def kamailio_command(kamailio: str, config: Path, runtime_dir: Path) -> list[str]:
    """Foreground Kamailio (`-DD`: no daemon, children still forked), logging to stderr."""
    return [
        kamailio, "-f", str(config), "-DD", "-E",
        # Everything Kamailio writes stays in the runtime directory: no /var/run needed.
        "-P", str(runtime_dir / "kamailio.pid"), "-Y", str(runtime_dir), "-w", str(runtime_dir),
        "-m", str(SHM_MEGABYTES), "-M", str(PKG_MEGABYTES),
    ]  # fmt: skip


_LEVEL_WORDS = {
    "CRITICAL": logging.CRITICAL,
    "ALERT": logging.CRITICAL,
    "BUG": logging.ERROR,
    "ERROR": logging.ERROR,
    "WARNING": logging.WARNING,
    "NOTICE": logging.INFO,
    "INFO": logging.INFO,
    "DEBUG": logging.DEBUG,
}
_KAMAILIO_LINE = re.compile(r"^\s*\d+\(\d+\) ([A-Z]+):")


# What Kamailio logs when it could not queue an end-of-call report (route[REPORT_END]): the
# interaction's id (checked against this alphabet when routed) and the report, a JSON object.
_UNQUEUED_REPORT = re.compile(r"end report not queued: ([A-Za-z0-9._~-]{1,128}) (\{[^\n]*\})$")


def unqueued_report(line: str) -> tuple[str, str] | None:
    """(interaction id, report) of a line saying Kamailio could not queue that report."""
    match = _UNQUEUED_REPORT.search(line)
    return (match.group(1), match.group(2)) if match else None


def forward_logs(
    stream: Callable[[], bytes],
    pid: int,
    name: str = "kamailio",
    on_line: Callable[[str], None] | None = None,
) -> None:
    """Copy Kamailio's output lines into our logs, at the level each line says; each line is
    also handed to `on_line`, when given."""
    for raw in iter(stream, b""):
        line = raw.decode(errors="replace").rstrip()
        if not line:
            continue
        if on_line is not None:
            on_line(line)
        match = _KAMAILIO_LINE.match(line)
        level = _LEVEL_WORDS.get(match.group(1), logging.INFO) if match else logging.INFO
        logging.getLogger(f"chimeproxy.sip_edge.{name}").log(
            level, line.strip(), extra={"pid": pid}
        )
