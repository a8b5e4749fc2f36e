"""The data plane's `chimeproxy serve` flags, each with its `CHIMEPROXY_*` environment twin.

Secrets are best given through the environment: command-line arguments show in `ps`.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chimeproxy.config import Settings

# Kept free of heavy imports: the command line loads this module on every start.
SMS_PROVIDERS = ("none", "webhook", "aws")


def _env(name: str, default: Any = None) -> Any:
    return os.environ.get(f"CHIMEPROXY_{name.upper()}", default)


def _flag(value: str | bool) -> bool:
    return value if isinstance(value, bool) else value.lower() in ("1", "true", "yes", "on")


def add_arguments(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group("data plane (calls, messages, events)")
    group.add_argument(
        "--route-secret",
        default=_env("route_secret"),
        help="shared secret the SIP edge and SMS webhooks send in X-Chimeproxy-Route-Secret; "
        "without one, /_chimeproxy/route answers loopback callers only "
        "(env CHIMEPROXY_ROUTE_SECRET)",
    )
    group.add_argument(
        "--sms-provider",
        choices=SMS_PROVIDERS,
        default=_env("sms_provider", "none"),
        help="where relayed SMS go out (env CHIMEPROXY_SMS_PROVIDER)",
    )
    group.add_argument(
        "--sms-webhook-url",
        default=_env("sms_webhook_url"),
        help="webhook provider: POST {from, to, body} here (env CHIMEPROXY_SMS_WEBHOOK_URL)",
    )
    group.add_argument(
        "--sms-webhook-secret",
        default=_env("sms_webhook_secret"),
        help="webhook provider: HMAC-SHA256 key of X-Chimeproxy-Signature "
        "(env CHIMEPROXY_SMS_WEBHOOK_SECRET)",
    )
    group.add_argument(
        "--sms-aws-region",
        default=_env("sms_aws_region"),
        help="aws provider: End User Messaging region (default: the server's default region) "
        "(env CHIMEPROXY_SMS_AWS_REGION)",
    )
    group.add_argument(
        "--sms-aws-endpoint-url",
        default=_env("sms_aws_endpoint_url"),
        help="aws provider: endpoint override (env CHIMEPROXY_SMS_AWS_ENDPOINT_URL)",
    )
    group.add_argument(
        "--sns-topic-arns",
        default=_env("sns_topic_arns"),
        help="comma-separated SNS topics whose inbound-SMS notifications are accepted "
        "(env CHIMEPROXY_SNS_TOPIC_ARNS)",
    )
    group.add_argument(
        "--sns-trusted-url-prefix",
        default=_env("sns_trusted_url_prefix"),
        help="also trust SigningCertURL/SubscribeURL under this prefix (tests, private "
        "endpoints) (env CHIMEPROXY_SNS_TRUSTED_URL_PREFIX)",
    )
    group.add_argument(
        "--store-message-bodies",
        action="store_true",
        default=_flag(_env("store_message_bodies", False)),
        help="keep relayed message bodies in interactions and events "
        "(env CHIMEPROXY_STORE_MESSAGE_BODIES)",
    )
    group.add_argument(
        "--events-url",
        default=_env("events_url"),
        help="POST session and interaction events here (env CHIMEPROXY_EVENTS_URL)",
    )
    group.add_argument(
        "--events-secret",
        default=_env("events_secret"),
        help="HMAC-SHA256 key of the events' X-Chimeproxy-Signature (env CHIMEPROXY_EVENTS_SECRET)",
    )
    group.add_argument(
        "--events-queue-size",
        type=int,
        default=int(_env("events_queue_size", 1000)),
        help="events waiting for delivery before new ones are dropped "
        "(env CHIMEPROXY_EVENTS_QUEUE_SIZE)",
    )


def settings_from(args: argparse.Namespace) -> dict[str, Any]:
    """The Settings fields of the data-plane flags."""
    return {
        "route_secret": args.route_secret or None,
        "sms_provider": args.sms_provider,
        "sms_webhook_url": args.sms_webhook_url or None,
        "sms_webhook_secret": args.sms_webhook_secret or None,
        "sms_aws_region": args.sms_aws_region or None,
        "sms_aws_endpoint_url": args.sms_aws_endpoint_url or None,
        "sns_topic_arns": args.sns_topic_arns or None,
        "sns_trusted_url_prefix": args.sns_trusted_url_prefix or None,
        "store_message_bodies": args.store_message_bodies,
        "events_url": args.events_url or None,
        "events_secret": args.events_secret or None,
        "events_queue_size": args.events_queue_size,
    }


def check(settings: Settings) -> None:
    """Raise ValueError for data-plane settings that cannot work."""
    from chimeproxy.dataplane import providers

    providers.from_settings(settings)
    if settings.events_queue_size < 1:
        raise ValueError("--events-queue-size must be at least 1")
    for name in ("events_url", "sms_webhook_url", "sms_aws_endpoint_url"):
        url = getattr(settings, name)
        if url and not url.startswith(("http://", "https://")):
            raise ValueError(f"--{name.replace('_', '-')} must be an http(s) URL")
