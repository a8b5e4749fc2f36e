"""data plane: interactions, SMS opt-outs, closed-session look-up indexes

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "interactions",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("voice_connector_pk", sa.Integer(), nullable=False),
        sa.Column("session_pk", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=True),
        sa.Column("out_of_session", sa.String(length=24), nullable=True),
        sa.Column("caller", sa.String(length=32), nullable=False),
        sa.Column("proxy_number", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=16), nullable=True),
        sa.Column("reject_status", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=256), nullable=True),
        sa.Column("call_id", sa.String(length=256), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("ended_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["voice_connector_pk"], ["voice_connectors.pk"], ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["session_pk"], ["proxy_sessions.pk"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("id"),
    )
    with op.batch_alter_table("interactions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_interactions_session", ["session_pk", "started_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_interactions_connector", ["voice_connector_pk", "started_at", "id"], unique=False
        )
        batch_op.create_index("ix_interactions_started", ["started_at"], unique=False)

    op.create_table(
        "sms_opt_outs",
        sa.Column("proxy_number", sa.String(length=16), nullable=False),
        sa.Column("phone_number", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("proxy_number", "phone_number"),
    )

    with op.batch_alter_table("proxy_sessions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_proxy_sessions_participant_1", ["participant_1", "proxy_number"], unique=False
        )
        batch_op.create_index(
            "ix_proxy_sessions_participant_2", ["participant_2", "proxy_number"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("proxy_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_proxy_sessions_participant_2")
        batch_op.drop_index("ix_proxy_sessions_participant_1")
    op.drop_table("sms_opt_outs")
    with op.batch_alter_table("interactions", schema=None) as batch_op:
        batch_op.drop_index("ix_interactions_started")
        batch_op.drop_index("ix_interactions_connector")
        batch_op.drop_index("ix_interactions_session")
    op.drop_table("interactions")
