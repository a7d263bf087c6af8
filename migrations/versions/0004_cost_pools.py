"""cost pools: the placement of each decision across capacity pools, spot interruption notices

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 17:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("scaling_decisions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("placement", _JSON, nullable=True))
    op.create_table(
        "spot_interruptions",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pool", sa.String(length=40), nullable=False),
        sa.Column("replica", sa.String(length=253), nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("notice_s", sa.Float(), nullable=False),
        sa.Column("leaves_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_spot_interruptions_deployment_id_deployments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_spot_interruptions")),
    )
    with op.batch_alter_table("spot_interruptions", schema=None) as batch_op:
        batch_op.create_index("ix_spot_interruptions_deployment_ts", ["deployment_id", "ts"], unique=False)
        batch_op.create_index("ix_spot_interruptions_ts", ["ts"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("spot_interruptions", schema=None) as batch_op:
        batch_op.drop_index("ix_spot_interruptions_ts")
        batch_op.drop_index("ix_spot_interruptions_deployment_ts")
    op.drop_table("spot_interruptions")
    with op.batch_alter_table("scaling_decisions", schema=None) as batch_op:
        batch_op.drop_column("placement")
