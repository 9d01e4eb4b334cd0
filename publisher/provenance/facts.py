"""What the SBOM and the statement say about a function image, taken from the pipeline's data."""

from __future__ import annotations

from publisher.build.inputs import citation_license, created
from publisher.core.types import FunctionSource, ImageRef, Release
from publisher.provenance.sbom import Source, Subject
from publisher.provenance.statement import BuildFacts


def source_of(fn: FunctionSource, version: str) -> Source:
    license_ = citation_license(fn)
    return Source(fn.name, version, fn.commit, fn.source_url, (license_,) if license_ else ())


def subject_of(fn: FunctionSource, version: str, repository: str, digest: str) -> Subject:
    license_ = citation_license(fn)
    return Subject(
        repository,
        version,
        digest,
        created(fn),
        description=fn.manifest.description,
        licenses=(license_,) if license_ else (),
    )


def build_facts(release: Release, builder: str, base: str | None = None) -> BuildFacts:
    fn, image = release.source, release.image
    return BuildFacts(
        image=image.repository,
        digest=image.digest,
        function=fn.name,
        namespace=fn.namespace,
        version=release.version,
        builder=builder,
        source_url=fn.source_url,
        commit=fn.commit,
        ci_job_url=release.ci_job_url,
        doi=release.reservation.doi,
        concept_doi=release.reservation.concept_doi,
        base=base,
    )


def located(image: ImageRef) -> tuple[str, str]:
    """``(store name, repository path)`` of an image reference (``host:port`` or ``oci:DIR``)."""
    if image.repository.startswith("oci:"):
        root, _, path = image.repository[4:].rpartition(":")
        return f"oci:{root}", path
    host, _, path = image.repository.partition("/")
    return host, path
