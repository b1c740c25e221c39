"""Retention: how far the outputs purge has got per rollout, and dead letters found by age.

Revision ID: 0009_retention
Revises: 0008_call_spend
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_retention"
down_revision: str | None = "0008_call_spend"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "retention_marks",
        sa.Column("task", sa.String(32), primary_key=True),
        sa.Column("rollout", sa.String(128), primary_key=True),
        sa.Column("done_before", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_dead_letters_created", "dead_letters", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_dead_letters_created", table_name="dead_letters")
    op.drop_table("retention_marks")
