"""Runs a command as a child process, restarts it with back-off when it dies, and stops it on
request; the whole process group goes with it, so no worker keeps a port."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType

from chimeproxy.dataplane.edge.kamailio import forward_logs

log = logging.getLogger("chimeproxy.sip_edge")


class Supervisor:
    """Runs a command as a child process; restarts it when it dies; stops it on request."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        stable_after: float = 30.0,
        stop_timeout: float = 10.0,
        name: str = "kamailio",
        before_start: Callable[[], None] | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        self.command = list(command)
        self.name = name
        # Sees every line the child prints (forward_logs).
        self.on_line = on_line
        # Runs before every start, e.g. to remove a pid file a killed child left behind.
        self.before_start = before_start
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.stable_after = stable_after
        self.stop_timeout = stop_timeout
        self.restarts = 0
        self._stopping = threading.Event()

    def request_stop(self, signum: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
        """Signal-handler safe: the run loop notices and stops the child."""
        self._stopping.set()

    def run(self) -> int:
        backoff = self.min_backoff
        while not self._stopping.is_set():
            started = time.monotonic()
            child = self._start()
            code = self._wait(child)
            self._reap_group(child)
            if self._stopping.is_set():
                break
            if time.monotonic() - started >= self.stable_after:
                backoff = self.min_backoff  # it had been running fine: a fresh failure
            log.error(
                f"{self.name} exited; restarting",
                extra={"exit_code": code, "pid": child.pid, "restart_in_seconds": backoff},
            )
            self.restarts += 1
            if self._stopping.wait(backoff):
                break
            backoff = min(backoff * 2, self.max_backoff)
        return 0

    def _start(self) -> subprocess.Popen[bytes]:
        if self.before_start is not None:
            self.before_start()
        # A session of its own: if Kamailio's main process is killed outright its workers
        # would keep the SIP port; the whole group is cleaned up before a restart.
        child = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert child.stdout is not None
        threading.Thread(
            target=forward_logs,
            args=(child.stdout.readline, child.pid, self.name, self.on_line),
            daemon=True,
        ).start()
        log.info(f"{self.name} started", extra={"pid": child.pid})
        return child

    def _wait(self, child: subprocess.Popen[bytes]) -> int:
        while True:
            try:
                return child.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                if self._stopping.is_set():
                    return self._terminate(child)

    def _terminate(self, child: subprocess.Popen[bytes]) -> int:
        # SIGTERM to the main process: Kamailio stops its workers and frees its sockets.
        child.send_signal(signal.SIGTERM)
        try:
            return child.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            log.warning(f"{self.name} ignored SIGTERM; killing it", extra={"pid": child.pid})
            self._reap_group(child)
            return child.wait()

    @staticmethod
    def _reap_group(child: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
            os.killpg(child.pid, signal.SIGKILL)
        # Wait for the workers to be gone, so that the SIP port is free for the next start.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.killpg(child.pid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.02)
