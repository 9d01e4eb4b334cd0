"""Plain data passed between the pipeline stages and its pluggable parts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from publisher.manifest.model import Manifest

ActivationStatus = Literal[
    "success", "application_error", "developer_error", "system_error", "timeout", "pending"
]


@dataclass(frozen=True)
class FunctionSource:
    """A validated function folder and where it came from."""

    root: Path
    manifest: Manifest
    repo_root: Path
    namespace: str = "local"
    commit: str | None = None
    commit_time: datetime | None = None
    source_url: str | None = None
    project_id: int | None = None

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def citation_file(self) -> Path:
        """The CITATION.cff that describes this function (its own or the repository's)."""
        from publisher.citation.cff import find_citation

        return find_citation(self.root, self.manifest.citation)


@dataclass(frozen=True)
class ImageRef:
    """An image in a registry (``host:port/repo``) or in a local OCI layout (``oci:DIR:repo``)."""

    repository: str
    tag: str
    digest: str = ""

    @property
    def tagged(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def pinned(self) -> str:
        """``REPO:TAG@sha256:…``: the tag is unique to the digest (OpenWhisk pulls by tag)."""
        return f"{self.repository}:{self.tag}@{self.digest}" if self.digest else self.tagged


@dataclass(frozen=True)
class BuiltImage:
    ref: ImageRef
    size: int
    builder: str
    layers: int = 0
    layers_reused: int = 0
    test_ref: ImageRef | None = None
    sbom: bytes | None = field(default=None, repr=False)  # CycloneDX JSON of what the builder assembled
    base: str | None = None  # "repository@sha256:…" of the runtime base it was built on


@dataclass
class TestReport:
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    junit_path: Path | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.errors == 0

    def summary(self) -> dict[str, int]:
        return {"passed": self.passed, "failed": self.failed, "errors": self.errors, "skipped": self.skipped}

    def summary_line(self) -> str:
        return ", ".join(f"{n} {what}" for what, n in self.summary().items())

    def failed_names(self, limit: int = 3) -> str:
        """The first line of the first ``limit`` failures (``suite: test: message``), on one line."""
        if not self.failures:
            return "see the JUnit report"
        shown = "; ".join(f.splitlines()[0] for f in self.failures[:limit])
        more = len(self.failures) - limit
        return shown + (f" (and {more} more)" if more > 0 else "")


@dataclass(frozen=True)
class Reservation:
    """A DOI reserved for a release before anything is published (``doi`` is None without archive)."""

    doi: str | None = None
    concept_doi: str | None = None
    record_id: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class Attestation:
    """What is attached to an image: its SBOM and its signed provenance (a DSSE envelope)."""

    sbom: bytes = field(repr=False)
    provenance: bytes | None = field(default=None, repr=False)  # None: no signing key here
    key_id: str | None = None


@dataclass
class Release:
    """One version of one function, as it goes live."""

    source: FunctionSource
    version: str
    image: ImageRef
    reservation: Reservation = field(default_factory=Reservation)
    test: TestReport | None = None
    ci_job_url: str | None = None  # the CI job that built the image, when one did
    attestation: Attestation | None = None

    @property
    def name(self) -> str:
        return self.source.manifest.name

    @property
    def namespace(self) -> str:
        return self.source.namespace

    def provenance(self) -> dict[str, Any]:
        """What ``release.json`` holds and what annotations carry."""
        return {
            "function": self.name,
            "namespace": self.namespace,
            "version": self.version,
            "commit": self.source.commit,
            "source": self.source.source_url,
            "image": self.image.pinned,
            "digest": self.image.digest,
            "runtime": self.source.manifest.runtime,
            "doi": self.reservation.doi,
            "concept_doi": self.reservation.concept_doi,
            "tests": self.test.summary() if self.test else None,
            "ci_job_url": self.ci_job_url,
        }


@dataclass
class Activation:
    """One run of a function version."""

    id: str
    function: str
    version: str
    digest: str
    start: datetime
    duration_ms: float
    status: ActivationStatus
    result: Any = None
    logs: list[str] = field(default_factory=list)
    cause: str | None = None
    memory_mb: int | None = None  # the version's memory limit (accounting: GB-seconds)
    bytes_read: int | None = None  # the size of the storage event's file, when a file triggered it

    @property
    def ok(self) -> bool:
        return self.status == "success"


@dataclass(frozen=True)
class StorageEvent:
    """A storage change, normalised from inotify, dCache SSE or S3 notifications."""

    source: Literal["local", "dcache", "s3"]
    path: str
    kind: Literal["created", "deleted"]
    time: datetime
    size: int | None = None
    checksum: str | None = None
    event_id: str | None = None
    url: str | None = None

    def key(self) -> str:
        """Identity for the idempotency ledger: the same file state gives the same key."""
        marker = self.checksum or self.event_id or (str(self.size) if self.size is not None else "")
        return f"{self.source}:{self.kind}:{self.path}:{marker}"
