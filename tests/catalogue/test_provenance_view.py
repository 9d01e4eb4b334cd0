"""The catalogue shows what was attested: live digest and DOI in the API, a description from
CITATION.cff when the manifest has none, and a version page with SBOM, provenance and exports."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from publisher.catalogue.record import record_metadata, record_release
from publisher.core.pipeline import citation_dict
from publisher.core.types import Attestation
from publisher.db.engine import transaction
from publisher.manifest.load import load_function
from publisher.provenance import sbom
from tests.catalogue.conftest import HELLO, Seeded, release_of

KEY_ID = "7311ede127cb97a9" + "0" * 48


def check(verified: bool, doi: str | None) -> dict[str, Any]:
    checks = [
        {"name": "sbom", "ok": True, "detail": "CycloneDX 1.6, 2 components"},
        {
            "name": "signature",
            "ok": verified,
            "detail": "signed by key 7311ede127cb97a9"
            if verified
            else "no signed provenance attached to the image",
        },
    ]
    return {
        "digest": "",
        "verified": verified,
        "key_id": KEY_ID if verified else None,
        "doi": doi,
        "checks": checks,
    }


def attested(seeded: Seeded, tmp_path: Path, *, verified: bool, describe: bool = True) -> str:
    """Release a copy of examples/hello 2.0.0 with an SBOM and a provenance check; returns its name."""
    source = load_function(HELLO, "local")
    if not describe:
        source = replace(source, manifest=source.manifest.model_copy(update={"description": None}))
    release = release_of(source, "2.0.0", "10.5281/zenodo.1003")
    subject = sbom.Subject(
        release.image.repository, "2.0.0", release.image.digest, datetime(2026, 1, 1, tzinfo=UTC)
    )
    document = sbom.image_sbom(
        subject,
        sbom.Source("hello", "2.0.0", "a" * 40, "https://gitlab.example.org/fs/hello", ("MIT",)),
        sbom.BaseImage(
            "127.0.0.1:5000/faaspub/python-base",
            "3.11",
            "sha256:" + "b" * 64,
            (sbom.Package("deb", "libc6", "2.36-9", ("GPL-2+", "LGPL-2.1")),),
        ),
        [sbom.Package("pypi", "numpy", "2.1.0", ("BSD-3-Clause",))],
    )
    release.attestation = Attestation(sbom=document)
    with transaction(seeded.context.sessions) as session:
        record_release(session, release, citation_dict(source))
        record_metadata(session, release, citation_dict(source), check(verified, release.reservation.doi))
    return release.image.digest


def test_functions_carry_the_live_digest_and_doi(client: TestClient, seeded: Seeded, tmp_path: Path) -> None:
    digest = attested(seeded, tmp_path, verified=True)
    listing = client.get("/api/v1/functions").json()["items"]
    hello = next(f for f in listing if f["name"] == "hello")
    assert hello["digest"] == digest and hello["doi"] == "10.5281/zenodo.1003"
    assert hello["image"].endswith(f"@{digest}") and hello["alias_version"] == "2.0.0"
    detail = client.get("/api/v1/functions/hello").json()
    assert (detail["digest"], detail["doi"]) == (digest, "10.5281/zenodo.1003")
    versions = client.get("/api/v1/functions/hello/versions").json()["items"]
    current = next(v for v in versions if v["version"] == "2.0.0")
    assert current["provenance"] == {
        "verified": True,
        "key_id": KEY_ID,
        "doi": "10.5281/zenodo.1003",
        "reason": None,
    }
    assert current["sbom_components"] == 4  # the function, numpy, the base image and libc6
    older = next(v for v in versions if v["version"] == "1.0.0")
    assert older["provenance"] is None and older["sbom_components"] is None


def test_a_function_without_description_shows_its_citation_abstract(
    client: TestClient, seeded: Seeded, tmp_path: Path
) -> None:
    attested(seeded, tmp_path, verified=True, describe=False)
    citation = citation_dict(load_function(HELLO, "local"))
    expected = citation.get("abstract") or citation["title"]
    hello = next(f for f in client.get("/api/v1/functions").json()["items"] if f["name"] == "hello")
    assert hello["description"] == expected
    assert client.get("/api/v1/functions/hello").json()["description"] == expected
    assert client.get("/api/v1/functions", params={"q": "hello"}).status_code == 200


def test_version_page_shows_sbom_provenance_and_exports(
    client: TestClient, seeded: Seeded, tmp_path: Path
) -> None:
    attested(seeded, tmp_path, verified=True)
    page = client.get("/functions/local/hello/versions/2.0.0")
    assert page.status_code == 200
    html = page.text
    assert 'id="provenance-state">verified<' in html and KEY_ID in html
    for text in ("numpy", "BSD-3-Clause", "libc6", "GPL-2+", "LGPL-2.1", "python-base", "container"):
        assert text in html, text
    assert 'id="export-cff"' in html and "cff-version: 1.2.0" in html and "version: 2.0.0" in html
    assert 'id="export-codemeta"' in html and "https://w3id.org/codemeta/3.0" in html
    assert "faaspub verify 127.0.0.1:5000/functions/hello:2.0.0@" in html
    function_page = client.get("/functions/local/hello").text
    assert 'href="/functions/local/hello/versions/2.0.0"' in function_page and "verified" in function_page


def test_version_page_says_when_it_did_not_verify(client: TestClient, seeded: Seeded, tmp_path: Path) -> None:
    attested(seeded, tmp_path, verified=False)
    html = client.get("/functions/local/hello/versions/2.0.0").text
    assert 'id="provenance-state">not verified<' in html
    assert "signature: no signed provenance attached to the image" in html
    old = client.get("/functions/local/hello/versions/1.0.0").text
    assert "No provenance was checked" in old and "No SBOM was recorded" in old
    missing = client.get("/functions/local/hello/versions/9.9.9")
    assert missing.status_code == 404 and "has no version 9.9.9" in missing.text
