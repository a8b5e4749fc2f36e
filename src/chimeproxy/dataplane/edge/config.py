"""The Kamailio configuration of the SIP edge, rendered from the shipped template
(kamailio.cfg.in): every double-braced placeholder is filled from the edge's settings."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from chimeproxy.dataplane.edge.settings import KAMAILIO_LEVELS, EdgeSettings

TEMPLATE = Path(__file__).with_name("kamailio.cfg.in")

# Headers allowed through besides those keep_hf always keeps (Via, From, To, Call-ID, CSeq,
# Contact, Route, Record-Route, Max-Forwards, Content-Type, Content-Length). Everything else
# may carry a number (P-Asserted-Identity, Remote-Party-ID, Diversion, X-*, ...) and is dropped.
# One-letter names are the compact forms of Supported, Session-Expires, Content-Encoding, Event
# and Allow-Events. "TH" is topoh's own marker (it tells topoh which way a message goes, and
# topoh removes it before sending): dropping it would silently turn topology hiding off.
KEEP_HEADERS = (
    "TH", "Allow", "Supported", "Require", "Proxy-Require", "Unsupported", "Session-Expires",
    "Min-SE", "Accept", "Accept-Encoding", "Accept-Language", "Content-Disposition",
    "Content-Encoding", "Content-Language", "MIME-Version", "RSeq", "RAck", "Event",
    "Allow-Events", "Expires", "Min-Expires", "Reason", "Retry-After", "Timestamp",
    "k", "x", "e", "o", "u",
)  # fmt: skip

# How much sooner than the edge's HTTP timeout the server gives up on a routing request.
DEADLINE_MARGIN_MS = 250
_PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")


class TemplateError(Exception):
    """The template asks for something the settings do not provide."""


def render(settings: EdgeSettings, template: str | None = None) -> str:
    """The Kamailio configuration for `settings`."""
    text = TEMPLATE.read_text() if template is None else template
    gateway = settings.gateway
    if gateway is None:
        raise TemplateError("a gateway is required")
    # The server rolls back work still running when the edge stops waiting (a little before
    # its own timeout, for the answer's way back), so a failed call is never recorded late.
    deadline_ms = settings.http_timeout * 1000 - DEADLINE_MARGIN_MS
    headers = f"Content-Type: application/json\\r\\nX-Chimeproxy-Deadline-Ms: {deadline_ms}"
    if settings.route_secret:
        # http_client_query takes one header string; curl sends the CRLF-joined pair as is.
        headers += f"\\r\\nX-Chimeproxy-Route-Secret: {settings.route_secret}"
    values = {
        "LISTEN": str(settings.listen),
        "TRANSPORT_SETTINGS": "disable_sctp=yes\n"
        + ("disable_tcp=yes" if settings.listen.proto == "udp" else "disable_tcp=no"),
        "GATEWAY": str(gateway),
        "GATEWAY_HOST": gateway.host,
        "ROUTE_URL": f"{settings.service_url}/_chimeproxy/route",
        "END_URL": f"{settings.service_url}/_chimeproxy/interactions/",
        "HTTP_HEADERS": headers,
        "HTTP_TIMEOUT": str(settings.http_timeout),
        # Without a configured key, one per run: calls survive a Kamailio restart (same key)
        # but not a restart of the command.
        "MASK_KEY": settings.mask_key or secrets.token_urlsafe(24),
        # topoh writes this address into masked URIs; it is never routed to, and must not be
        # an address a client could use, hence a loopback address nobody listens on.
        "MASK_IP": "127.0.0.8",
        "CHILDREN": str(settings.children),
        "LOG_LEVEL": str(KAMAILIO_LEVELS[settings.log_level]),
        "KEEP_HEADERS": "|".join(KEEP_HEADERS),
    }

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise TemplateError(f"the Kamailio template has an unknown placeholder {{{{{name}}}}}")
        return values[name]

    return _PLACEHOLDER.sub(fill, text)


def write_config(settings: EdgeSettings, directory: Path) -> Path:
    """Render into `directory/kamailio.cfg`, readable by the owner only (it holds secrets)."""
    path = directory / "kamailio.cfg"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(render(settings))
    return path
