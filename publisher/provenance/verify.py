"""Check an image's attestations: SBOM present and valid, provenance signed by the facility's key,
its subject the image's digest, and its DOI the one the archive record lists for that digest.

Each check gives a one-line detail, so ``faaspub verify`` and a refused deploy name the reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from securesystemslib.signer import Key

from publisher.errors import FaaspubError
from publisher.provenance import envelope, sbom
from publisher.provenance.attest import Attached
from publisher.provenance.statement import parameters, parse, subject_digests

# (namespace, DOI) -> the image digest the published archive record lists (None: no such record).
DoiLookup = Callable[[str, str], str | None]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Verification:
    """The outcome of every check for one image digest."""

    digest: str
    checks: list[Check] = field(default_factory=list)
    key_id: str | None = None
    statement: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def reason(self) -> str:
        return "; ".join(f"{c.name}: {c.detail}" for c in self.checks if not c.ok)

    @property
    def doi(self) -> str | None:
        value = parameters(self.statement).get("doi") if self.statement else None
        return str(value) if value else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "verified": self.ok,
            "key_id": self.key_id,
            "doi": self.doi,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
        }


def verify(
    found: Attached,
    digest: str,
    key: Key | None,
    *,
    expect_doi: str | None = None,
    lookup: DoiLookup | None = None,
) -> Verification:
    """Run every check; ``expect_doi`` (a release's reserved DOI) and ``lookup`` are optional."""
    result = Verification(digest)
    result.checks.append(_sbom_check(found.sboms, digest))
    if key is None:
        result.checks.append(
            Check("signature", False, "no verify key configured ([provenance] verify_key_file)")
        )
        return result
    statements, failure = _verified(found.envelopes, key)
    if not statements:
        result.checks.append(Check("signature", False, failure))
        return result
    result.key_id = key.keyid
    result.checks.append(Check("signature", True, f"signed by key {key.keyid[:16]}"))
    matching = [s for s in statements if digest in subject_digests(s)]
    if not matching:
        named = ", ".join(sorted({d for s in statements for d in subject_digests(s)}))
        result.checks.append(Check("subject", False, f"the signed statement is about {named}, not {digest}"))
        return result
    result.checks.append(Check("subject", True, f"the signed statement names {digest}"))
    chosen = _choose(matching, expect_doi)
    result.statement = chosen
    result.checks.append(_doi_check(chosen, digest, expect_doi, lookup))
    return result


def _sbom_check(documents: list[bytes], digest: str) -> Check:
    if not documents:
        return Check("sbom", False, "no SBOM attached to the image")
    document = documents[-1]
    try:
        sbom.validate(document)
    except FaaspubError as exc:
        return Check("sbom", False, exc.message)
    hashes = json.loads(document).get("metadata", {}).get("component", {}).get("hashes") or []
    if not any(f"sha256:{h.get('content')}" == digest for h in hashes):
        return Check("sbom", False, f"the SBOM describes another image, not {digest}")
    return Check("sbom", True, f"CycloneDX 1.6, {len(sbom.components_of(document))} components")


def _verified(envelopes: list[bytes], key: Key) -> tuple[list[dict[str, Any]], str]:
    """The statements whose envelope verifies with ``key``, and why the first other one did not."""
    if not envelopes:
        return [], "no signed provenance attached to the image"
    statements: list[dict[str, Any]] = []
    failure = ""
    for data in envelopes:
        try:
            statements.append(parse(envelope.verify(data, key)))
        except FaaspubError as exc:
            failure = failure or exc.message
    return statements, failure


def _choose(statements: list[dict[str, Any]], expect_doi: str | None) -> dict[str, Any]:
    """The statement naming the expected DOI, else the newest one naming any DOI, else the newest."""
    for wanted in [expect_doi] if expect_doi else []:
        for doc in reversed(statements):
            if parameters(doc).get("doi") == wanted:
                return doc
    with_doi = [doc for doc in statements if parameters(doc).get("doi")]
    return (with_doi or statements)[-1]


def _doi_check(doc: dict[str, Any], digest: str, expect_doi: str | None, lookup: DoiLookup | None) -> Check:
    params = parameters(doc)
    doi = params.get("doi")
    if expect_doi and doi != expect_doi:
        return Check(
            "doi", False, f"the provenance names DOI {doi or '(none)'}, the release reserved {expect_doi}"
        )
    if not doi:
        return Check("doi", True, "no DOI (not archived)")
    if lookup is None:
        return Check("doi", True, f"names DOI {doi}")
    try:
        listed = lookup(str(params.get("namespace", "")), str(doi))
    except FaaspubError as exc:
        return Check("doi", False, f"cannot read the record of DOI {doi}: {exc.message}")
    if listed is None:
        return Check("doi", False, f"no published record with DOI {doi} lists an image")
    if listed != digest:
        return Check("doi", False, f"the record of DOI {doi} lists image {listed}, not {digest}")
    return Check("doi", True, f"the record of DOI {doi} lists this digest")
