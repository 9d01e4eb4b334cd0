"""Attach an image's SBOM and signed provenance to it in its store, and find them again.

Both are OCI artifacts referring to the image (:mod:`publisher.oci.referrers`): the SBOM as
``application/vnd.cyclonedx+json``, the provenance as a DSSE envelope
(``application/vnd.dsse.envelope.v1+json``, annotated with its in-toto predicate type).
"""

from __future__ import annotations

from dataclasses import dataclass

from securesystemslib.signer import Signer

from publisher.core.types import Attestation
from publisher.errors import FaaspubError
from publisher.oci import referrers
from publisher.oci.store import ImageStore
from publisher.provenance import envelope, sbom
from publisher.provenance.statement import PREDICATE_TYPE, BuildFacts, statement

PREDICATE_ANNOTATION = "in-toto.io/predicate-type"


@dataclass(frozen=True)
class Attached:
    """What the store holds for one image: SBOM documents and provenance envelopes, oldest first."""

    sboms: list[bytes]
    envelopes: list[bytes]


def attach_sbom(store: ImageStore, repository: str, digest: str, document: bytes) -> None:
    """Validate ``document`` against CycloneDX 1.6 and attach it to the image ``digest``."""
    sbom.validate(document)
    referrers.attach(store, repository, digest, [referrers.Artifact(sbom.MEDIA_TYPE, document)])


def attest(
    store: ImageStore, repository: str, facts: BuildFacts, document: bytes, signer: Signer | None
) -> Attestation:
    """Attach ``document`` (the SBOM, validated) and, with a signer, the signed statement of ``facts``."""
    sbom.validate(document)
    artifacts = [referrers.Artifact(sbom.MEDIA_TYPE, document)]
    signed = envelope.sign(statement(facts), signer) if signer is not None else None
    if signed is not None:
        annotations = {PREDICATE_ANNOTATION: PREDICATE_TYPE}
        artifacts.append(referrers.Artifact(envelope.MEDIA_TYPE, signed, annotations))
    referrers.attach(store, repository, facts.digest, artifacts)
    key_id = signer.public_key.keyid if signer is not None else None
    return Attestation(sbom=document, provenance=signed, key_id=key_id)


def attached(store: ImageStore, repository: str, digest: str) -> Attached:
    """Every SBOM and provenance envelope referring to ``digest`` (unreadable ones are skipped)."""
    sboms: list[bytes] = []
    envelopes: list[bytes] = []
    for found in referrers.referrers(store, repository, digest):
        if found.artifact_type not in (sbom.MEDIA_TYPE, envelope.MEDIA_TYPE):
            continue
        try:
            content = referrers.read(store, repository, found, digest)
        except FaaspubError:
            continue  # an artifact that claims this subject but does not refer to it proves nothing
        (sboms if found.artifact_type == sbom.MEDIA_TYPE else envelopes).append(content)
    return Attached(sboms, envelopes)
