"""Archives: where a release is deposited and gets its DOI (Zenodo, InvenioRDM) — or nowhere (``none``)."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy import Engine

from publisher.archive.invenio import InvenioClient
from publisher.archive.none import NoArchive
from publisher.archive.records import Records
from publisher.archive.release import RecordArchive, ZenodoArchive, doi_prefix_for
from publisher.archive.store import ArchiveStore
from publisher.archive.zenodo import ZenodoClient
from publisher.archive.zenodo_records import ZenodoRecords
from publisher.config import ArchiveSettings, Settings, read_secret
from publisher.core.parts import Archive, Progress
from publisher.errors import ConfigError

__all__ = ["ArchiveClients", "NoArchive", "RecordArchive", "ZenodoArchive", "get_archive"]


class _HasSettings(Protocol):
    """What :class:`publisher.core.context.Context` offers: settings and a migrated engine."""

    settings: Settings

    @property
    def engine(self) -> Engine: ...


class ArchiveClients:
    """One record API client per namespace, each with that namespace's token (made on first use)."""

    def __init__(self, settings: ArchiveSettings) -> None:
        self._settings = settings
        self._clients: dict[str, Records] = {}

    def __call__(self, namespace: str) -> Records:
        if namespace not in self._clients:
            self._clients[namespace] = self._client(self._token(namespace))
        return self._clients[namespace]

    def _client(self, token: str) -> Records:
        settings = self._settings
        timeout, publish_timeout = settings.timeout_s, max(300.0, settings.timeout_s)
        if settings.kind == "invenio-rdm":
            return InvenioClient(settings.url, token, timeout=timeout, publish_timeout=publish_timeout)
        client = ZenodoClient(settings.url, token, timeout=timeout, publish_timeout=publish_timeout)
        return ZenodoRecords(client, doi_prefix_for(settings.url))

    def _token(self, namespace: str) -> str:
        settings = self._settings
        file = settings.token_files.get(namespace)
        token = read_secret(None, file, f"archive token of namespace {namespace}") if file else None
        token = token or read_secret(settings.token, settings.token_file, "archive token")
        if not token:
            raise ConfigError(
                f"no archive token for namespace {namespace!r}",
                hint=f"set archive.token_files.{namespace} or archive.token_file",
            )
        return token


def get_archive(
    source: Settings | _HasSettings, engine: Engine | None = None, progress: Progress | None = None
) -> Archive:
    """The configured archive. ``source`` is the Settings or a Context (whose engine is then used)."""
    settings = source if isinstance(source, Settings) else source.settings
    if settings.archive.kind == "none":
        return NoArchive()
    if engine is None:
        engine = _engine(source, settings)
    return RecordArchive(
        ArchiveClients(settings.archive),
        ArchiveStore(engine),
        communities=settings.archive.communities,
        progress=progress,
    )


def _engine(source: Settings | _HasSettings, settings: Settings) -> Engine:
    if not isinstance(source, Settings):
        return source.engine
    from publisher.db.engine import make_engine, upgrade

    engine = make_engine(settings.database.url)
    upgrade(engine)
    return engine
