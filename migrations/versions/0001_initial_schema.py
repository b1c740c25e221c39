"""Initial schema: rollouts, verdicts and their findings, rollups, dead letters, the decision audit trail.

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 23:24:14.344083
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('dead_letters',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('source', sa.String(length=512), nullable=False),
    sa.Column('partition', sa.Integer(), nullable=False),
    sa.Column('offset', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.String(length=128), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source', 'partition', 'offset', name='uq_dead_letters_position')
    )
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.create_index('ix_dead_letters_reason', ['reason'], unique=False)

    op.create_table('decisions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('rollout', sa.String(length=128), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('actor', sa.String(length=256), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('decision', sa.String(length=16), nullable=False),
    sa.Column('stage_index', sa.Integer(), nullable=False),
    sa.Column('canary_percent', sa.Integer(), nullable=False),
    sa.Column('reasons', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('figures', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.create_index('ix_decisions_rollout_id', ['rollout', 'id'], unique=False)

    op.create_table('rollouts',
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('baseline', sa.String(length=128), nullable=False),
    sa.Column('candidate', sa.String(length=128), nullable=False),
    sa.Column('stage_index', sa.Integer(), server_default='0', nullable=False),
    sa.Column('state', sa.String(length=16), server_default='active', nullable=False),
    sa.Column('stage_started_compared', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('stage_started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('rollup_codes',
    sa.Column('rollout', sa.String(length=128), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('noise', sa.Boolean(), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('n', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('rollout', 'code', 'noise')
    )
    op.create_table('rollup_latency',
    sa.Column('rollout', sa.String(length=128), nullable=False),
    sa.Column('side', sa.String(length=16), nullable=False),
    sa.Column('bucket', sa.Integer(), nullable=False),
    sa.Column('n', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('rollout', 'side', 'bucket')
    )
    op.create_table('rollup_status',
    sa.Column('rollout', sa.String(length=128), nullable=False),
    sa.Column('route', sa.String(length=256), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('n', sa.BigInteger(), nullable=False),
    sa.Column('candidate_regressions', sa.BigInteger(), nullable=False),
    sa.Column('baseline_noise_regressions', sa.BigInteger(), nullable=False),
    sa.Column('both_regressed', sa.BigInteger(), nullable=False),
    sa.Column('cost_usd_baseline', sa.Float(), nullable=False),
    sa.Column('cost_usd_candidate', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('rollout', 'route', 'status')
    )
    op.create_table('verdicts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('rollout', sa.String(length=128), nullable=False),
    sa.Column('request_id', sa.String(length=256), nullable=False),
    sa.Column('route', sa.String(length=256), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('findings', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('baseline', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('candidate', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('baseline_repeat', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('adaptations', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('attributes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('comparator_version', sa.String(length=32), nullable=False),
    sa.Column('baseline_noise_blocking', sa.Boolean(), server_default='0', nullable=False),
    sa.Column('baseline_model', sa.String(length=128), nullable=True),
    sa.Column('candidate_model', sa.String(length=128), nullable=True),
    sa.Column('baseline_latency_ms', sa.Float(), nullable=True),
    sa.Column('candidate_latency_ms', sa.Float(), nullable=True),
    sa.Column('baseline_cost_usd', sa.Float(), nullable=True),
    sa.Column('candidate_cost_usd', sa.Float(), nullable=True),
    sa.Column('baseline_output_tokens', sa.Integer(), nullable=True),
    sa.Column('candidate_output_tokens', sa.Integer(), nullable=True),
    sa.Column('source', sa.String(length=512), nullable=True),
    sa.Column('partition', sa.Integer(), nullable=True),
    sa.Column('offset', sa.BigInteger(), nullable=True),
    sa.Column('captured_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('rolled_up', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('rollout', 'request_id', name='uq_verdicts_rollout_request')
    )
    with op.batch_alter_table('verdicts', schema=None) as batch_op:
        batch_op.create_index('ix_verdicts_rollout_created', ['rollout', 'created_at'], unique=False)
        batch_op.create_index('ix_verdicts_rollout_id', ['rollout', 'id'], unique=False)
        batch_op.create_index('ix_verdicts_rollout_route_id', ['rollout', 'route', 'id'], unique=False)
        batch_op.create_index('ix_verdicts_rollout_status_id', ['rollout', 'status', 'id'], unique=False)
        batch_op.create_index('ix_verdicts_rollup_pending', ['rollout', 'id'], unique=False, postgresql_where=sa.text('NOT rolled_up'), sqlite_where=sa.text('NOT rolled_up'))

    op.create_table('findings',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('verdict_id', sa.BigInteger(), nullable=False),
    sa.Column('rollout', sa.String(length=128), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('path', sa.Text(), nullable=True),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('noise', sa.Boolean(), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['verdict_id'], ['verdicts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('findings', schema=None) as batch_op:
        batch_op.create_index('ix_findings_rollout_code_verdict', ['rollout', 'code', 'verdict_id'], unique=False)
        batch_op.create_index('ix_findings_verdict', ['verdict_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('findings', schema=None) as batch_op:
        batch_op.drop_index('ix_findings_verdict')
        batch_op.drop_index('ix_findings_rollout_code_verdict')

    op.drop_table('findings')
    with op.batch_alter_table('verdicts', schema=None) as batch_op:
        batch_op.drop_index('ix_verdicts_rollup_pending', postgresql_where=sa.text('NOT rolled_up'), sqlite_where=sa.text('NOT rolled_up'))
        batch_op.drop_index('ix_verdicts_rollout_status_id')
        batch_op.drop_index('ix_verdicts_rollout_route_id')
        batch_op.drop_index('ix_verdicts_rollout_id')
        batch_op.drop_index('ix_verdicts_rollout_created')

    op.drop_table('verdicts')
    op.drop_table('rollup_status')
    op.drop_table('rollup_latency')
    op.drop_table('rollup_codes')
    op.drop_table('rollouts')
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.drop_index('ix_decisions_rollout_id')

    op.drop_table('decisions')
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.drop_index('ix_dead_letters_reason')

    op.drop_table('dead_letters')
