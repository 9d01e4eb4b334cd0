"""activation usage: the memory limit a run had and the bytes of the file it was triggered with

Revision ID: i20a
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "i20a"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("activations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("memory_mb", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("bytes_read", sa.BigInteger(), nullable=True))
        batch_op.create_index("ix_activations_ns_start", ["namespace", "start"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("activations", schema=None) as batch_op:
        batch_op.drop_index("ix_activations_ns_start")
        batch_op.drop_column("bytes_read")
        batch_op.drop_column("memory_mb")
