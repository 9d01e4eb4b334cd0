"""Catalogue and service state as SQLAlchemy 2 models (one declarative ``Base`` for every part).

Parts that need their own tables (archive state, storage-event outbox, releases) declare them in
their own package on this ``Base`` and add an Alembic revision branching from ``0001``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base shared by every faaspub table."""

    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: DateTime(timezone=True)}


class Function(Base):
    """A published function (one per namespace and name); ``alias_version`` is what ``NAME`` runs."""

    __tablename__ = "functions"
    __table_args__ = (UniqueConstraint("namespace", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    namespace: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(63), index=True)
    project: Mapped[str | None] = mapped_column(String(255), index=True)
    description: Mapped[str | None] = mapped_column(Text)
    keywords: Mapped[list[Any]] = mapped_column(default=list)
    source_url: Mapped[str | None] = mapped_column(String(1024))
    alias_version: Mapped[str | None] = mapped_column(String(64))
    concept_doi: Mapped[str | None] = mapped_column(String(255))
    created: Mapped[datetime] = mapped_column(default=utcnow)
    updated: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    versions: Mapped[list[Version]] = relationship(back_populates="function", cascade="all, delete-orphan")
    triggers: Mapped[list[TriggerBinding]] = relationship(
        back_populates="function", cascade="all, delete-orphan"
    )


class Version(Base):
    """An immutable function version: image digest, commit and DOI never change once recorded."""

    __tablename__ = "versions"
    __table_args__ = (UniqueConstraint("function_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    function_id: Mapped[int] = mapped_column(ForeignKey("functions.id", ondelete="CASCADE"), index=True)
    version: Mapped[str] = mapped_column(String(64))
    image: Mapped[str] = mapped_column(String(1024))
    digest: Mapped[str] = mapped_column(String(80), index=True)
    commit: Mapped[str | None] = mapped_column(String(64))
    doi: Mapped[str | None] = mapped_column(String(255), index=True)
    runtime: Mapped[str] = mapped_column(String(32))
    manifest: Mapped[dict[str, Any]] = mapped_column(default=dict)
    citation: Mapped[dict[str, Any]] = mapped_column(default=dict)
    test_summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The SBOM's components (name, version, type, purl, licences) and the provenance check's outcome.
    sbom: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    provenance: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    state: Mapped[str] = mapped_column(String(32), default="live")
    created: Mapped[datetime] = mapped_column(default=utcnow)

    function: Mapped[Function] = relationship(back_populates="versions")


class TriggerBinding(Base):
    """A storage or HTTP trigger of a function, as bound at deploy time."""

    __tablename__ = "triggers"

    id: Mapped[int] = mapped_column(primary_key=True)
    function_id: Mapped[int] = mapped_column(ForeignKey("functions.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # storage | http
    source: Mapped[str | None] = mapped_column(String(16))  # dcache | s3 | local
    path: Mapped[str | None] = mapped_column(String(1024), index=True)
    recursive: Mapped[bool] = mapped_column(default=False)
    events: Mapped[list[Any]] = mapped_column(default=list)
    match: Mapped[str] = mapped_column(String(255), default="*")
    public: Mapped[bool] = mapped_column(default=False)

    function: Mapped[Function] = relationship(back_populates="triggers")


class ActivationRecord(Base):
    """One run of a function version, with its logs, what caused it and what it used (accounting)."""

    __tablename__ = "activations"
    __table_args__ = (
        Index("ix_activations_fn_start", "namespace", "function", "start"),
        Index("ix_activations_ns_start", "namespace", "start"),
        Index("ix_activations_function_start", "function", "start"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(255))
    function: Mapped[str] = mapped_column(String(63))
    version: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(80))
    start: Mapped[datetime] = mapped_column(default=utcnow)
    duration_ms: Mapped[float] = mapped_column(Float, default=0.0)
    status: Mapped[str] = mapped_column(String(32), index=True)
    result: Mapped[Any] = mapped_column(JSON, nullable=True)
    logs: Mapped[list[Any]] = mapped_column(default=list)
    cause: Mapped[str | None] = mapped_column(String(255), index=True)
    # The version's memory limit and the size of the storage event's file: GB-seconds and bytes read.
    memory_mb: Mapped[int | None] = mapped_column(Integer)
    bytes_read: Mapped[int | None] = mapped_column(BigInteger)


class WebhookDelivery(Base):
    """A received webhook delivery (GitLab or S3), stored before the answer goes out."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(16))  # gitlab | s3
    event: Mapped[str | None] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    project: Mapped[str | None] = mapped_column(String(255), index=True)
    outcome: Mapped[str] = mapped_column(String(32), index=True)  # queued|ignored|unauthorized|...
    detail: Mapped[str | None] = mapped_column(Text)
    body: Mapped[Any] = mapped_column(JSON, nullable=True)
    received: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    answer_ms: Mapped[float | None] = mapped_column(Float)


class Job(Base):
    """A durable unit of work; claimed by one worker at a time (see :mod:`publisher.db.queue`)."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_claim", "status", "run_after"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    key: Mapped[str | None] = mapped_column(String(512), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|running|done|dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=10)
    run_after: Mapped[datetime] = mapped_column(default=utcnow)
    locked_by: Mapped[str | None] = mapped_column(String(128))
    locked_until: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(default=utcnow)
    updated: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ApiToken(Base):
    """An API token for one namespace and scope; only its SHA-256 hash is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    namespace: Mapped[str] = mapped_column(String(255), index=True)
    scope: Mapped[str] = mapped_column(String(16))  # read | invoke | admin
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str | None] = mapped_column(String(255))
    created: Mapped[datetime] = mapped_column(default=utcnow)
    last_used: Mapped[datetime | None] = mapped_column()
