"""Dead letters flag a payload kept only in part (a record larger than the dead-letter limit).

Revision ID: 0006_dead_letter_truncated
Revises: 0005_verdict_request
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_dead_letter_truncated"
down_revision: str | None = "0005_verdict_request"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("dead_letters") as batch:
        batch.add_column(sa.Column("payload_truncated", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("dead_letters") as batch:
        batch.drop_column("payload_truncated")
