"""GitLab releases and merge-request previews

Revision ID: 0004
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0001"
branch_labels = ("gitlab",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "releases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("project", sa.String(length=255), nullable=False),
        sa.Column("tag", sa.String(length=255), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("sha", sa.String(length=64), nullable=False),
        sa.Column("pipeline_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.String(length=32), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "tag"),
    )
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_releases_project_id"), ["project_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_releases_step"), ["step"], unique=False)

    op.create_table(
        "previews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("project", sa.String(length=255), nullable=False),
        sa.Column("mr_iid", sa.Integer(), nullable=False),
        sa.Column("source_branch", sa.String(length=255), nullable=False),
        sa.Column("sha", sa.String(length=64), nullable=True),
        sa.Column("functions", sa.JSON(), nullable=False),
        sa.Column("note_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "mr_iid"),
    )
    with op.batch_alter_table("previews", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_previews_project_id"), ["project_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_previews_source_branch"), ["source_branch"], unique=False)
        batch_op.create_index(batch_op.f("ix_previews_state"), ["state"], unique=False)


def downgrade() -> None:
    op.drop_table("previews")
    op.drop_table("releases")
