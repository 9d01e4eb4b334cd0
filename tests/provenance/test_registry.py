"""Attestations on the real Debian docker-registry (no referrers API: the ``sha256-<hex>`` tag index),
``faaspub verify`` as a user runs it, and ``require_signed`` refusing unsigned or foreign-signed
images on the local and the OpenWhisk backend before anything is published or deployed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from publisher.cli.main import cli
from publisher.config import Settings
from publisher.core.context import Context
from publisher.core.pipeline import Pipeline
from publisher.core.types import ImageRef, Release
from publisher.errors import FaaspubError
from publisher.oci import referrers
from publisher.oci.registry import RegistryClient
from publisher.provenance import envelope, sbom
from publisher.provenance.attest import attached
from tests.backends.images import build_function_image, make_release
from tests.fakes.openwhisk_server import OpenWhiskServer
from tests.fakes.zenodo_server import ZenodoServer
from tests.infra.containers import BaseImage
from tests.provenance.test_signatures import pem_key

pytestmark = pytest.mark.containers

CODE = "def main(params):\n    return {'ok': True, 'v': %r}\n"


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    return {"facility": pem_key(tmp_path / "facility.pem"), "intruder": pem_key(tmp_path / "intruder.pem")}


def settings(tmp_path: Path, base_image: BaseImage, **provenance: object) -> dict[str, object]:
    return {
        "namespace": "grp",
        "state_dir": str(tmp_path / "state"),
        "database": {"url": f"sqlite:///{tmp_path / 'faaspub.db'}"},
        "registry": {"url": base_image.registry.url, "insecure": True},
        "backend": {"kind": "local", "local": {"engine": "process"}},
        "provenance": {"generate_key": False, **provenance},
    }


def context(tmp_path: Path, base_image: BaseImage, **overrides: object) -> Context:
    data = settings(tmp_path, base_image)
    for key, value in overrides.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value  # type: ignore[dict-item]
    return Context(Settings.model_validate(data))


def signed_by(tmp_path: Path, base_image: BaseImage, key: Path, release: Release) -> None:
    """What a CI build job holding ``key`` does: attach the SBOM and the signed statement."""
    ci = context(tmp_path / "ci", base_image, provenance={"signing_key_file": str(key)})
    Pipeline(ci).attest(release)


def push(base_image: BaseImage, name: str, version: str) -> Release:
    image = build_function_image(base_image, name, version, CODE % version)
    return make_release(name, version, image)


def repository_of(image: ImageRef) -> str:
    return image.repository.split("/", 1)[1]


def test_base_image_carries_its_debian_sbom(base_image: BaseImage) -> None:
    store = RegistryClient(base_image.registry.url, insecure=True)
    [document] = attached(store, base_image.path, base_image.digest).sboms
    packages = {p.name: p for p in sbom.packages_of(document)}
    assert {"libc6", "python3.11-minimal", "busybox-static", "ca-certificates"} <= set(packages)
    assert all(p.kind == "deb" and p.sha256 and p.arch for p in packages.values())
    assert any(p.licenses for p in packages.values()), "DEP-5 copyright files name licences"


def test_referrers_tag_schema_on_a_registry_without_the_api(
    tmp_path: Path, base_image: BaseImage, keys: dict[str, Path]
) -> None:
    release = push(base_image, "attested", "1.0.0")
    signed_by(tmp_path, base_image, keys["facility"], release)
    signed_by(tmp_path, base_image, keys["facility"], release)  # again: nothing new is attached
    store = RegistryClient(base_image.registry.url, insecure=True)
    repository, digest = repository_of(release.image), release.image.digest

    api = requests.get(f"{base_image.registry.url}/v2/{repository}/referrers/{digest}", timeout=10)
    assert api.status_code == 404  # distribution 2.x has no referrers API ...
    index = requests.get(
        f"{base_image.registry.url}/v2/{repository}/manifests/{referrers.tag_of(digest)}",
        headers={"Accept": "application/vnd.oci.image.index.v1+json"},
        timeout=10,
    )
    assert index.status_code == 200  # ... so the client keeps the referrers tag index
    entries = index.json()["manifests"]
    assert sorted(e["artifactType"] for e in entries) == sorted([envelope.MEDIA_TYPE, sbom.MEDIA_TYPE])
    for entry in entries:
        manifest = store.get_manifest(repository, entry["digest"])
        doc = json.loads(manifest.data)
        assert doc["subject"]["digest"] == digest and doc["config"]["mediaType"] == referrers.MEDIA_EMPTY
    found = attached(store, repository, digest)
    assert len(found.sboms) == 1 and len(found.envelopes) == 1
    # The image's own tags are untouched; only the referrers tag was added.
    assert set(store.tags(repository)) == {release.image.tag, referrers.tag_of(digest)}


def run_verify(config: Path, image: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["verify", image, "--config", str(config), "--json"])
    return result.exit_code, result.stdout, str(result.exception or "")


def write_config(path: Path, data: dict[str, object]) -> Path:
    lines = [f'namespace = "{data["namespace"]}"', f'state_dir = "{data["state_dir"]}"']
    for section in ("database", "registry", "backend", "provenance", "archive"):
        values = data.get(section)
        if not isinstance(values, dict):
            continue
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items() if not isinstance(v, dict)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_faaspub_verify_names_the_reason(
    tmp_path: Path, base_image: BaseImage, keys: dict[str, Path]
) -> None:
    good = push(base_image, "verified", "1.0.0")
    signed_by(tmp_path, base_image, keys["facility"], good)
    foreign = push(base_image, "verified", "1.0.1")
    signed_by(tmp_path, base_image, keys["intruder"], foreign)
    copied = push(base_image, "verified", "1.0.2")  # carries the signed provenance of ``good``
    store = RegistryClient(base_image.registry.url, insecure=True)
    [good_envelope] = attached(store, repository_of(good.image), good.image.digest).envelopes
    copy = referrers.Artifact(envelope.MEDIA_TYPE, good_envelope)
    referrers.attach(store, repository_of(copied.image), copied.image.digest, [copy])
    unsigned = push(base_image, "verified", "1.0.3")

    public = keys["facility"].with_suffix(".pub.pem")
    config = write_config(
        tmp_path / "faaspub.toml", settings(tmp_path, base_image, verify_key_file=str(public))
    )
    code, out, _ = run_verify(config, good.image.pinned)
    assert code == 0, out
    doc = json.loads(out)
    assert doc["verified"] and doc["digest"] == good.image.digest
    assert [c["name"] for c in doc["checks"]] == ["sbom", "signature", "subject", "doi"]

    for image, reason in (
        (foreign.image, "signature: provenance signature does not verify with key"),
        (
            copied.image,
            f"subject: the signed statement is about {good.image.digest}, not {copied.image.digest}",
        ),
        (unsigned.image, "no SBOM attached to the image; signature: no signed provenance attached"),
    ):
        code, out, error = run_verify(config, image.pinned)
        assert code == 1 and not json.loads(out)["verified"]
        assert reason in error, error


def deploy_context(
    kind: str, tmp_path: Path, base_image: BaseImage, public: Path, server: OpenWhiskServer | None
) -> Context:
    backend: dict[str, object] = {"kind": "local", "local": {"engine": "process"}}
    if kind == "openwhisk":
        assert server is not None
        (tmp_path / "ow-auth").write_text(server.auth)
        backend = {
            "kind": "openwhisk",
            "openwhisk": {"api_host": server.url, "auth_file": str(tmp_path / "ow-auth")},
        }
    return context(
        tmp_path,
        base_image,
        backend=backend,
        provenance={"verify_key_file": str(public), "require_signed": True},
    )


@pytest.fixture(params=["local", "openwhisk"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_require_signed_refuses_unsigned_and_foreign_images_on_both_backends(
    tmp_path: Path,
    base_image: BaseImage,
    keys: dict[str, Path],
    backend_kind: str,
    request: pytest.FixtureRequest,
) -> None:
    server = request.getfixturevalue("openwhisk_server") if backend_kind == "openwhisk" else None
    ctx = deploy_context(backend_kind, tmp_path, base_image, keys["facility"].with_suffix(".pub.pem"), server)
    pipeline = Pipeline(ctx)
    name = f"policy-{backend_kind}"

    unsigned = push(base_image, name, "1.0.0")
    with pytest.raises(FaaspubError, match="require_signed refuses to deploy it") as refused:
        pipeline.go_live(unsigned, {})
    assert "no signed provenance attached" in str(refused.value)
    foreign = push(base_image, name, "1.0.1")
    signed_by(tmp_path, base_image, keys["intruder"], foreign)
    with pytest.raises(FaaspubError, match="does not verify with key"):
        pipeline.go_live(foreign, {})
    assert ctx.backend.functions("grp") == [], "nothing was deployed"

    good = push(base_image, name, "1.1.0")
    signed_by(tmp_path, base_image, keys["facility"], good)
    pipeline.go_live(good, {})
    [live] = ctx.backend.functions("grp")
    assert live.name == name and live.alias == "1.1.0"
    ctx.backend.close()


def test_released_attestations_are_archived_and_verify_against_the_doi_record(
    tmp_path: Path, base_image: BaseImage, keys: dict[str, Path], zenodo_server: ZenodoServer
) -> None:
    """The service signs at release (it holds the key), archives SBOM and provenance with the record,
    and ``faaspub verify`` finds the same digest in the DOI record's release.json."""
    (tmp_path / "zenodo-token").write_text(zenodo_server.token)
    archive = {"kind": "zenodo", "url": zenodo_server.url, "token_file": str(tmp_path / "zenodo-token")}
    ctx = context(
        tmp_path,
        base_image,
        archive=archive,
        provenance={"signing_key_file": str(keys["facility"]), "require_signed": True},
    )
    root = tmp_path / "fn"
    root.mkdir()
    (root / "CITATION.cff").write_text(
        "cff-version: 1.2.0\nmessage: cite\ntitle: archived\nlicense: MIT\nauthors:\n  - name: DESY FS-SC\n"
    )
    image = build_function_image(base_image, "archived", "1.0.0", CODE % "1.0.0")
    release = make_release("archived", "1.0.0", image, root=root)
    pipeline = Pipeline(ctx)
    release.reservation = pipeline.reserve(release.source, "1.0.0")
    pipeline.go_live(release, {})
    [record] = zenodo_server.fake.published()
    files = {k: f.data for k, f in record.files.items()}
    assert {"sbom.cdx.json", "provenance.dsse.json", "release.json"} <= set(files)
    assert json.loads(files["release.json"])["digest"] == image.digest
    sbom.validate(files["sbom.cdx.json"])

    result = pipeline.verify(image.pinned)
    assert result.ok, result.reason
    assert result.doi == release.reservation.doi
    assert [c.detail for c in result.checks if c.name == "doi"] == [
        f"the record of DOI {result.doi} lists this digest"
    ]
    # Another image signed as if it were that release: the DOI record lists a different digest.
    other = build_function_image(base_image, "archived", "1.0.1", CODE % "1.0.1")
    mistaken = make_release("archived", "1.0.0", other, root=root)
    mistaken.reservation = release.reservation
    pipeline.attest(mistaken)
    refused = pipeline.verify(other.pinned)
    assert not refused.ok
    assert (
        refused.reason
        == f"doi: the record of DOI {result.doi} lists image {image.digest}, not {other.digest}"
    )


def test_verify_without_any_key_says_so(tmp_path: Path, base_image: BaseImage) -> None:
    release = push(base_image, "keyless", "1.0.0")
    result = Pipeline(context(tmp_path, base_image)).verify(release.image.pinned)
    assert not result.ok and "no verify key configured" in result.reason


def test_attach_to_a_missing_image_fails_clearly(tmp_path: Path, base_image: BaseImage) -> None:
    store = RegistryClient(base_image.registry.url, insecure=True)
    with pytest.raises(FaaspubError, match="not found"):
        referrers.attach(
            store, "functions/none", "sha256:" + "0" * 64, [referrers.Artifact(sbom.MEDIA_TYPE, b"{}")]
        )
