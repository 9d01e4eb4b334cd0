"""Durable state of GitLab-driven work: one ``releases`` row per tag release, one ``previews`` row per MR.

A release advances through :data:`RELEASE_STEPS`; each step's result is committed before the next
step starts, so a worker that dies resumes at the first unfinished step. Steps are written to be
idempotent against the outside world as well (they look before they create).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from publisher.db.models import Base, utcnow

# The order a tag release goes through; "done" and "failed" are terminal.
RELEASE_STEPS = (
    "fetch",
    "verify",
    "reserve",
    "go_live",
    "prune",
    "deployment",
    "status",
    "notes",
    "citation_mr",
)
TERMINAL = ("done", "failed")


class ReleaseRecord(Base):
    """A tag release of one GitLab project: the state machine's position and what each step produced."""

    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("project_id", "tag"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(Integer, index=True)
    project: Mapped[str] = mapped_column(String(255))
    tag: Mapped[str] = mapped_column(String(255))
    version: Mapped[str] = mapped_column(String(64))
    sha: Mapped[str] = mapped_column(String(64))
    pipeline_id: Mapped[int] = mapped_column(Integer)
    step: Mapped[str] = mapped_column(String(32), default=RELEASE_STEPS[0], index=True)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(default=utcnow)
    updated: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PreviewRecord(Base):
    """A merge-request preview deployment and the one MR note that describes it."""

    __tablename__ = "previews"
    __table_args__ = (UniqueConstraint("project_id", "mr_iid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(Integer, index=True)
    project: Mapped[str] = mapped_column(String(255))
    mr_iid: Mapped[int] = mapped_column(Integer)
    source_branch: Mapped[str] = mapped_column(String(255), index=True)
    sha: Mapped[str | None] = mapped_column(String(64))
    functions: Mapped[list[Any]] = mapped_column(default=list)
    note_id: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="active", index=True)  # active | removed
    updated: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
