"""The catalogue side of a backend: functions, immutable versions, the alias, triggers, activations.

Both backends write here, so ``faaspub ls``, the catalogue pages and the trigger deliverer read one
place. The local backend also runs from it (it is that backend's only state); the OpenWhisk
backend keeps it in step with what it created on the platform.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from publisher.catalogue.record import record_version, replace_storage_triggers
from publisher.core.types import Activation, Release
from publisher.db.engine import transaction
from publisher.db.models import ActivationRecord, Function, TriggerBinding, Version
from publisher.errors import FaaspubError
from publisher.manifest.model import StorageTrigger, parse_duration_ms

LIVE = "live"
REMOVED = "removed"


@dataclass(frozen=True)
class Deployed:
    """What running one version needs: image, digest, limits, env and secret names."""

    namespace: str
    function: str
    version: str
    image: str
    digest: str
    handler: str
    memory_mb: int
    timeout_ms: int
    concurrency: int
    env: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    doi: str | None = None
    output: str | None = None  # the local storage folder it writes (manifest ``output``)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.namespace, self.function, self.version, self.digest)


@dataclass(frozen=True)
class FunctionInfo:
    """One line of ``faaspub ls``."""

    namespace: str
    name: str
    alias: str | None
    versions: list[str]
    project: str | None
    triggers: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "alias": self.alias,
            "versions": self.versions,
            "project": self.project,
            "triggers": self.triggers,
        }


def _deployed(fn: Function, ver: Version) -> Deployed:
    manifest = ver.manifest or {}
    limits = manifest.get("limits") or {}
    return Deployed(
        namespace=fn.namespace,
        function=fn.name,
        version=ver.version,
        image=ver.image,
        digest=ver.digest,
        handler=str(manifest.get("handler", "")),
        memory_mb=int(limits.get("memory", 256)),
        timeout_ms=parse_duration_ms(limits.get("timeout", "60s")),
        concurrency=int(limits.get("concurrency", 1)),
        env=dict(manifest.get("env") or {}),
        secrets=tuple(manifest.get("secrets") or ()),
        doi=ver.doi,
        output=manifest.get("output"),
    )


class Catalogue:
    """Catalogue reads and writes for backends; every method is its own short transaction."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    # -- versions and alias ---------------------------------------------------------------------

    def record(self, release: Release, project: str) -> bool:
        """Record ``release`` as a live version; ``True`` when it was new.

        Versions are immutable: the same version with another digest is refused, naming both.
        """
        for _attempt in range(2):
            try:
                with transaction(self.sessions) as session:
                    return record_version(session, release, project)
            except IntegrityError:
                # Another worker recorded the same function or version first: read theirs.
                continue
        raise FaaspubError(f"function {release.name}: could not record version {release.version}")

    def existing_digest(self, namespace: str, function: str, version: str) -> str | None:
        with self.sessions() as session:
            fn = self._function(session, namespace, function)
            ver = self._version(session, fn, version) if fn else None
            return ver.digest if ver else None

    def set_alias(self, namespace: str, function: str, version: str) -> None:
        """Point ``function`` at ``version`` (which must be live); unknown versions name the live ones."""
        with transaction(self.sessions) as session:
            fn = self._require(session, namespace, function)
            ver = self._version(session, fn, version)
            if ver is None or ver.state != LIVE:
                raise unknown_version(function, version, self._live(fn))
            fn.alias_version = version

    def resolve(self, namespace: str, function: str, version: str | None = None) -> Deployed:
        """The version to run: ``version``, or the alias when ``None``."""
        with self.sessions() as session:
            fn = self._require(session, namespace, function)
            wanted = version or fn.alias_version
            if wanted is None:
                raise FaaspubError(
                    f"function {function} in {namespace} has no live version",
                    hint="publish a release, or roll back to a version that still exists",
                )
            ver = self._version(session, fn, wanted)
            if ver is None or ver.state != LIVE:
                raise unknown_version(function, wanted, self._live(fn))
            return _deployed(fn, ver)

    def live_versions(self, namespace: str, function: str) -> list[str]:
        with self.sessions() as session:
            fn = self._function(session, namespace, function)
            return self._live(fn) if fn else []

    def alias(self, namespace: str, function: str) -> str | None:
        with self.sessions() as session:
            fn = self._function(session, namespace, function)
            return fn.alias_version if fn else None

    def digest_of(self, namespace: str, function: str, version: str) -> str:
        with self.sessions() as session:
            fn = self._function(session, namespace, function)
            ver = self._version(session, fn, version) if fn else None
            return ver.digest if ver else ""

    def remove(self, namespace: str, function: str, version: str | None = None) -> list[str]:
        """Mark versions removed (rows stay: DOIs keep resolving to what was published).

        Without ``version`` the whole function goes: every version, the alias and its triggers.
        Removing only the version the alias points to is refused.
        """
        with transaction(self.sessions) as session:
            fn = self._function(session, namespace, function)
            if fn is None:
                return []
            if version is not None:
                ver = self._version(session, fn, version)
                if ver is None or ver.state != LIVE:
                    raise unknown_version(function, version, self._live(fn))
                if fn.alias_version == version and len(self._live(fn)) > 1:
                    raise FaaspubError(
                        f"function {function}: version {version} is what {function} runs now",
                        hint=f"roll back to another version first, or undeploy {function} entirely",
                    )
                ver.state = REMOVED
                if fn.alias_version == version:
                    fn.alias_version = None
                return [version]
            removed = self._live(fn)
            for ver in fn.versions:
                ver.state = REMOVED
            fn.alias_version = None
            session.execute(delete(TriggerBinding).where(TriggerBinding.function_id == fn.id))
            return removed

    def project_functions(self, namespace: str, project: str) -> list[str]:
        """Functions of ``project`` that still have a live version."""
        with self.sessions() as session:
            rows = session.scalars(
                select(Function).where(Function.namespace == namespace, Function.project == project)
            ).all()
            return sorted(fn.name for fn in rows if self._live(fn))

    def functions(self, namespace: str | None = None) -> list[FunctionInfo]:
        with self.sessions() as session:
            query = select(Function).order_by(Function.namespace, Function.name)
            if namespace is not None:
                query = query.where(Function.namespace == namespace)
            out = []
            for fn in session.scalars(query).all():
                live = self._live(fn)
                if not live:
                    continue
                triggers = [
                    {
                        "kind": t.kind,
                        "source": t.source,
                        "path": t.path,
                        "recursive": t.recursive,
                        "events": t.events,
                        "match": t.match,
                        "public": t.public,
                    }
                    for t in fn.triggers
                ]
                out.append(FunctionInfo(fn.namespace, fn.name, fn.alias_version, live, fn.project, triggers))
            return out

    # -- triggers --------------------------------------------------------------------------------

    def set_triggers(self, namespace: str, function: str, triggers: list[StorageTrigger]) -> None:
        """Replace the storage bindings of ``function`` with ``triggers``."""
        with transaction(self.sessions) as session:
            replace_storage_triggers(session, self._require(session, namespace, function), triggers)

    def local_folders(self, namespace: str, function: str) -> tuple[str, ...]:
        """The local storage folders ``function``'s bound triggers watch (what its instances may read)."""
        with self.sessions() as session:
            fn = self._function(session, namespace, function)
            if fn is None:
                return ()
            query = select(TriggerBinding.path).where(
                TriggerBinding.function_id == fn.id,
                TriggerBinding.kind == "storage",
                TriggerBinding.source == "local",
            )
            return tuple(sorted({path for path in session.scalars(query) if path}))

    def clear_triggers(self, namespace: str, function: str) -> None:
        with transaction(self.sessions) as session:
            fn = self._function(session, namespace, function)
            if fn is not None:
                session.execute(delete(TriggerBinding).where(TriggerBinding.function_id == fn.id))

    # -- activations -----------------------------------------------------------------------------

    def store_activation(self, namespace: str, activation: Activation, new: bool = False) -> None:
        """Insert (``new``) or update the record of ``activation``."""
        with transaction(self.sessions) as session:
            store = session.add if new else session.merge
            store(
                ActivationRecord(
                    id=activation.id,
                    namespace=namespace,
                    function=activation.function,
                    version=activation.version,
                    digest=activation.digest,
                    start=activation.start,
                    duration_ms=activation.duration_ms,
                    status=activation.status,
                    result=activation.result,
                    logs=activation.logs,
                    cause=activation.cause,
                    memory_mb=activation.memory_mb,
                    bytes_read=activation.bytes_read,
                )
            )

    def activations(self, namespace: str, function: str | None, limit: int) -> list[Activation]:
        with self.sessions() as session:
            query = select(ActivationRecord).where(ActivationRecord.namespace == namespace)
            if function is not None:
                query = query.where(ActivationRecord.function == function)
            query = query.order_by(ActivationRecord.start.desc()).limit(limit)
            return [_activation(row) for row in session.scalars(query).all()]

    def activation(self, namespace: str, activation_id: str) -> Activation:
        with self.sessions() as session:
            row = session.get(ActivationRecord, activation_id)
            if row is None or row.namespace != namespace:
                raise FaaspubError(f"activation {activation_id} does not exist in {namespace}")
            return _activation(row)

    # -- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _function(session: Session, namespace: str, name: str) -> Function | None:
        query = select(Function).where(Function.namespace == namespace, Function.name == name)
        return session.scalars(query).first()

    @staticmethod
    def _create(session: Session, namespace: str, name: str) -> Function:
        fn = Function(namespace=namespace, name=name)
        session.add(fn)
        session.flush()
        return fn

    def _require(self, session: Session, namespace: str, name: str) -> Function:
        fn = self._function(session, namespace, name)
        if fn is None or not self._live(fn):
            known = sorted(
                f.name
                for f in session.scalars(select(Function).where(Function.namespace == namespace)).all()
                if self._live(f)
            )
            raise FaaspubError(
                f"function {name} does not exist in namespace {namespace}",
                hint=f"published functions there: {', '.join(known)}" if known else "publish it first",
            )
        return fn

    @staticmethod
    def _version(session: Session, fn: Function | None, version: str) -> Version | None:
        if fn is None:
            return None
        return session.scalars(
            select(Version).where(Version.function_id == fn.id, Version.version == version)
        ).first()

    @staticmethod
    def _live(fn: Function) -> list[str]:
        return sorted((v.version for v in fn.versions if v.state == LIVE), key=version_key)


def _activation(row: ActivationRecord) -> Activation:
    start = row.start if row.start.tzinfo else row.start.replace(tzinfo=UTC)
    return Activation(
        id=row.id,
        function=row.function,
        version=row.version,
        digest=row.digest,
        start=start,
        duration_ms=row.duration_ms,
        status=row.status,  # type: ignore[arg-type]
        result=row.result,
        logs=list(row.logs or []),
        cause=row.cause,
        memory_mb=row.memory_mb,
        bytes_read=row.bytes_read,
    )


def version_key(version: str) -> tuple[Any, ...]:
    """Sort ``1.10.0`` after ``1.9.0``; non-numeric parts sort as text after numbers."""
    parts = version.replace("-", ".").replace("+", ".").split(".")
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


def unknown_version(function: str, version: str, live: list[str]) -> FaaspubError:
    return FaaspubError(
        f"function {function} has no version {version}",
        hint=f"versions that exist: {', '.join(live)}" if live else "it has no live version",
    )


def now() -> datetime:
    return datetime.now(UTC)
