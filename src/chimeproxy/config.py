"""Server settings: every command-line flag has a `CHIMEPROXY_*` environment-variable twin."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8089
    database: str = "sqlite:///chimeproxy.db"
    auth: str | None = None  # "open" or "strict"; None picks by listening address
    credentials: str | None = None
    rate_limit: float | None = None
    clock_control: bool = False
    max_session_minutes: int = 720
    retention_days: float = 30.0
    sweep_interval_seconds: float = 60.0
    body_limit: int = 1024 * 1024
    log_level: str = "info"
    workers: int = 1
    migrate: bool = True
    default_account: str = "123456789012"
    default_region: str = "us-east-1"

    @property
    def retention_ms(self) -> int:
        return int(self.retention_days * 86_400_000)
