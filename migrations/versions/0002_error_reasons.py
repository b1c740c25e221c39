"""Error verdicts carry their reason (capacity, baseline_failed, comparator_fault) in a column.

Revision ID: 0002_error_reasons
Revises: 0001
Create Date: 2026-11-30 23:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_error_reasons"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("verdicts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("error_reason", sa.String(length=32), nullable=True))
    # Error verdicts stored before the column existed: their free-text reason tells which they were.
    op.execute(
        "UPDATE verdicts SET error_reason = 'baseline_failed' "
        "WHERE status = 'error' AND reason LIKE 'baseline failed%'"
    )
    op.execute(
        "UPDATE verdicts SET error_reason = 'capacity' WHERE status = 'error' AND ("
        "reason LIKE 'baseline failed: HTTP 429%' OR reason LIKE 'baseline failed: HTTP 529%' "
        "OR reason LIKE 'baseline failed: HTTP 503%' OR reason LIKE 'baseline failed: APIConnectionError%' "
        "OR reason LIKE 'baseline failed: APITimeoutError%')"
    )
    op.execute(
        "UPDATE verdicts SET error_reason = 'comparator_fault' "
        "WHERE status = 'error' AND reason LIKE 'comparator fault%'"
    )


def downgrade() -> None:
    with op.batch_alter_table("verdicts", schema=None) as batch_op:
        batch_op.drop_column("error_reason")
