"""archive releases keep the archive's own record id (InvenioRDM ids are not numbers)

Revision ID: i21a
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "i21a"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("archive_releases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("record_id", sa.String(length=64), nullable=True))
    op.execute(
        "UPDATE archive_releases SET record_id = CAST(deposition_id AS VARCHAR(64)) "
        "WHERE deposition_id IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("archive_releases", schema=None) as batch_op:
        batch_op.drop_column("record_id")
