"""Build provenance as an in-toto v1 Statement with a SLSA provenance v1 predicate.

Made with the in-toto attestation library's own types (``in_toto_attestation``): the subject is the
image's manifest digest; the predicate names the build type, the function, version and DOI
(``externalParameters``), the source repository at its commit and the runtime base
(``resolvedDependencies``), the builder and, where the image was built in CI, the job URL
(``runDetails.metadata.invocationId``). The statement carries no clock time, so signing the same
release twice gives the same bytes (Ed25519 signatures are deterministic too).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
from in_toto_attestation.v1.statement import Statement

from publisher import __version__
from publisher.errors import FaaspubError

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
# What "a faaspub function image build" means: the externalParameters below (docs/provenance.md).
BUILD_TYPE = "urn:faaspub:build-type:function-image:v1"


@dataclass(frozen=True)
class BuildFacts:
    """What a statement asserts about one image."""

    image: str  # repository the image lives in
    digest: str  # sha256:… of its manifest
    function: str
    namespace: str
    version: str
    builder: str  # native | buildah | kaniko | given (built elsewhere)
    source_url: str | None = None
    commit: str | None = None
    ci_job_url: str | None = None
    doi: str | None = None
    concept_doi: str | None = None
    base: str | None = None  # "repository@sha256:…" of the runtime base


def statement(facts: BuildFacts) -> bytes:
    """The statement's JSON bytes (the DSSE payload), checked by the library's own validator."""
    algorithm, _, hexdigest = facts.digest.partition(":")
    if algorithm != "sha256" or len(hexdigest) != 64:
        raise FaaspubError(f"cannot attest {facts.image}: {facts.digest!r} is not a sha256 digest")
    predicate = provenance_pb2.Provenance()
    definition = predicate.build_definition
    definition.build_type = BUILD_TYPE
    parameters = {
        "function": facts.function,
        "namespace": facts.namespace,
        "version": facts.version,
        "builder": facts.builder,
        "doi": facts.doi,
        "conceptDoi": facts.concept_doi,
    }
    definition.external_parameters.update({k: v for k, v in parameters.items() if v})
    if facts.source_url or facts.commit:
        source = ResourceDescriptor(
            uri=_git_uri(facts.source_url) if facts.source_url else "",
            name="" if facts.source_url else facts.function,
            digest={"gitCommit": facts.commit} if facts.commit else None,
        )
        definition.resolved_dependencies.append(source.pb)
    if facts.base:
        name, _, digest = facts.base.partition("@")
        base = ResourceDescriptor(
            name=name, digest={"sha256": digest.removeprefix("sha256:")} if digest else None
        )
        definition.resolved_dependencies.append(base.pb)
    run = predicate.run_details
    run.builder.id = f"urn:faaspub:builder:{facts.builder}"
    run.builder.version["faaspub"] = __version__
    if facts.ci_job_url:
        run.metadata.invocation_id = facts.ci_job_url
    subject = ResourceDescriptor(name=facts.image, digest={"sha256": hexdigest})
    document = Statement([subject.pb], PREDICATE_TYPE, json_format.MessageToDict(predicate))
    document.validate()
    return json.dumps(json_format.MessageToDict(document.pb), sort_keys=True, separators=(",", ":")).encode()


def parse(payload: bytes) -> dict[str, Any]:
    """A statement's JSON, checked with the library's validator and required to be SLSA provenance."""
    try:
        doc = json.loads(payload)
        document = Statement.copy_from_pb(json_format.ParseDict(doc, Statement([], "", {}).pb))
        document.validate()
    except (ValueError, json_format.ParseError) as exc:
        raise FaaspubError(f"provenance statement is malformed: {exc}") from None
    if doc.get("predicateType") != PREDICATE_TYPE:
        raise FaaspubError(f"provenance statement has predicate type {doc.get('predicateType')!r}")
    result: dict[str, Any] = doc
    return result


def subject_digests(doc: dict[str, Any]) -> list[str]:
    return [
        f"sha256:{s['digest']['sha256']}" for s in doc.get("subject", []) if "sha256" in s.get("digest", {})
    ]


def parameters(doc: dict[str, Any]) -> dict[str, Any]:
    """``externalParameters``: function, namespace, version, builder, doi, conceptDoi."""
    definition = doc.get("predicate", {}).get("buildDefinition", {})
    return dict(definition.get("externalParameters") or {})


def _git_uri(url: str) -> str:
    """SLSA names sources as ``git+https://…`` (the SPDX download-location form)."""
    return url if url.startswith("git+") else f"git+{url}"
