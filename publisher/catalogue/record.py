"""Write releases into the catalogue: the function, its immutable version, its triggers and the alias.

This module is the one writer of ``functions``/``versions`` rows for a release: the backends record
what they deployed through :func:`record_version`, the pipeline adds what only it knows (citation,
keywords, HTTP triggers) through :func:`record_metadata`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from publisher.core.types import Release
from publisher.db.models import Function, TriggerBinding, Version
from publisher.errors import FaaspubError
from publisher.manifest.model import StorageTrigger
from publisher.provenance.sbom import components_of

LIVE = "live"


def check_same_digest(function: str, version: str, existing: str, new: str) -> None:
    """Versions are immutable: the same version with another image is refused, naming both."""
    if existing and new and existing != new:
        raise FaaspubError(
            f"function {function}: version {version} is already published with image {existing}; "
            f"refusing to replace it with {new}",
            hint="versions are immutable: release the change as a new version",
        )


def find_function(session: Session, namespace: str, name: str) -> Function | None:
    return session.scalars(
        select(Function).where(Function.namespace == namespace, Function.name == name)
    ).first()


def find_version(session: Session, function: Function, version: str) -> Version | None:
    query = select(Version).where(Version.function_id == function.id, Version.version == version)
    return session.scalars(query).first()


def record_version(session: Session, release: Release, project: str | None = None) -> bool:
    """Upsert the function and its version as live; ``True`` when the version is new."""
    manifest = release.source.manifest
    function = find_function(session, release.namespace, release.name)
    if function is None:
        function = Function(namespace=release.namespace, name=release.name, keywords=[])
        session.add(function)
        session.flush()
    if project is not None:
        function.project = project
    function.description = manifest.description
    function.source_url = release.source.source_url
    if release.reservation.concept_doi:
        function.concept_doi = release.reservation.concept_doi
    version = find_version(session, function, release.version)
    if version is not None:
        check_same_digest(release.name, release.version, version.digest, release.image.digest)
        version.state = LIVE
        version.doi = version.doi or release.reservation.doi
        return False
    session.add(
        Version(
            function_id=function.id,
            version=release.version,
            image=release.image.pinned,
            digest=release.image.digest,
            commit=release.source.commit,
            doi=release.reservation.doi,
            runtime=manifest.runtime,
            manifest=manifest.model_dump(mode="json"),
            citation={},
            test_summary=release.test.summary() if release.test else {},
            state=LIVE,
        )
    )
    session.flush()
    return True


def record_metadata(
    session: Session,
    release: Release,
    citation: dict[str, Any] | None,
    provenance: dict[str, Any] | None = None,
) -> None:
    """Citation, keywords, SBOM components, provenance check and HTTP triggers of a release (storage
    bindings are the backend's).

    The version is upserted first, so this holds whatever the backend recorded (or did not).
    """
    record_version(session, release)
    function = find_function(session, release.namespace, release.name)
    assert function is not None
    version = find_version(session, function, release.version)
    assert version is not None
    if citation:
        version.citation = citation
        function.keywords = list(citation.get("keywords") or [])
    if release.test:
        version.test_summary = release.test.summary()
    if release.attestation is not None:
        version.sbom = components_of(release.attestation.sbom)
    if provenance is not None:
        version.provenance = provenance
    session.execute(
        delete(TriggerBinding).where(TriggerBinding.function_id == function.id, TriggerBinding.kind == "http")
    )
    for entry in release.source.manifest.triggers:
        if entry.http is not None:
            session.add(
                TriggerBinding(function_id=function.id, kind="http", public=entry.http.public, events=[])
            )


def replace_storage_triggers(session: Session, function: Function, triggers: list[StorageTrigger]) -> None:
    """Make ``triggers`` the storage bindings of ``function``."""
    session.execute(
        delete(TriggerBinding).where(
            TriggerBinding.function_id == function.id, TriggerBinding.kind == "storage"
        )
    )
    for t in triggers:
        session.add(
            TriggerBinding(
                function_id=function.id,
                kind="storage",
                source=t.source,
                path=t.path,
                recursive=t.recursive,
                events=list(t.events),
                match=t.match,
            )
        )


def record_release(
    session: Session, release: Release, citation: dict[str, Any] | None = None, project: str | None = None
) -> Version:
    """Everything at once, as a release that went live: version, alias, triggers, metadata."""
    record_version(session, release, project)
    function = find_function(session, release.namespace, release.name)
    assert function is not None
    function.alias_version = release.version
    replace_storage_triggers(session, function, release.source.manifest.storage_triggers())
    record_metadata(session, release, citation)
    version = find_version(session, function, release.version)
    assert version is not None
    return version
