"""Model calls and USD per rollout by purpose (replay, noise check, grading) and prompt-cache figures.

Revision ID: 0008_call_spend
Revises: 0007_replay_batches
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_call_spend"
down_revision: str | None = "0007_replay_batches"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("replay_calls", sa.BigInteger()),
    ("replay_usd", sa.Float()),
    ("noise_calls", sa.BigInteger()),
    ("noise_usd", sa.Float()),
    ("grading_calls", sa.BigInteger()),
    ("grading_usd", sa.Float()),
    ("cache_read_tokens", sa.BigInteger()),
    ("cache_write_tokens", sa.BigInteger()),
    ("cache_saved_usd", sa.Float()),
)


def upgrade() -> None:
    with op.batch_alter_table("rollout_calls") as batch:
        for name, kind in COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=False, server_default="0"))
    # Calls made before this revision: every counted noise check was one call, the rest replays.
    # Their dollars by purpose were not kept (the verdict rows still hold each side's cost).
    op.execute("UPDATE rollout_calls SET replay_calls = model_calls - noise_checked, noise_calls = noise_checked")


def downgrade() -> None:
    with op.batch_alter_table("rollout_calls") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
