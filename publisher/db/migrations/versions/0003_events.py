"""storage-event inbox, outbox, idempotency ledger and source cursors

Revision ID: 0003
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "storage_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("checksum", sa.String(length=255), nullable=True),
        sa.Column("event_id", sa.String(length=255), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    with op.batch_alter_table("storage_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_storage_events_source"), ["source"], unique=False)
        batch_op.create_index(batch_op.f("ix_storage_events_received"), ["received"], unique=False)

    op.create_table(
        "event_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("cause", sa.String(length=64), nullable=False),
        sa.Column("namespace", sa.String(length=255), nullable=False),
        sa.Column("function", sa.String(length=63), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claim", sa.String(length=36), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("activation_id", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["storage_events.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("cause"),
    )
    with op.batch_alter_table("event_deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_event_deliveries_event_id"), ["event_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_event_deliveries_function"), ["function"], unique=False)
        batch_op.create_index(batch_op.f("ix_event_deliveries_claim"), ["claim"], unique=False)
        batch_op.create_index("ix_event_deliveries_due", ["status", "next_at"], unique=False)

    op.create_table(
        "event_ledger",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column("namespace", sa.String(length=255), nullable=False),
        sa.Column("function", sa.String(length=63), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("cause", sa.String(length=64), nullable=False),
        sa.Column("activation_id", sa.String(length=64), nullable=True),
        sa.Column("completed", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash", "digest", "namespace", "function", name="uq_event_ledger_key_digest"),
    )

    op.create_table(
        "trigger_cursors",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("channel_url", sa.Text(), nullable=True),
        sa.Column("last_event_id", sa.String(length=64), nullable=True),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("trigger_cursors")
    op.drop_table("event_ledger")
    with op.batch_alter_table("event_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_event_deliveries_due")
        batch_op.drop_index(batch_op.f("ix_event_deliveries_claim"))
        batch_op.drop_index(batch_op.f("ix_event_deliveries_function"))
        batch_op.drop_index(batch_op.f("ix_event_deliveries_event_id"))
    op.drop_table("event_deliveries")
    with op.batch_alter_table("storage_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_storage_events_received"))
        batch_op.drop_index(batch_op.f("ix_storage_events_source"))
    op.drop_table("storage_events")
