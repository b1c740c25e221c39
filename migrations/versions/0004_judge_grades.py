"""The judge's grades on verdicts and their rollup (SPEC §8).

Revision ID: 0004_judge_grades
Revises: 0003_value_noise
Create Date: 2026-11-30 23:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004_judge_grades"
down_revision: str | None = "0003_value_noise"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("verdicts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("grading", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("grades", _JSON, nullable=True))
        batch_op.add_column(sa.Column("baseline_acceptable", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("candidate_acceptable", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("grading_cost_usd", sa.Float(), nullable=True))
        batch_op.create_index("ix_verdicts_rollout_grading_id", ["rollout", "grading", "id"], unique=False)
    op.create_table(
        "rollup_grades",
        sa.Column("rollout", sa.String(length=128), nullable=False),
        sa.Column("route", sa.String(length=256), nullable=False),
        sa.Column("judged", sa.BigInteger(), nullable=False),
        sa.Column("graded", sa.BigInteger(), nullable=False),
        sa.Column("failed", sa.BigInteger(), nullable=False),
        sa.Column("over_budget", sa.BigInteger(), nullable=False),
        sa.Column("baseline_acceptable", sa.BigInteger(), nullable=False),
        sa.Column("candidate_acceptable", sa.BigInteger(), nullable=False),
        sa.Column("candidate_worse", sa.BigInteger(), nullable=False),
        sa.Column("candidate_better", sa.BigInteger(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("rollout", "route"),
    )


def downgrade() -> None:
    op.drop_table("rollup_grades")
    with op.batch_alter_table("verdicts", schema=None) as batch_op:
        batch_op.drop_index("ix_verdicts_rollout_grading_id")
        batch_op.drop_column("grading_cost_usd")
        batch_op.drop_column("candidate_acceptable")
        batch_op.drop_column("baseline_acceptable")
        batch_op.drop_column("grades")
        batch_op.drop_column("grading")
