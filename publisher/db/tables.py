"""Imports every module that declares tables, so Alembic and tests see the whole schema."""

import publisher.archive.store
import publisher.db.models
import publisher.gitlab.store
import publisher.triggers.store  # noqa: F401
