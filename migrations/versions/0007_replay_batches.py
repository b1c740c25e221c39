"""Message Batches in flight (replay_mode: batch): each batch id and the calls in it, so a restart
resumes polling a batch instead of submitting its records again.

Revision ID: 0007_replay_batches
Revises: 0006_dead_letter_truncated
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_replay_batches"
down_revision: str | None = "0006_dead_letter_truncated"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "replay_batches",
        sa.Column("batch_id", sa.String(128), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False, server_default="submitted"),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_replay_batches_state", "replay_batches", ["state"])
    op.create_table(
        "replay_batch_items",
        sa.Column("batch_id", sa.String(128), sa.ForeignKey("replay_batches.batch_id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("custom_id", sa.String(64), primary_key=True),
        sa.Column("rollout", sa.String(128), nullable=False),
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("slot", sa.String(16), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("partition", sa.Integer(), nullable=True),
        sa.Column("offset", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_replay_batch_items_custom_id", "replay_batch_items", ["custom_id"])


def downgrade() -> None:
    op.drop_index("ix_replay_batch_items_custom_id", table_name="replay_batch_items")
    op.drop_table("replay_batch_items")
    op.drop_index("ix_replay_batches_state", table_name="replay_batches")
    op.drop_table("replay_batches")
