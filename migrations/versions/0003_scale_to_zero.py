"""scale to zero: the deployment status says since when a deployment is idle and when it plans to wake

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 17:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('deployment_status') as batch:
        batch.add_column(sa.Column('idle_since', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('next_wake_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('deployment_status') as batch:
        batch.drop_column('next_wake_at')
        batch.drop_column('idle_since')
