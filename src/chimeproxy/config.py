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
    sqlite_synchronous: str = "NORMAL"  # FULL: commits also survive power loss (docs/operations.md)
    default_account: str = "123456789012"
    default_region: str = "us-east-1"
    # Data plane (dataplane/options.py has the flags).
    route_secret: str | None = None
    sms_provider: str = "none"  # "none", "webhook" or "aws"
    sms_webhook_url: str | None = None
    sms_webhook_secret: str | None = None
    sms_aws_region: str | None = None
    sms_aws_endpoint_url: str | None = None
    sns_topic_arns: str | None = None  # comma-separated
    sns_trusted_url_prefix: str | None = None
    store_message_bodies: bool = False
    events_url: str | None = None
    events_secret: str | None = None
    events_queue_size: int = 1000

    @property
    def retention_ms(self) -> int:
        return int(self.retention_days * 86_400_000)
