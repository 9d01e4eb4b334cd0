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
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from publisher.backends.catalogue import Catalogue
from publisher.backends.naming import project_of
from publisher.catalogue.record import record_metadata
from publisher.citation.cff import Citation
from publisher.core.context import Context
from publisher.core.parts import Progress, Tester
from publisher.core.types import (
    Activation,
    Attestation,
    BuiltImage,
    FunctionSource,
    ImageRef,
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


@dataclass
class DevRound:
    """One round of ``faaspub dev``: the version tried, its tests, and whether it went live."""

    function: str
    version: str
    report: TestReport
    previous: str | None  # the version live before this round
    started: float = field(repr=False)
    live: bool = False
    error: str | None = None
    given: dict[str, Any] | None = None  # the input of the first invoke of the new version
    result: Any = None
    seconds: float = 0.0

    def failed(self, error: str) -> DevRound:
        self.error = error
        return self.finished()

    def finished(self) -> DevRound:
        self.seconds = time.monotonic() - self.started
        return self

    def as_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "version": self.version,
            "live": self.live,
            "live_version": self.version if self.live else self.previous,
            "tests": self.report.summary(),
            "failures": self.report.failures,
            "error": self.error,
            "input": self.given,
            "result": self.result,
            "seconds": round(self.seconds, 3),
        }


def dev_version() -> str:
    """A development version unique to the moment (``faaspub dev`` makes one per save)."""
    now = datetime.now(UTC)
    return f"0.0.0-dev.{now:%Y%m%d%H%M%S}.{now.microsecond // 1000}"


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

    def prepare_base(self, fn: FunctionSource) -> None:
        """Build the runtime base ``fn`` needs from Debian packages if the store lacks it (first use)."""
        python = fn.manifest.python_version
        if python is not None:  # runtime: docker builds FROM the function's own Dockerfile
            from publisher.runtime.base import ensure_base

            ensure_base(self.context.settings, python, self.progress)

    def build(
        self,
        fn: FunctionSource,
        version: str,
        reservation: Reservation,
        builder: str | None = None,
        push: bool = True,
    ) -> BuiltImage:
        self.prepare_base(fn)
        return self.context.builder(builder, push=push).build(
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

    def given_image(self, fn: FunctionSource, reference: str) -> BuiltImage:
        """The image ``reference`` names (any form faaspub prints), with the test image built for it.

        Without one in the store, the function's tests are appended to the image now, so its suite
        always runs; when even that is impossible the error says the suite could not be run.
        """
        from publisher.build.native import NativeBuilder
        from publisher.build.testimage import find_test_image, shipped_tag
        from publisher.oci.engine import image_source
        from publisher.oci.store import parse_reference
        from publisher.oci.transfer import fetch_image

        ref = parse_reference(reference)
        store, repository, _ = image_source(self.context.settings, reference)
        shipped = fetch_image(store, repository, ref.ref)
        if ref.digest and shipped.digest != ref.digest:
            raise FaaspubError(f"image {reference}: the store holds {shipped.digest} under that reference")
        name = store.reference(repository)
        image = ImageRef(name, shipped_tag(store.tags(repository), shipped.digest, ref.tag), shipped.digest)
        test_tag = find_test_image(store, repository, shipped, ref.tag)
        if test_tag is not None:
            test_ref = ImageRef(name, test_tag, store.resolve(repository, test_tag))
        else:
            self.progress(f"no test image belongs to {image.pinned}; adding the tests of {fn.root} to it")
            version = shipped.config.labels.get("org.opencontainers.image.version") or "given"
            try:
                test_ref = NativeBuilder(self.context.settings, store).push_test_image(
                    fn, version, image, build_labels(fn, version, Reservation()), self.progress, repository
                )
            except FaaspubError as exc:
                raise FaaspubError(f"{fn.name}: the test suite could not be run: {exc}") from None
        return BuiltImage(image, shipped.size, "given", len(shipped.manifest.layers), test_ref=test_ref)

    def run_tests(self, fn: FunctionSource, image: BuiltImage, junit: Path | None = None) -> TestReport:
        """The function's pytest suite and the protocol smoke test in ``image``: the report, pass or fail."""
        return self.context.tester.test(fn, image, junit)

    def test(self, fn: FunctionSource, image: BuiltImage, junit: Path | None = None) -> TestReport:
        """:meth:`run_tests`, raising (with the failing tests named) unless everything passed."""
        report = self.run_tests(fn, image, junit)
        if not report.ok:
            raise FaaspubError(f"{fn.name}: tests failed ({report.summary_line()}): {report.failed_names()}")
        return report

    def go_live(self, release: Release, files: Mapping[str, Path]) -> Release:
        """Archive (publish the DOI), then :meth:`deploy`; safe to repeat.

        The SBOM and the signed provenance are attached first (when no earlier stage did) and
        archived with the record; ``require_signed`` is checked before the DOI is published.
        """
        if release.attestation is None:
            release.attestation = self.attest(release)
        checked = self.check_provenance(release)
        with tempfile.TemporaryDirectory(prefix="faaspub-attestation-") as tmp:
            archived = {**files, **attestation_files(release.attestation, Path(tmp))}
            release.reservation = self.context.archive.publish(release, archived)
        return self.deploy(release, checked.as_dict())

    def deploy(self, release: Release, provenance: dict[str, Any] | None = None) -> Release:
        """Deploy, bind triggers and record the catalogue (with the provenance check); safe to repeat.

        Deploy moves the alias; when binding or recording fails after that, the alias goes back to
        the version that was live before, so a failed release never leaves its version running.
        """
        previous = Catalogue(self.context.sessions).alias(release.namespace, release.name)
        self.context.backend.deploy(release)
        self._bind_and_record(release, previous, provenance)
        return release

    def promote(self, release: Release, previous: str | None) -> None:
        """Point the alias at a staged version (``deploy(release, alias=False)``), bind and record it."""
        self.context.backend.rollback(release.namespace, release.name, release.version)
        self._bind_and_record(release, previous)

    def _bind_and_record(
        self, release: Release, previous: str | None, provenance: dict[str, Any] | None = None
    ) -> None:
        try:
            self.context.backend.bind(release, release.source.manifest.storage_triggers())
            with transaction(self.context.sessions) as session:
                record_metadata(session, release, citation_dict(release.source), provenance)
        except BaseException:
            self.restore_alias(release, previous)
            raise

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

    # -- faaspub dev: one round per save ---------------------------------------------------------

    def develop(self, folder: Path, tester: Tester) -> DevRound:
        """Build, test (``tester`` keeps its runner warm) and, when all passed, put a development
        version live; a failure leaves the live version as it was. Nothing is archived.

        The new version starts as ``NAME@VERSION`` and answers its first example while its tests
        run (both take about as long); only then does ``NAME`` move to it.
        """
        started = time.monotonic()
        fn = self.load(folder)
        version = dev_version()
        self.check_bindings(fn)
        self.progress(f"{fn.name} {version}: building")
        image = self.build(fn, version, Reservation())
        release = Release(source=fn, version=version, image=image.ref)
        previous = Catalogue(self.context.sessions).alias(fn.namespace, fn.name)
        given = fn.manifest.examples[0].input if fn.manifest.examples else {}
        done = DevRound(fn.name, version, TestReport(), previous, started, given=given)
        self.progress(f"{fn.name} {version}: testing and starting")
        with ThreadPoolExecutor(1, thread_name_prefix="dev-stage") as pool:
            staged = pool.submit(self._stage, release, given)
            try:
                done.report = tester.test(fn, image)
                activation = staged.result()
            except BaseException:
                self._unstage(release, staged)
                raise
        if not done.report.ok:
            self._unstage(release, staged)
            return done.failed(f"tests failed ({done.report.summary_line()}): {done.report.failed_names()}")
        if activation.status != "success":
            self._unstage(release, staged)
            return done.failed(f"invoking {version} ended with {activation.status}: {activation.result}")
        release.test = done.report
        self.promote(release, previous)
        done.result, done.live = activation.result, True
        return done.finished()

    def _stage(self, release: Release, given: dict[str, Any]) -> Activation:
        self.context.backend.deploy(release, alias=False)
        return self.context.backend.invoke(
            release.namespace, release.name, given, version=release.version, cause="dev"
        )

    def _unstage(self, release: Release, staged: Future[Activation]) -> None:
        """Remove a staged version that will not go live (once its start has finished either way)."""
        wait([staged])
        try:
            self.context.backend.undeploy(release.namespace, release.name, release.version)
        except FaaspubError as exc:
            self.progress(f"{release.name}: could not remove {release.version} ({exc})")

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
