"""find-a-number indexes of interactions only for contacts out of session

Revision ID: 0006
Revises: 0005

A contact in a session is found through its session; routing one no longer writes these
indexes (store/schema.py).
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

OUT_OF_SESSION = sa.text("session_pk IS NULL")


def upgrade() -> None:
    op.drop_index("ix_interactions_caller", table_name="interactions")
    op.drop_index("ix_interactions_proxy_number", table_name="interactions")
    for name, column in [
        ("ix_interactions_stranger_caller", "caller"),
        ("ix_interactions_stranger_proxy_number", "proxy_number"),
    ]:
        op.create_index(
            name,
            "interactions",
            [column, "started_at"],
            sqlite_where=OUT_OF_SESSION,
            postgresql_where=OUT_OF_SESSION,
        )


def downgrade() -> None:
    op.drop_index("ix_interactions_stranger_proxy_number", table_name="interactions")
    op.drop_index("ix_interactions_stranger_caller", table_name="interactions")
    op.create_index("ix_interactions_caller", "interactions", ["caller", "started_at"])
    op.create_index("ix_interactions_proxy_number", "interactions", ["proxy_number", "started_at"])
