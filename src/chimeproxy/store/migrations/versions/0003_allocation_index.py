"""indexes for allocation order and the sweeper's purge

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_phone_numbers_allocation",
        "phone_numbers",
        [
            "voice_connector_pk",
            sa.text("coalesce(last_allocated_at, 0)"),
            sa.text("length(e164)"),
            "e164",
        ],
    )
    op.create_index("ix_proxy_sessions_ended", "proxy_sessions", ["status", "ended_at"])


def downgrade() -> None:
    op.drop_index("ix_proxy_sessions_ended", table_name="proxy_sessions")
    op.drop_index("ix_phone_numbers_allocation", table_name="phone_numbers")
