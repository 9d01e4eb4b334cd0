"""What every entry point (CLI, service, workers) shares: settings, database, and the configured parts.

Parts are created on first use from configuration, so a command that only validates never opens a
container engine or a network connection.
"""

from __future__ import annotations

import importlib
from functools import cached_property
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from publisher.config import Settings, load_settings
from publisher.core.parts import Archive, Backend, Builder, Tester
from publisher.db.engine import make_engine, session_factory, upgrade
from publisher.errors import FaaspubError

# kind -> "module:factory"; each factory takes the Settings (and the context where it needs the database).
BUILDERS = {
    "native": "publisher.build.native:NativeBuilder",
    "buildah": "publisher.build.buildah:BuildahBuilder",
    "kaniko": "publisher.build.kaniko:KanikoBuilder",
}
BACKENDS = {
    "local": "publisher.backends.local:LocalBackend",
    "openwhisk": "publisher.backends.openwhisk:OpenWhiskBackend",
}
ARCHIVES = {
    "none": "publisher.archive:get_archive",
    "zenodo": "publisher.archive:get_archive",
    "invenio-rdm": "publisher.archive:get_archive",
}


def load_object(spec: str) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


class Context:
    """Settings plus lazily created database and parts."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()

    @classmethod
    def from_config(cls, config_file: str | None = None) -> Context:
        return cls(load_settings(config_file))

    @cached_property
    def engine(self) -> Engine:
        engine = make_engine(self.settings.database.url)
        upgrade(engine)
        return engine

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return session_factory(self.engine)

    def builder(self, kind: str | None = None, push: bool = True) -> Builder:
        kind = kind or self.settings.build.builder
        if kind not in BUILDERS:
            raise FaaspubError(f"unknown builder {kind!r}", hint=f"one of {', '.join(sorted(BUILDERS))}")
        builder: Builder = load_object(BUILDERS[kind])(self.settings, push=push)
        return builder

    @cached_property
    def tester(self) -> Tester:
        tester: Tester = load_object("publisher.tester.container:ContainerTester")(self.settings)
        return tester

    @cached_property
    def backend(self) -> Backend:
        backend: Backend = load_object(BACKENDS[self.settings.backend.kind])(self)
        return backend

    @cached_property
    def archive(self) -> Archive:
        archive: Archive = load_object(ARCHIVES[self.settings.archive.kind])(self)
        return archive
