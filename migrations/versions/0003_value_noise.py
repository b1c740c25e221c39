"""Learned noise counts per baseline, route and path or code; model calls spent per rollout.

Revision ID: 0003_value_noise
Revises: 0002_error_reasons
Create Date: 2026-11-30 23:59:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_value_noise"
down_revision: str | None = "0002_error_reasons"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "noise_counts",
        sa.Column("baseline", sa.String(length=128), nullable=False),
        sa.Column("route", sa.String(length=256), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("samples", sa.BigInteger(), nullable=False),
        sa.Column("differed", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("baseline", "route", "kind", "key", "bucket"),
    )
    with op.batch_alter_table("noise_counts", schema=None) as batch_op:
        batch_op.create_index("ix_noise_counts_bucket", ["bucket"], unique=False)
    op.create_table(
        "rollout_calls",
        sa.Column("rollout", sa.String(length=128), nullable=False),
        sa.Column("replayed", sa.BigInteger(), nullable=False),
        sa.Column("noise_checked", sa.BigInteger(), nullable=False),
        sa.Column("model_calls", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("rollout"),
    )


def downgrade() -> None:
    op.drop_table("rollout_calls")
    with op.batch_alter_table("noise_counts", schema=None) as batch_op:
        batch_op.drop_index("ix_noise_counts_bucket")
    op.drop_table("noise_counts")
