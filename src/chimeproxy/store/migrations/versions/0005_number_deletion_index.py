"""index for the sweeper's release of deleted numbers

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_phone_numbers_deletion", "phone_numbers", ["deletion_at"])


def downgrade() -> None:
    op.drop_index("ix_phone_numbers_deletion", table_name="phone_numbers")
