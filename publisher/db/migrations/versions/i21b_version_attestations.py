"""versions keep their SBOM components and the outcome of their provenance check

Revision ID: i21b
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "i21b"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sbom", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("provenance", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("versions", schema=None) as batch_op:
        batch_op.drop_column("provenance")
        batch_op.drop_column("sbom")
