"""The native builder's SBOM: what it assembled (base packages, pip's distributions, the function at
its commit), valid CycloneDX 1.6 by the library's own schema validator, and reproducible."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from publisher.build.native import NativeBuilder
from publisher.config import Settings
from publisher.core.context import Context
from publisher.core.pipeline import Pipeline
from publisher.core.types import Release
from publisher.errors import FaaspubError
from publisher.manifest.load import load_function
from publisher.oci.layout import OciLayout
from publisher.provenance import sbom
from publisher.provenance.attest import attach_sbom
from tests.build.conftest import FunctionFactory, git


def _base_sbom(settings: Settings) -> None:
    """Give the tiny base of ``layout_settings`` an SBOM, as ``build_base`` attaches one."""
    store = OciLayout(settings.registry.oci_layout)
    digest = store.resolve("faaspub/base", "3.11")
    libc = sbom.Package("deb", "libc6", "2.36-9+deb12u10", ("LGPL-2.1+",), "c" * 64, "amd64")
    document = sbom.base_sbom(
        sbom.Subject(store.reference("faaspub/base"), "3.11", digest, datetime(1970, 1, 1, tzinfo=UTC)),
        [libc],
    )
    attach_sbom(store, "faaspub/base", digest, document)


def test_sbom_lists_base_packages_distributions_and_the_function(
    make_function: FunctionFactory, layout_settings: Settings
) -> None:
    _base_sbom(layout_settings)
    root = make_function(files={"requirements.txt": "six==1.16.0\n"})
    built = NativeBuilder(layout_settings).build(load_function(root), "1.0.0", {})
    assert built.sbom is not None
    # The library's own validator, not faaspub's wrapper, accepts it.
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(built.sbom.decode()) is None
    doc = json.loads(built.sbom)
    assert doc["specVersion"] == "1.6" and doc["bomFormat"] == "CycloneDX"
    image = doc["metadata"]["component"]
    assert image["type"] == "container" and image["version"] == "1.0.0"
    assert image["hashes"] == [{"alg": "SHA-256", "content": built.ref.digest.removeprefix("sha256:")}]
    assert image["licenses"] == [{"license": {"id": "Apache-2.0"}}]
    by_name = {c["name"]: c for c in doc["components"]}
    six = by_name["six"]
    assert six["purl"] == "pkg:pypi/six@1.16.0" and six["licenses"] == [{"license": {"id": "MIT"}}]
    assert len(six["hashes"][0]["content"]) == 64  # the wheel's sha256 from pip's report
    assert "pytest" not in by_name, "test dependencies are not in the shipped image"
    libc = by_name["libc6"]
    assert libc["purl"] == "pkg:deb/debian/libc6@2.36-9%2Bdeb12u10?arch=amd64&distro=debian-12"
    function = by_name["hello"]
    assert {"name": "faaspub:commit", "value": git(root, "rev-parse", "HEAD")} in function["properties"]
    assert function["externalReferences"] == [
        {"type": "vcs", "url": "https://gitlab.example.org/group/hello.git"}
    ]
    # The image depends on the function, six and the base; the base on its Debian packages.
    graph = {d["ref"]: set(d.get("dependsOn", [])) for d in doc["dependencies"]}
    assert built.base is not None
    base = built.base.rsplit("@", 1)[1]
    assert graph[built.ref.digest] == {function["bom-ref"], six["bom-ref"], base}
    assert graph[base] == {libc["bom-ref"]}
    # Rebuilding the commit gives the same document, byte for byte.
    again = NativeBuilder(layout_settings).build(load_function(root), "1.0.0", {})
    assert again.sbom == built.sbom


def test_a_base_without_an_sbom_still_gives_a_valid_one(
    make_function: FunctionFactory, layout_settings: Settings
) -> None:
    built = NativeBuilder(layout_settings).build(load_function(make_function()), "1.0.0", {})
    assert built.sbom is not None
    sbom.validate(built.sbom)
    names = {c["name"] for c in sbom.components_of(built.sbom)}
    assert "hello" in names and not any(c.startswith("lib") for c in names)


def test_an_invalid_document_is_refused() -> None:
    with pytest.raises(FaaspubError, match=r"not valid CycloneDX 1\.6"):
        sbom.validate(
            b'{"bomFormat": "CycloneDX", "specVersion": "1.6", "components": [{"type": "nonsense"}]}'
        )


def test_embedded_layout_signs_with_its_own_key_and_verifies(
    make_function: FunctionFactory, layout_settings: Settings, tmp_path: Path
) -> None:
    """Embedded mode: no registry, no key configured. The installation makes its key, the artifacts
    go into the OCI layout's referrers tag, and a pinned ``oci:`` reference verifies."""
    settings = layout_settings.model_copy(update={"state_dir": str(tmp_path / "state")})
    fn = load_function(make_function())
    built = NativeBuilder(settings).build(fn, "1.0.0", {})
    pipeline = Pipeline(Context(settings))
    attestation = pipeline.attest(Release(fn, "1.0.0", built.ref), built)
    assert attestation.key_id is not None and attestation.provenance is not None
    assert (tmp_path / "state" / "provenance" / "signing-key.pem").is_file()

    result = pipeline.verify(built.ref.pinned)  # oci:DIR:REPO:TAG@sha256:…
    assert result.ok, result.reason
    assert result.key_id == attestation.key_id
    index = json.loads((Path(settings.registry.oci_layout) / "index.json").read_text())
    names = {m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]}
    assert f"functions/local/hello:sha256-{built.ref.digest[7:]}" in names
    other = NativeBuilder(settings).build(load_function(make_function("other")), "1.0.0", {})
    refused = pipeline.verify(other.ref.pinned)
    assert not refused.ok and "no signed provenance attached" in refused.reason
