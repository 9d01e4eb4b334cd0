"""The one pipeline: validate → reserve DOI → build → test → archive → deploy → bind → catalogue.

The CLI (``faaspub publish``), the CI jobs and the GitLab release workers all go through this class,
so no step lives only in YAML or only in the service. A failure at any stage discards the DOI draft
and leaves the previously live version untouched.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from publisher.backends.catalogue import Catalogue
from publisher.backends.naming import project_of
from publisher.catalogue.record import record_metadata
from publisher.citation.cff import Citation
from publisher.core.context import Context
from publisher.core.parts import Progress
from publisher.core.types import (
    Attestation,
    BuiltImage,
    FunctionSource,
    Release,
    Reservation,
    TestReport,
)
from publisher.db.engine import transaction
from publisher.errors import FaaspubError
from publisher.manifest.load import find_functions, git_tag_version, load_function
from publisher.manifest.problems import ProblemsError
from publisher.manifest.validate import validate_folder

if TYPE_CHECKING:
    from publisher.provenance.verify import Verification


@dataclass
class PublishResult:
    """What ``faaspub publish --json`` prints for each function."""

    function: str
    version: str
    image: str
    digest: str
    doi: str | None
    backend: str
    triggers: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "version": self.version,
            "image": self.image,
            "digest": self.digest,
            "doi": self.doi,
            "backend": self.backend,
            "triggers": self.triggers,
        }


def development_version(fn: FunctionSource) -> str:
    """A semver pre-release that sorts below any real release and names the commit (or the time)."""
    marker = fn.commit[:12] if fn.commit else datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    return f"0.0.0-dev.{marker}"


def build_labels(fn: FunctionSource, version: str, reservation: Reservation) -> dict[str, str]:
    """faaspub's own image labels; the builder adds the standard ``org.opencontainers.image.*`` ones."""
    labels = {
        "org.faaspub.function": fn.name,
        "org.faaspub.namespace": fn.namespace,
        "org.faaspub.version": version,
    }
    if reservation.doi:
        labels["org.faaspub.doi"] = reservation.doi
    if reservation.concept_doi:
        labels["org.faaspub.concept-doi"] = reservation.concept_doi
    return labels


class Pipeline:
    """Orchestrates the configured parts of a :class:`Context` (knative/func's client, in Python)."""

    def __init__(self, context: Context, progress: Progress | None = None) -> None:
        self.context = context
        self.progress = progress or (lambda _message: None)

    # -- the whole local pipeline -------------------------------------------------------------

    def publish(
        self,
        repo: Path,
        version: str | None = None,
        builder: str | None = None,
        junit: Path | None = None,
        prune: bool = True,
    ) -> list[PublishResult]:
        """Publish every function of the repository at ``repo``, then prune the ones it no longer holds."""
        folders = find_functions(Path(repo))
        if not folders:
            raise FaaspubError(f"no function.yaml in {repo} or its subfolders", hint="run faaspub init NAME")
        version = version or git_tag_version(Path(repo))
        functions = [self.load(folder) for folder in folders]
        results = [self.publish_function(fn, version, builder, junit) for fn in functions]
        if prune:
            self.prune(Path(repo), functions)
        return results

    def prune(self, repo: Path, functions: list[FunctionSource]) -> list[str]:
        """Remove what this repository published before and no longer holds (journey 6).

        Only a whole repository knows all its functions: publishing one function folder of a
        larger repository prunes nothing.
        """
        if any(fn.repo_root.resolve() != repo.resolve() for fn in functions):
            return []
        keep = sorted(fn.name for fn in functions)
        removed: list[str] = []
        for namespace, project in sorted({(fn.namespace, project_of(fn)) for fn in functions}):
            removed += self.context.backend.prune(namespace, project, keep)
        for name in removed:
            self.progress(f"{name}: no longer in the repository, removed")
        return removed

    def load(self, folder: Path) -> FunctionSource:
        """Validate a function folder and return it with its provenance."""
        manifest, _citation, problems = validate_folder(folder)
        if problems or manifest is None:
            raise ProblemsError(problems)
        return load_function(folder, namespace=self.context.settings.namespace, manifest=manifest)

    def publish_function(
        self,
        fn: FunctionSource,
        version: str | None = None,
        builder: str | None = None,
        junit: Path | None = None,
    ) -> PublishResult:
        version = version or development_version(fn)
        self.check_bindings(fn)
        self.progress(f"{fn.name} {version}: reserving DOI")
        reservation = self.reserve(fn, version)
        try:
            self.progress(f"{fn.name} {version}: building")
            image = self.build(fn, version, reservation, builder)
            release = Release(source=fn, version=version, image=image.ref, reservation=reservation)
            self.progress(f"{fn.name} {version}: attaching the SBOM and signed provenance")
            release.attestation = self.attest(release, image)
            self.progress(f"{fn.name} {version}: testing {image.ref.pinned}")
            release.test = self.test(fn, image, junit)
            self.progress(f"{fn.name} {version}: going live on the {self.context.backend.name} backend")
            with tempfile.TemporaryDirectory(prefix="faaspub-release-") as tmp:
                self.go_live(release, self.release_files(release, Path(tmp)))
        except BaseException as exc:
            self.fail(fn, version, exc)
            raise
        return PublishResult(
            function=fn.name,
            version=version,
            image=release.image.pinned,
            digest=release.image.digest,
            doi=release.reservation.doi,
            backend=self.context.backend.name,
            triggers=[t.model_dump(mode="json") for t in fn.manifest.storage_triggers()],
        )

    # -- stages (also called one by one by the GitLab release worker) ---------------------------

    def check_bindings(self, fn: FunctionSource) -> None:
        """Every storage path the function would touch (triggers and ``output``) is its namespace's."""
        from publisher.triggers.bindings import check_allowed, namespace_path

        check_allowed(fn.namespace, fn.manifest.storage_triggers(), self.context.settings)
        if fn.manifest.output:
            namespace_path(fn.namespace, fn.manifest.output, self.context.settings, "output", verb="bind")

    def reserve(self, fn: FunctionSource, version: str) -> Reservation:
        return self.context.archive.reserve(fn, version)

    def build(
        self, fn: FunctionSource, version: str, reservation: Reservation, builder: str | None = None
    ) -> BuiltImage:
        return self.context.builder(builder).build(
            fn, version, build_labels(fn, version, reservation), self.progress
        )

    def attest(self, release: Release, built: BuiltImage | None = None) -> Attestation:
        """Attach the SBOM and the signed provenance of ``release.image`` to it in its store.

        The SBOM is the builder's when it made one, else the one already attached (a CI build's),
        else one naming just the function and the image. The statement is signed with this
        installation's key when it has one (:mod:`publisher.provenance.keys`). Safe to repeat: the
        same release attaches the same bytes.
        """
        from publisher.oci.store import store_named
        from publisher.provenance.attest import attached, attest
        from publisher.provenance.facts import build_facts, located, source_of, subject_of
        from publisher.provenance.keys import load_signer
        from publisher.provenance.sbom import image_sbom

        name, repository = located(release.image)
        store = store_named(name, self.context.settings)
        digest, fn = release.image.digest, release.source
        document = built.sbom if built is not None else None
        if document is None:
            existing = attached(store, repository, digest).sboms
            subject = subject_of(fn, release.version, release.image.repository, digest)
            document = (
                existing[-1] if existing else image_sbom(subject, source_of(fn, release.version), None, [])
            )
        kind = built.builder if built is not None else ("gitlab-ci" if release.ci_job_url else "given")
        facts = build_facts(release, kind, built.base if built is not None else None)
        return attest(store, repository, facts, document, load_signer(self.context.settings))

    def verify(self, reference: str, expect_doi: str | None = None) -> Verification:
        """Check the attestations of the image ``reference`` against the configured verify key, and
        the DOI it names against the archive's record (``faaspub verify``)."""
        from publisher.oci.store import parse_reference, store_named
        from publisher.provenance.attest import attached
        from publisher.provenance.keys import load_verify_key
        from publisher.provenance.verify import verify

        ref = parse_reference(reference)
        store = store_named(ref.registry, self.context.settings)
        digest = ref.digest or store.resolve(ref.repository, ref.tag or "latest")
        return verify(
            attached(store, ref.repository, digest),
            digest,
            load_verify_key(self.context.settings),
            expect_doi=expect_doi,
            lookup=None if expect_doi else self.context.archive.released_digest,
        )

    def check_provenance(self, release: Release) -> Verification:
        """Verify the release's image (signature by the verify key, subject = its digest, DOI = the
        one reserved); with ``[provenance] require_signed`` an image that does not verify is refused,
        before any DOI is published or anything deployed. The outcome goes into the catalogue."""
        verification = self.verify(release.image.pinned, expect_doi=release.reservation.doi)
        if self.context.settings.provenance.require_signed and not verification.ok:
            raise FaaspubError(
                f"{release.name} {release.version}: image {release.image.digest} does not verify "
                f"({verification.reason}); [provenance] require_signed refuses to deploy it",
                hint="build and release it where the facility's signing key is configured",
            )
        return verification

    def test(self, fn: FunctionSource, image: BuiltImage, junit: Path | None = None) -> TestReport:
        report = self.context.tester.test(fn, image, junit)
        if not report.ok:
            detail = "; ".join(report.failures[:3]) or "see the JUnit report"
            raise FaaspubError(
                f"{fn.name}: tests failed ({report.failed} failed, {report.errors} errors): {detail}"
            )
        return report

    def go_live(self, release: Release, files: Mapping[str, Path]) -> Release:
        """Archive (publish the DOI), deploy, bind triggers and record the catalogue; safe to repeat.

        Deploy moves the alias; when binding or recording fails after that, the alias goes back to
        the version that was live before, so a failed release never leaves its version running.
        The SBOM and the signed provenance are attached first (when no earlier stage did) and
        archived with the record; ``require_signed`` is checked before the DOI is published.
        """
        if release.attestation is None:
            release.attestation = self.attest(release)
        checked = self.check_provenance(release)
        with tempfile.TemporaryDirectory(prefix="faaspub-attestation-") as tmp:
            archived = {**files, **attestation_files(release.attestation, Path(tmp))}
            release.reservation = self.context.archive.publish(release, archived)
        backend = self.context.backend
        previous = Catalogue(self.context.sessions).alias(release.namespace, release.name)
        backend.deploy(release)
        try:
            backend.bind(release, release.source.manifest.storage_triggers())
            with transaction(self.context.sessions) as session:
                record_metadata(session, release, citation_dict(release.source), checked.as_dict())
        except BaseException:
            self.restore_alias(release, previous)
            raise
        return release

    def restore_alias(self, release: Release, previous: str | None) -> None:
        """Point the alias back at ``previous`` (none: remove the function that never went live)."""
        if previous == release.version:
            return  # a repeated go_live: this version was already live before the failure
        backend = self.context.backend
        try:
            if previous is None:
                backend.undeploy(release.namespace, release.name)
            else:
                backend.rollback(release.namespace, release.name, previous)
        except Exception as exc:  # the release's own error is what the caller must see
            self.progress(f"{release.name}: could not restore version {previous} yet ({exc})")

    def fail(self, fn: FunctionSource, version: str, error: BaseException) -> None:
        """Discard the DOI draft of a failed release; the live version stays as it was."""
        self.progress(f"{fn.name} {version}: failed ({error}); discarding the DOI draft")
        try:
            self.context.archive.discard(fn, version)
        except FaaspubError as exc:
            self.progress(f"{fn.name} {version}: could not discard the draft yet ({exc}); it is retried")

    @staticmethod
    def release_files(release: Release, dest: Path) -> dict[str, Path]:
        """The files archived with a release: source tarball, release.json and CITATION.cff."""
        fn = release.source
        name = f"{fn.name}-{release.version}"
        source = dest / f"{name}.tar.gz"
        write_source_archive(fn, source, prefix=name)
        provenance = dest / "release.json"
        provenance.write_text(json.dumps(release.provenance(), indent=2, sort_keys=True), encoding="utf-8")
        files = {source.name: source, "release.json": provenance}
        if fn.citation_file.is_file():
            files["CITATION.cff"] = fn.citation_file
        return files


def attestation_files(attestation: Attestation, dest: Path) -> dict[str, Path]:
    """The SBOM and the signed provenance as files of the archive record."""
    files = {"sbom.cdx.json": attestation.sbom}
    if attestation.provenance is not None:
        files["provenance.dsse.json"] = attestation.provenance
    for name, content in files.items():
        (dest / name).write_bytes(content)
    return {name: dest / name for name in files}


def citation_dict(fn: FunctionSource) -> dict[str, Any]:
    from publisher.citation.cff import load_citation

    if not fn.citation_file.is_file():
        return {}
    citation: Citation = load_citation(fn.citation_file)
    return citation.model_dump(mode="json", exclude={"raw"})


def write_source_archive(fn: FunctionSource, dest: Path, prefix: str) -> None:
    """``git archive`` of the commit when the folder is in git; else a tarball of the folder."""
    if fn.commit:
        rel = fn.root.relative_to(fn.repo_root) if fn.root != fn.repo_root else Path(".")
        result = subprocess.run(
            [
                "git",
                "-C",
                str(fn.repo_root),
                "archive",
                "--format=tar.gz",
                f"--prefix={prefix}/",
                "-o",
                str(dest),
                fn.commit,
                "--",
                str(rel),
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode == 0:
            return
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(fn.root, arcname=prefix, filter=lambda info: None if "/.git" in info.name else info)
