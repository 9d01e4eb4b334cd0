"""activations by function name alone: the API lists them without a namespace

Revision ID: i18a
Revises: 0001
"""

from alembic import op

revision = "i18a"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # GET /api/v1/activations?function=NAME has no namespace, so (namespace, function, start) could
    # not serve it: SQLite scanned every activation (or every failure) and sorted them.
    op.create_index("ix_activations_function_start", "activations", ["function", "start"])


def downgrade() -> None:
    op.drop_index("ix_activations_function_start", table_name="activations")
