"""Worker processes of `serve --workers N` that never outlive their main process, and the
metrics directories they leave behind.

- A worker asks the kernel for SIGTERM when its parent dies (PR_SET_PDEATHSIG, Linux), and a
  thread watches the parent's pid as well (other systems, and the moment before the request):
  a killed main process never leaves workers serving its port, so a new server can start on it.
  SIGTERM is uvicorn's graceful shutdown: the listening socket closes at once, requests in
  flight finish; past the graceful timeout the watch ends the process.
- Each `serve --workers N` keeps its workers' metrics files in a directory named after its main
  process (`chimeproxy-metrics-PID-START-PIDNS-BOOT-...`, START being the process's start time
  in clock ticks since boot). A main process killed outright cannot remove it; the next start
  removes the directories whose owner is proven dead: same boot, same pid namespace, and no
  process with that pid, or one that started at another time. Anything else (another host's or
  container's directory sharing the temporary directory, an older name without an owner) stays.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("chimeproxy.workers")

SUPERVISOR_ENV = "CHIMEPROXY_SUPERVISOR_PID"
METRICS_PREFIX = "chimeproxy-metrics-"
PR_SET_PDEATHSIG = 1
PARENT_WATCH_INTERVAL_S = 0.5
# A start time that cannot be read (the process exists but /proc hides it).
UNKNOWN_START = -1
_OWNED = re.compile(rf"^{re.escape(METRICS_PREFIX)}(\d+)-(\d+)-(\d+)-([0-9a-f]{{32}})-")


# Dying with the parent.


def die_with_parent(parent_pid: int, grace_s: float) -> None:
    """In a worker: SIGTERM when the process `parent_pid` is gone; if the graceful shutdown
    that starts has not ended the process `grace_s` seconds later, it exits."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
                log.warning(f"PR_SET_PDEATHSIG failed: {os.strerror(ctypes.get_errno())}")
        except (OSError, AttributeError) as exc:
            log.warning(f"PR_SET_PDEATHSIG unavailable: {exc}")
    threading.Thread(
        target=_watch_parent,
        args=(parent_pid, grace_s),
        name="chimeproxy-parent-watch",
        daemon=True,
    ).start()


def _watch_parent(parent_pid: int, grace_s: float) -> None:
    # Also catches a parent that died before the prctl above: the worker was reparented then.
    while os.getppid() == parent_pid:
        time.sleep(PARENT_WATCH_INTERVAL_S)
    log.warning("the main process is gone: this worker stops", extra={"parent": parent_pid})
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace_s)
    os._exit(1)


# Metrics directories and their owners.


@dataclass(frozen=True, slots=True)
class Owner:
    """A process, told apart from any later one with the same pid."""

    pid: int
    started: int  # clock ticks after boot (/proc/PID/stat, field 22)
    pid_namespace: int
    boot: str  # /proc/sys/kernel/random/boot_id without dashes

    def directory_prefix(self) -> str:
        return f"{METRICS_PREFIX}{self.pid}-{self.started}-{self.pid_namespace}-{self.boot}-"


def owner_of(name: str) -> Owner | None:
    """The owner a directory's name records; None for any other name."""
    found = _OWNED.match(name)
    if found is None:
        return None
    pid, started, namespace, boot = found.groups()
    return Owner(int(pid), int(started), int(namespace), boot)


def owner_is_dead(owner: Owner, me: Owner, started_of: Callable[[int], int | None]) -> bool:
    """Whether `owner` has certainly exited, as seen from the process `me`; `started_of(pid)`
    is the start time of the process with that pid, None when there is none, UNKNOWN_START
    when it exists but cannot be read."""
    if owner.boot != me.boot or owner.pid_namespace != me.pid_namespace:
        return False  # another boot, host or container: its processes cannot be seen from here
    started = started_of(owner.pid)
    if started is None:
        return True
    return started != UNKNOWN_START and started != owner.started


def process_started(pid: int) -> int | None:
    """Start time of the process `pid` in clock ticks after boot; None when there is no such
    process; UNKNOWN_START when it exists but its start cannot be read."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # it exists, owned by someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return UNKNOWN_START
    # The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    return int(stat.rpartition(")")[2].split()[19])


def current_owner() -> Owner | None:
    """This process as an Owner; None where /proc cannot tell (not Linux)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    started = process_started(os.getpid())
    if started is None or started == UNKNOWN_START or not re.fullmatch("[0-9a-f]{32}", boot):
        return None
    return Owner(os.getpid(), started, namespace, boot)


def remove_dead_metrics_directories(
    parent: Path | None = None, started_of: Callable[[int], int | None] = process_started
) -> list[Path]:
    """Remove the metrics directories in `parent` (the temporary directory) whose owner is
    proven dead; those removed."""
    me = current_owner()
    if me is None:
        return []
    parent = parent or Path(tempfile.gettempdir())
    removed = []
    with contextlib.suppress(OSError):
        for path in parent.glob(f"{METRICS_PREFIX}*"):
            owner = owner_of(path.name)
            if owner is not None and path.is_dir() and owner_is_dead(owner, me, started_of):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    if removed:
        log.info(
            "removed the metrics directories of dead servers",
            extra={"directories": [path.name for path in removed]},
        )
    return removed


@contextlib.contextmanager
def metrics_directory(variable: str) -> Iterator[None]:
    """Worker processes add up their metrics through files in an empty directory of their own
    (prometheus_client's multiprocess mode, found through the environment `variable`), unless
    the operator named one. Removed at exit; named after this process (see the docstring), so
    that a later start removes it if this process is killed before it can."""
    if os.environ.get(variable):
        yield
        return
    owner = current_owner()
    directory = tempfile.mkdtemp(
        prefix=owner.directory_prefix() if owner is not None else METRICS_PREFIX
    )
    os.environ[variable] = directory
    try:
        yield
    finally:
        del os.environ[variable]
        shutil.rmtree(directory, ignore_errors=True)
