"""Server processes under test (chimeproxy and the baseline), wrk runs, and CPU pinning."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A port free on loopback right now (chimeproxy.testing has one, but imports pytest)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


LUA = Path(__file__).with_name("replay.lua")


@dataclass(frozen=True)
class Pinning:
    """Which CPU the load generator and the servers run on, or None where pinning cannot work."""

    client: int | None
    server: int | None

    @classmethod
    def choose(cls, enabled: bool) -> Pinning:
        cpus = sorted(os.sched_getaffinity(0))
        if not enabled or len(cpus) < 2 or shutil.which("taskset") is None:
            return cls(None, None)
        return cls(cpus[0], cpus[1])

    def prefix(self, cpu: int | None) -> list[str]:
        return [] if cpu is None else ["taskset", "-c", str(cpu)]


@dataclass
class Server:
    """A server process on a free port; `start` waits until it answers."""

    name: str
    command: list[str]
    ready_path: str
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] | None = None  # the process's environment (None: this one's)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> Server:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [part.replace("{port}", str(self.port)) for part in self.command],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env=self.env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start; see {self.log_path}")
            try:
                status, _ = send_raw(
                    self.host, f"GET {self.ready_path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n"
                )
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {timeout}s; see {self.log_path}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def memory(self) -> dict[str, float]:
        """Peak (VmHWM) and current (VmRSS) resident memory in MiB, from /proc: of the process
        that serves, which is the largest of the process and its children (with several
        workers, or under granian, the first process only supervises)."""
        processes = [_memory(pid) for pid in _process_tree(self.pid)]
        peak = max(processes, key=lambda values: values["VmHWM"])
        return {
            "peak_rss_mib": peak["VmHWM"],
            "rss_mib": peak["VmRSS"],
            "processes": len(processes),
        }

    def cpu_seconds(self) -> float:
        """User and system CPU time the server's processes have used so far, from
        /proc/<pid>/stat: the CPU a run costs is the difference across it, which other load on
        the machine barely changes (unlike req/s)."""
        return sum(_cpu_seconds(pid) for pid in _process_tree(self.pid))

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def _memory(pid: int) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            values[key] = int(rest.split()[0]) / 1024
    return values


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    # The command name (field 2) may hold spaces: fields are counted after its ")".
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def _process_tree(pid: int) -> list[int]:
    """`pid` and its descendants, from /proc/<pid>/task/<tid>/children."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += _process_tree(int(child))
    return found


def chimeproxy_server(
    directory: Path,
    database: str,
    credentials: Path,
    pinning: Pinning,
    log_level: str,
    variant: str | None = None,
    *,
    workers: int = 1,
    http_server: str = "uvicorn",
    env: dict[str, str] | None = None,
) -> Server:
    """`chimeproxy serve`, or with a variant of bench/variants.py (optimizations off), or the
    same app under granian (bench/granian_serve.py). Several workers are not pinned: they may
    use both CPUs, as they would in production."""
    if http_server == "granian":
        module = ["bench.granian_serve"]
    else:
        module = ["chimeproxy.cli"] if variant is None else ["bench.variants", variant]
    command = [
        *(pinning.prefix(pinning.server) if workers == 1 else []),
        sys.executable, "-m", *module, "serve",
        "--host", "127.0.0.1", "--port", "{port}",
        "--database", database,
        "--auth", "strict", "--credentials", str(credentials),
        "--log-level", log_level,
        *(["--workers", str(workers)] if workers > 1 else []),
    ]  # fmt: skip
    return Server(
        "chimeproxy", command, "/_chimeproxy/health", directory / "chimeproxy.log", env=env
    )


def baseline_server(directory: Path, pinning: Pinning) -> Server:
    command = [
        *pinning.prefix(pinning.server),
        sys.executable, "-m", "bench.baseline", "--port", "{port}",
    ]  # fmt: skip
    return Server("baseline", command, "/", directory / "baseline.log")


def send_raw(host: str, raw: bytes | str, timeout: float = 30.0) -> tuple[int, bytes]:
    """Send one raw request on a new connection; answer (status, body)."""
    data = raw.encode() if isinstance(raw, str) else raw
    address, _, port = host.partition(":")
    with socket.create_connection((address, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return status, body


def run_wrk(
    host: str,
    requests_file: Path,
    result_file: Path,
    *,
    duration: float,
    connections: int,
    pinning: Pinning,
) -> dict[str, Any]:
    """One wrk run (one thread, pinned to the client CPU) replaying `requests_file`."""
    command = [
        *pinning.prefix(pinning.client),
        "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
        "-s", str(LUA), f"http://{host}/",
    ]  # fmt: skip
    env = {**os.environ, "BENCH_REQUESTS": str(requests_file), "BENCH_RESULT": str(result_file)}
    result_file.unlink(missing_ok=True)
    finished = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if finished.returncode != 0 or not result_file.exists():
        raise RuntimeError(
            f"wrk failed ({finished.returncode}):\n{finished.stdout}{finished.stderr}"
        )
    raw = json.loads(result_file.read_text())
    seconds = raw["duration_us"] / 1e6
    errors = raw["errors"]
    return {
        "requests": raw["requests"],
        "seconds": round(seconds, 3),
        "rps": round(raw["requests"] / seconds, 1),
        "p50_ms": raw["latency_us"]["p50"] / 1000,
        "p90_ms": raw["latency_us"]["p90"] / 1000,
        "p99_ms": raw["latency_us"]["p99"] / 1000,
        "max_ms": raw["latency_us"]["max"] / 1000,
        "errors": sum(errors.values()),
        "non_2xx": errors["status"],
    }
