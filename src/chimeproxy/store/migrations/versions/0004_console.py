"""operator console: its sign-in sessions, pool-exhaustion refusals, find-a-number indexes

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pool_refusals",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("voice_connector_pk", sa.Integer(), nullable=False),
        sa.Column("refused_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["voice_connector_pk"], ["voice_connectors.pk"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("pk"),
    )
    op.create_index(
        "ix_pool_refusals_connector", "pool_refusals", ["voice_connector_pk", "refused_at"]
    )
    op.create_table(
        "console_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("account", sa.String(length=12), nullable=False),
        sa.Column("access_key_id", sa.String(length=128), nullable=True),
        sa.Column("region", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_console_sessions_expires", "console_sessions", ["expires_at"])
    op.create_index("ix_interactions_caller", "interactions", ["caller", "started_at"])
    op.create_index("ix_interactions_proxy_number", "interactions", ["proxy_number", "started_at"])
    op.create_index(
        "ix_proxy_sessions_proxy_number", "proxy_sessions", ["proxy_number", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_proxy_sessions_proxy_number", table_name="proxy_sessions")
    op.drop_index("ix_interactions_proxy_number", table_name="interactions")
    op.drop_index("ix_interactions_caller", table_name="interactions")
    op.drop_index("ix_console_sessions_expires", table_name="console_sessions")
    op.drop_table("console_sessions")
    op.drop_index("ix_pool_refusals_connector", table_name="pool_refusals")
    op.drop_table("pool_refusals")
