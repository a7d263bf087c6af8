"""fleet control plane: bucket leases, controller members, live deployment status, per-minute rollups


Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 13:59:56.666949
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('controller_leases',
    sa.Column('bucket', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('holder', sa.String(length=255), nullable=True),
    sa.Column('term', sa.BigInteger(), nullable=False),
    sa.Column('acquired_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('renewed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('bucket', name=op.f('pk_controller_leases'))
    )
    op.create_table('controller_members',
    sa.Column('identity', sa.String(length=255), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('buckets', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('identity', name=op.f('pk_controller_members'))
    )
    op.create_table('deployment_status',
    sa.Column('deployment_id', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('controller', sa.String(length=255), nullable=False),
    sa.Column('term', sa.BigInteger(), nullable=False),
    sa.Column('current_replicas', sa.Integer(), nullable=True),
    sa.Column('desired_replicas', sa.Integer(), nullable=True),
    sa.Column('ready_replicas', sa.Integer(), nullable=True),
    sa.Column('source', sa.String(length=32), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('forecast_used', sa.Boolean(), nullable=False),
    sa.Column('forecast_upper_rps', sa.Float(), nullable=True),
    sa.Column('planned_utilisation', sa.Float(), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('error_stage', sa.String(length=32), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('error_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('errors_total', sa.Integer(), nullable=False),
    sa.Column('capacity', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'], name=op.f('fk_deployment_status_deployment_id_deployments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('deployment_id', name=op.f('pk_deployment_status'))
    )
    op.create_table('metric_rollups',
    sa.Column('deployment_id', sa.Integer(), nullable=False),
    sa.Column('metric', sa.String(length=64), nullable=False),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('mean', sa.Float(), nullable=False),
    sa.Column('max', sa.Float(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'], name=op.f('fk_metric_rollups_deployment_id_deployments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('deployment_id', 'metric', 'ts', name=op.f('pk_metric_rollups'))
    )
    op.create_index('ix_metric_rollups_ts', 'metric_rollups', ['ts'], unique=False)
    op.create_table('maintenance_progress',
    sa.Column('job', sa.String(length=32), nullable=False),
    sa.Column('done_until', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('job', name=op.f('pk_maintenance_progress'))
    )
    op.create_index('ix_forecast_runs_created', 'forecast_runs', ['created_at'], unique=False)
    op.create_index('ix_scaling_decisions_ts', 'scaling_decisions', ['ts'], unique=False)
    op.create_index('ix_replica_events_ts', 'replica_events', ['ts'], unique=False)
    with op.batch_alter_table('scaling_decisions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('controller', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('term', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('scaling_decisions', schema=None) as batch_op:
        batch_op.drop_column('term')
        batch_op.drop_column('controller')
    op.drop_index('ix_replica_events_ts', table_name='replica_events')
    op.drop_index('ix_scaling_decisions_ts', table_name='scaling_decisions')
    op.drop_index('ix_forecast_runs_created', table_name='forecast_runs')
    op.drop_table('maintenance_progress')
    op.drop_index('ix_metric_rollups_ts', table_name='metric_rollups')
    op.drop_table('metric_rollups')
    op.drop_table('deployment_status')
    op.drop_table('controller_members')
    op.drop_table('controller_leases')
