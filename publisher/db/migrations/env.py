"""Alembic environment: runs on the connection handed over by :func:`publisher.db.engine.upgrade`."""

from alembic import context

import publisher.db.tables  # noqa: F401  (registers every part's tables on Base.metadata)
from publisher.db.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
