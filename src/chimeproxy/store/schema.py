"""The database schema, one definition for SQLite and PostgreSQL. Times are integer milliseconds
since the epoch (UTC) so both engines compare and index them the same way."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)

metadata = MetaData()

# A row per server setting that must be shared by every process (the pagination-token key).
server_settings = Table(
    "server_settings",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# The operator's own numbers at its carrier (`chimeproxy numbers import`); when empty, the
# built-in catalog of fictional numbers serves searches and orders.
catalog_numbers = Table(
    "catalog_numbers",
    metadata,
    Column("e164", String(16), primary_key=True),
    Column("country", String(2), nullable=False),
    Column("number_type", String(16), nullable=False),
    Column("capabilities", String(128), nullable=False),
    Column("area_code", String(8)),
    Column("city", String(128)),
    Column("state", String(128)),
)

voice_connectors = Table(
    "voice_connectors",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("account", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("id", String(22), nullable=False),
    Column("name", String(256), nullable=False),
    Column("aws_region", String(32), nullable=False),
    Column("require_encryption", Boolean, nullable=False),
    Column("integration_type", String(64)),
    Column("network_type", String(32)),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    UniqueConstraint("account", "region", "id", name="uq_voice_connectors_id"),
    Index("ix_voice_connectors_list", "account", "region", "created_at", "id"),
)

# A number is owned by at most one (account, region): the carrier sells it once.
phone_numbers = Table(
    "phone_numbers",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("account", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("e164", String(16), nullable=False, unique=True),
    Column("country", String(2), nullable=False),
    Column("area_code", String(8)),
    Column("number_type", String(16), nullable=False),
    Column("product_type", String(32), nullable=False),
    Column("status", String(32), nullable=False),
    Column("capabilities", String(128), nullable=False),
    Column("name", String(256)),
    Column("calling_name", String(32)),
    Column("order_id", String(36)),
    Column(
        "voice_connector_pk",
        Integer,
        ForeignKey("voice_connectors.pk", ondelete="RESTRICT"),
    ),
    Column("associated_at", BigInteger),
    Column("last_allocated_at", BigInteger),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("deletion_at", BigInteger),
    Index("ix_phone_numbers_owner", "account", "region", "e164"),
    Index("ix_phone_numbers_connector", "voice_connector_pk"),
    # Every sweep looks for numbers whose deletion queue time is over: this index makes that
    # look proportional to what it releases, instead of a read of every number. Only a number
    # being deleted has a deletion time. Not (status, deletion_at): SQLite, without statistics,
    # took such an index for a create's candidates too, which filter on status.
    Index("ix_phone_numbers_deletion", "deletion_at"),
)

phone_number_orders = Table(
    "phone_number_orders",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("account", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("id", String(36), nullable=False, unique=True),
    Column("product_type", String(32), nullable=False),
    Column("order_type", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("numbers", Text, nullable=False),  # JSON list of [e164, status]
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Index("ix_phone_number_orders_list", "account", "region", "created_at", "id"),
)

proxy_configs = Table(
    "proxy_configs",
    metadata,
    Column(
        "voice_connector_pk",
        Integer,
        ForeignKey("voice_connectors.pk", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("default_expiry_minutes", Integer, nullable=False),
    Column("countries", String(512), nullable=False),  # comma-separated, in the order given
    Column("fallback_number", String(16)),
    Column("disabled", Boolean, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

proxy_sessions = Table(
    "proxy_sessions",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column(
        "voice_connector_pk",
        Integer,
        ForeignKey("voice_connectors.pk", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("id", String(36), nullable=False, unique=True),
    Column("name", String(64)),
    Column("status", String(16), nullable=False),  # as last written; reads derive expiry
    Column("capabilities", String(16), nullable=False),  # "Voice", "SMS" or "SMS,Voice"
    Column("expiry_minutes", Integer, nullable=False),
    Column("expiry_minutes_given", Boolean, nullable=False),
    Column("number_selection_behavior", String(16)),
    Column("geo_match_level", String(16)),
    Column("geo_country", String(2)),
    Column("geo_area_code", String(8)),
    Column("participant_1", String(16), nullable=False),
    Column("participant_2", String(16), nullable=False),
    Column("proxy_number", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("ended_at", BigInteger),
    Index("ix_proxy_sessions_list", "voice_connector_pk", "created_at", "id"),
    Index("ix_proxy_sessions_open", "status", "expires_at"),
    # The data plane's "did this caller have a (now closed) session on this number" look-up.
    Index("ix_proxy_sessions_participant_1", "participant_1", "proxy_number"),
    Index("ix_proxy_sessions_participant_2", "participant_2", "proxy_number"),
    # The console's "find a number" for a proxy number.
    Index("ix_proxy_sessions_proxy_number", "proxy_number", "created_at"),
)

# The routing invariant, enforced by the database: one row per participant of each active
# session, and no participant twice on the same proxy number of a voice connector.
active_routes = Table(
    "active_routes",
    metadata,
    Column("voice_connector_pk", Integer, nullable=False),
    Column("participant", String(16), nullable=False),
    Column("proxy_number", String(16), nullable=False),
    Column(
        "session_pk",
        Integer,
        ForeignKey("proxy_sessions.pk", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("expires_at", BigInteger, nullable=False),
    UniqueConstraint(
        "voice_connector_pk", "participant", "proxy_number", name="uq_active_routes_invariant"
    ),
    Index("ix_active_routes_session", "session_pk"),
)

# Which proxy number a pair of participants last had; it outlives the sessions (stickiness).
pair_history = Table(
    "pair_history",
    metadata,
    Column(
        "voice_connector_pk",
        Integer,
        ForeignKey("voice_connectors.pk", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("pair", String(40), primary_key=True),
    Column("proxy_number", String(16), primary_key=True),
    Column("last_used_at", BigInteger, nullable=False),
)

# Every call and message the data plane routed (or refused on a proxy number): in session
# (session_pk set; removed with the session) or out of session (session_pk NULL; purged after
# the retention period). Message bodies only with --store-message-bodies.
interactions = Table(
    "interactions",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False, unique=True),
    Column(
        "voice_connector_pk",
        Integer,
        ForeignKey("voice_connectors.pk", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("session_pk", Integer, ForeignKey("proxy_sessions.pk", ondelete="CASCADE")),
    Column("kind", String(8), nullable=False),  # "voice" or "sms"
    Column("action", String(8), nullable=False),  # "connect", "fallback" or "reject"
    Column("direction", String(8)),  # "a-to-b" or "b-to-a" in session
    Column("out_of_session", String(24)),  # why not in session: domain.routing.OutOfSession
    Column("caller", String(32), nullable=False),
    Column("proxy_number", String(16), nullable=False),
    Column("target", String(16)),
    Column("reject_status", Integer),
    Column("reason", String(256)),
    Column("call_id", String(256)),
    Column("outcome", String(32)),
    Column("duration_seconds", Float),
    Column("body", Text),
    Column("started_at", BigInteger, nullable=False),
    Column("ended_at", BigInteger),
    Index("ix_interactions_session", "session_pk", "started_at", "id"),
    Index("ix_interactions_connector", "voice_connector_pk", "started_at", "id"),
    Index("ix_interactions_started", "started_at"),
    # The console's "find a number", for contacts out of session (strangers, refusals): a
    # caller's, a proxy number's. Partial: a contact in a session is found through that
    # session (store/console.py), so the routing of a call or text in session writes neither
    # index. Each was a random page for every routed contact to change and copy to the WAL:
    # together about a tenth of a `/route`'s CPU (docs/performance.md, ninth pass).
    Index(
        "ix_interactions_stranger_caller",
        "caller",
        "started_at",
        sqlite_where=text("session_pk IS NULL"),
        postgresql_where=text("session_pk IS NULL"),
    ),
    Index(
        "ix_interactions_stranger_proxy_number",
        "proxy_number",
        "started_at",
        sqlite_where=text("session_pk IS NULL"),
        postgresql_where=text("session_pk IS NULL"),
    ),
)

# Who sent an opt-out keyword (STOP, ...) to which proxy number: messages relayed from that
# number to them are held back until they send an opt-in keyword (START, ...).
sms_opt_outs = Table(
    "sms_opt_outs",
    metadata,
    Column("proxy_number", String(16), primary_key=True),
    Column("phone_number", String(16), primary_key=True),
    Column("created_at", BigInteger, nullable=False),
)

# CreateProxySession refusals because the pool was exhausted for the participants, for the
# console's chart; a connector's rows older than two days go when a new one is recorded.
pool_refusals = Table(
    "pool_refusals",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column(
        "voice_connector_pk",
        Integer,
        ForeignKey("voice_connectors.pk", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("refused_at", BigInteger, nullable=False),
    Index("ix_pool_refusals_connector", "voice_connector_pk", "refused_at"),
)

# Signed-in console users (src/chimeproxy/console/): the cookie carries a random token, the
# table its SHA-256, so signing out (deleting the row) makes the cookie worthless everywhere.
# Times are the real wall clock in milliseconds, never the --clock-control one.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("account", String(12), nullable=False),
    Column("access_key_id", String(128)),  # None in open mode
    Column("region", String(32)),  # the region shown; None: every region
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Index("ix_console_sessions_expires", "expires_at"),
)

# Allocation reads a connector's numbers in the selection's general order (least recently
# allocated first, then the lowest number) and stops after a few: this index serves that order,
# so a create reads a handful of rows instead of the whole pool (docs/performance.md).
Index(
    "ix_phone_numbers_allocation",
    phone_numbers.c.voice_connector_pk,
    func.coalesce(phone_numbers.c.last_allocated_at, 0),  # never allocated sorts first
    func.length(phone_numbers.c.e164),
    phone_numbers.c.e164,
)
# The sweeper's purge finds closed sessions by when they ended.
Index("ix_proxy_sessions_ended", proxy_sessions.c.status, proxy_sessions.c.ended_at)
