"""Fixtures for the archive tests: a function folder, a migrated SQLite store, an archive factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine

from publisher.archive.invenio import InvenioClient
from publisher.archive.release import RecordArchive, ZenodoArchive
from publisher.archive.store import ArchiveStore
from publisher.archive.zenodo import ZenodoClient
from publisher.core.types import FunctionSource, ImageRef, Release, Reservation, TestReport
from publisher.db.engine import make_engine, upgrade
from publisher.manifest.model import Manifest
from tests.fakes.invenio_server import InvenioServer
from tests.fakes.zenodo_server import ZenodoServer

CITATION = """\
cff-version: 1.2.0
message: If you use this software, please cite it as below.
title: "Thumbnailer: thumbnails & previews"
abstract: Makes thumbnails of detector images.
authors:
  - family-names: Müller
    given-names: Jürgen
    name-particle: von
    orcid: https://orcid.org/0000-0002-1825-0097
    affiliation: European XFEL
  - family-names: Roe
    given-names: Rick
  - name: DESY FS-SC
license: MIT
keywords: [faas, thumbnails]
repository-code: https://gitlab.example.org/grp/thumbnailer
"""


def make_function(root: Path, citation: str | None = CITATION, namespace: str = "fs-sc") -> FunctionSource:
    root.mkdir(parents=True, exist_ok=True)
    (root / "main.py").write_text("def handle(event):\n    return event\n")
    if citation is not None:
        (root / "CITATION.cff").write_text(citation, encoding="utf-8")
    manifest = Manifest(name="thumbnailer", runtime="python:3.12", handler="main:handle")
    return FunctionSource(
        root=root,
        manifest=manifest,
        repo_root=root,
        namespace=namespace,
        commit="a" * 40,
        source_url="https://gitlab.example.org/grp/thumbnailer",
    )


class Crash(BaseException):
    """Stands for the process dying: no ``except Exception`` cleanup runs."""


# Every step the release flow announces (see RecordArchive._step); "metadata#2" is its second one.
CRASH_STEPS = ["create", "created", "metadata", "files", "publish", "published", "metadata#2"]


def release_version(
    archive: RecordArchive, fn: FunctionSource, version: str, tmp: Path
) -> tuple[Reservation, Reservation]:
    """What the pipeline does: reserve at the start, publish after build and tests."""
    reservation = archive.reserve(fn, version)
    release, files = make_release(fn, version, tmp)
    release.reservation = reservation
    return reservation, archive.publish(release, files)


def crash_then_resume(
    make: Callable[..., RecordArchive], fn: FunctionSource, tmp: Path, step: str, previous: bool
) -> tuple[Reservation, Reservation]:
    """Release 2.0.0 (after 1.0.0 when ``previous``), dying at ``step``; then release it again."""
    if previous:
        release_version(make(), fn, "1.0.0", tmp)
    name, _, nth = step.partition("#")
    seen: list[str] = []

    def crash_at(message: str) -> None:
        seen.append(message)
        if message == f"archive: {name}" and seen.count(message) == int(nth or 1):
            raise Crash(step)

    with pytest.raises(Crash):
        release_version(make(progress=crash_at), fn, "2.0.0", tmp)
    return release_version(make(), fn, "2.0.0", tmp)


def make_release(fn: FunctionSource, version: str, tmp: Path) -> tuple[Release, dict[str, Path]]:
    """A release with a built image, passed tests and a source archive, as the pipeline hands it over."""
    image = ImageRef("registry.example.org/fn/thumbnailer", version, "sha256:" + "b" * 64)
    release = Release(source=fn, version=version, image=image, test=TestReport(passed=3))
    source = tmp / f"thumbnailer-{version}.tar.gz"
    source.write_bytes(f"source of {version}".encode())
    return release, {source.name: source}


@pytest.fixture
def fn(tmp_path: Path) -> FunctionSource:
    return make_function(tmp_path / "fn")


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    upgrade(engine)
    return engine


ArchiveFactory = Callable[..., ZenodoArchive]


@pytest.fixture
def make_archive(zenodo_server: ZenodoServer, engine: Engine) -> ArchiveFactory:
    """A fresh archive (as a new process would make) on the same server and database."""

    def factory(progress: Callable[[str], None] | None = None, **client_options: object) -> ZenodoArchive:
        options: dict[str, object] = {"timeout": 5.0, "publish_timeout": 5.0, "sleep": lambda s: None}
        options.update(client_options)
        client = ZenodoClient(zenodo_server.url, zenodo_server.token, **options)  # type: ignore[arg-type]
        return ZenodoArchive(
            lambda namespace: client,
            ArchiveStore(engine),
            communities=["faaspub-functions"],
            progress=progress,
            today=lambda: date(2026, 5, 19),
        )

    return factory


@pytest.fixture
def invenio_server() -> Iterator[InvenioServer]:
    """A running InvenioRDM test server; tweak ``.fake`` per test."""
    with InvenioServer() as server:
        yield server


@pytest.fixture
def make_invenio(invenio_server: InvenioServer, engine: Engine) -> Callable[..., RecordArchive]:
    """A fresh InvenioRDM archive (as a new process would make) on the same server and database."""

    def factory(progress: Callable[[str], None] | None = None, **client_options: object) -> RecordArchive:
        options: dict[str, object] = {"timeout": 5.0, "publish_timeout": 5.0, "sleep": lambda s: None}
        options.update(client_options)
        client = InvenioClient(invenio_server.url, invenio_server.token, **options)
        return RecordArchive(
            lambda namespace: client, ArchiveStore(engine), progress=progress, today=lambda: date(2026, 5, 19)
        )

    return factory
