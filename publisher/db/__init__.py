"""Storage: SQLAlchemy models, engine/session helpers, Alembic migrations and the durable job queue."""
