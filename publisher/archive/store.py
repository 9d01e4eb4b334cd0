"""Durable archive state: one row per (namespace, function, version) release.

The row is written *before* each remote step, so a run that dies half-way leaves enough behind for
the next run to find its draft instead of creating a second one (or a second concept record).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, Integer, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from publisher.db.models import Base, utcnow

# creating: a draft may exist remotely but its id is not known yet; draft: the draft id is known;
# publishing: publish was sent; published: final; discarded: the draft is gone.
STATES = ("creating", "draft", "publishing", "published", "discarded")
OPEN_STATES = ("creating", "draft", "publishing")


class ArchiveRelease(Base):
    """The Zenodo deposition behind one function version."""

    __tablename__ = "archive_releases"
    __table_args__ = (UniqueConstraint("namespace", "function", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    namespace: Mapped[str] = mapped_column(String(255))
    function: Mapped[str] = mapped_column(String(63))
    version: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="creating")
    deposition_id: Mapped[int | None] = mapped_column(Integer)  # Zenodo's numeric id (orders versions)
    record_id: Mapped[str | None] = mapped_column(String(64))  # the archive's id (InvenioRDM: "4d0ns-ntd89")
    concept_recid: Mapped[str | None] = mapped_column(String(32))
    doi: Mapped[str | None] = mapped_column(String(255))
    concept_doi: Mapped[str | None] = mapped_column(String(255))
    url: Mapped[str | None] = mapped_column(String(1024))
    updated: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


@dataclass(frozen=True)
class Entry:
    """A detached copy of a row (safe to use after the session closed)."""

    namespace: str
    function: str
    version: str
    state: str
    deposition_id: int | None = None
    concept_recid: str | None = None
    doi: str | None = None
    concept_doi: str | None = None
    url: str | None = None
    record_id: str | None = None


def _entry(row: ArchiveRelease) -> Entry:
    return Entry(
        row.namespace,
        row.function,
        row.version,
        row.state,
        row.deposition_id,
        row.concept_recid,
        row.doi,
        row.concept_doi,
        row.url,
        row.record_id,
    )


class ArchiveStore:
    """Reads and writes :class:`ArchiveRelease` rows; each call is its own committed transaction."""

    def __init__(self, engine: Engine) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def get(self, namespace: str, function: str, version: str) -> Entry | None:
        with self._sessions() as session:
            row = self._row(session, namespace, function, version)
            return _entry(row) if row else None

    def save(self, namespace: str, function: str, version: str, **values: object) -> Entry:
        """Create or update the row; ``values`` are column values (``state``, ``deposition_id``, …)."""
        unknown = set(values) - set(ArchiveRelease.__table__.columns.keys())
        if unknown:
            raise ValueError(f"unknown archive store columns: {sorted(unknown)}")
        if "state" in values and values["state"] not in STATES:
            raise ValueError(f"unknown archive state {values['state']!r}")
        with self._sessions() as session, session.begin():
            row = self._row(session, namespace, function, version)
            if row is None:
                row = ArchiveRelease(namespace=namespace, function=function, version=version)
                session.add(row)
            for key, value in values.items():
                setattr(row, key, value)
            session.flush()
            return _entry(row)

    def concept(self, namespace: str, function: str) -> str | None:
        """The concept record id of the function, once any of its versions was published."""
        published = self.published(namespace, function)
        return published[-1].concept_recid if published else None

    def published(self, namespace: str, function: str) -> list[Entry]:
        """Published versions, oldest first."""
        with self._sessions() as session:
            rows = session.scalars(
                select(ArchiveRelease)
                .where(
                    ArchiveRelease.namespace == namespace,
                    ArchiveRelease.function == function,
                    ArchiveRelease.state == "published",
                )
                .order_by(ArchiveRelease.deposition_id, ArchiveRelease.id)
            )
            return [_entry(r) for r in rows]

    def by_doi(self, namespace: str, doi: str) -> Entry | None:
        """The release of ``namespace`` recorded with ``doi``."""
        with self._sessions() as session:
            row = session.scalars(
                select(ArchiveRelease).where(ArchiveRelease.namespace == namespace, ArchiveRelease.doi == doi)
            ).first()
            return _entry(row) if row else None

    def open_entries(self, namespace: str, function: str) -> list[Entry]:
        """Versions of the function whose release is under way (not published, not discarded)."""
        with self._sessions() as session:
            rows = session.scalars(
                select(ArchiveRelease).where(
                    ArchiveRelease.namespace == namespace,
                    ArchiveRelease.function == function,
                    ArchiveRelease.state.in_(OPEN_STATES),
                )
            )
            return [_entry(r) for r in rows]

    @staticmethod
    def _row(session: Session, namespace: str, function: str, version: str) -> ArchiveRelease | None:
        return session.scalars(
            select(ArchiveRelease).where(
                ArchiveRelease.namespace == namespace,
                ArchiveRelease.function == function,
                ArchiveRelease.version == version,
            )
        ).first()
