"""The local OCI layout store, reference parsing and the settings-based store choice."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from publisher.config import Settings
from publisher.errors import FaaspubError
from publisher.oci.image import MEDIA_OCI_MANIFEST, ImageConfig, sha256_digest
from publisher.oci.layer import build_layer
from publisher.oci.layout import REF_NAME, OciLayout
from publisher.oci.registry import RegistryClient
from publisher.oci.store import ImageStore, Reference, open_store, parse_reference
from publisher.oci.transfer import append_layers, fetch_image, push_image
from tests.infra.containers import RegistryServer, require_tool


def _push(store: ImageStore, repo: str, tag: str, content: bytes) -> str:
    layer = build_layer({"f.txt": content}, "/action")
    config = ImageConfig()
    config.append_layer(layer.diff_id, "t")
    return push_image(store, repo, tag, config, [layer])


def test_layout_is_a_valid_oci_layout(tmp_path: Path) -> None:
    store = OciLayout(tmp_path / "oci")
    digest = _push(store, "functions/hello", "1.0.0", b"hi")
    root = tmp_path / "oci"
    assert json.loads((root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((root / "index.json").read_text())
    assert index["manifests"] == [
        {
            "annotations": {REF_NAME: "functions/hello:1.0.0"},
            "digest": digest,
            "mediaType": MEDIA_OCI_MANIFEST,
            "size": len(store.get_manifest("functions/hello", "1.0.0").data),
        }
    ]
    for blob in (root / "blobs" / "sha256").iterdir():
        assert sha256_digest(blob.read_bytes()) == f"sha256:{blob.name}"


def test_layout_tags_resolve_and_retag(tmp_path: Path) -> None:
    store = OciLayout(tmp_path)
    one = _push(store, "functions/a", "v1", b"1")
    two = _push(store, "functions/a", "v2", b"2")
    _push(store, "functions/b", "v1", b"b")
    assert store.tags("functions/a") == ["v1", "v2"]
    assert store.resolve("functions/a", "v1") == one
    assert store.resolve("functions/a", two) == two
    moved = _push(store, "functions/a", "v1", b"3")
    assert store.resolve("functions/a", "v1") == moved != one
    store.delete_manifest("functions/a", moved)
    assert store.tags("functions/a") == ["v2"]
    with pytest.raises(FaaspubError, match=r"functions/a:v1 not found"):
        store.resolve("functions/a", "v1")


def test_layout_detects_corruption(tmp_path: Path) -> None:
    store = OciLayout(tmp_path)
    data = b"some blob"
    digest = sha256_digest(data)
    store.put_blob("r", data, digest)
    (tmp_path / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(b"other blob")
    with pytest.raises(FaaspubError, match="digest mismatch"):
        store.get_blob("r", digest)
    with pytest.raises(FaaspubError, match="digest mismatch"):
        store.put_blob("r", b"not matching", sha256_digest(b"something else"))


def test_append_in_layout_reuses_base_blobs(tmp_path: Path) -> None:
    store = OciLayout(tmp_path)
    _push(store, "faaspub/base", "1", b"base")
    base = fetch_image(store, "faaspub/base", "1")
    fn = build_layer({"main.py": b"print('hi')"}, "/action")

    def edit(config: ImageConfig) -> None:
        config.set_cmd(["python3", "/action/main.py"])
        config.set_labels({"org.opencontainers.image.version": "1.0.0"})

    digest = append_layers(store, base, "functions/hi", "1.0.0", [(fn, "COPY . /action")], edit)
    image = fetch_image(store, "functions/hi", "1.0.0")
    assert image.digest == digest
    assert image.manifest.layers[0] == base.manifest.layers[0]
    assert image.config.container["Cmd"] == ["python3", "/action/main.py"]
    assert image.config.diff_ids == [*base.config.diff_ids, fn.diff_id]
    assert [h["created_by"] for h in image.config.doc["history"]] == ["t", "COPY . /action"]
    # Reproducible: the same append gives the same digest.
    assert append_layers(store, base, "functions/hi", "again", [(fn, "COPY . /action")], edit) == digest


@pytest.mark.containers
def test_skopeo_reads_the_layout(tmp_path: Path, registry: RegistryServer) -> None:
    skopeo = require_tool("skopeo")
    store = OciLayout(tmp_path)
    digest = _push(store, "functions/sk", "v1", b"skopeo")
    dest = f"docker://{registry.host}/copied/sk:v1"
    proc = subprocess.run(
        [skopeo, "copy", "--dest-tls-verify=false", f"oci:{tmp_path}:functions/sk:v1", dest],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    # skopeo keeps our manifest byte for byte, so the digest survives the copy.
    assert RegistryClient(registry.url).resolve("copied/sk", "v1") == digest


def test_open_store_follows_settings(tmp_path: Path) -> None:
    layout = open_store(Settings(registry={"oci_layout": str(tmp_path / "oci")}))  # type: ignore[arg-type]
    assert isinstance(layout, OciLayout) and layout.name == f"oci:{tmp_path / 'oci'}"
    reg = open_store(Settings(registry={"url": "http://127.0.0.1:5999"}))  # type: ignore[arg-type]
    assert isinstance(reg, RegistryClient) and reg.reference("functions/x") == "127.0.0.1:5999/functions/x"
    assert isinstance(reg, ImageStore) and isinstance(layout, ImageStore)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "127.0.0.1:5000/faaspub/python-base:3.11",
            Reference("127.0.0.1:5000", "faaspub/python-base", "3.11"),
        ),
        (
            "registry.example.org/g/p@sha256:" + "a" * 64,
            Reference("registry.example.org", "g/p", None, "sha256:" + "a" * 64),
        ),
        ("functions/x:1.0.0", Reference("", "functions/x", "1.0.0")),
        ("localhost/x", Reference("localhost", "x")),
        ("oci:/tmp/oci:faaspub/python-base:3.11", Reference("oci:/tmp/oci", "faaspub/python-base", "3.11")),
        ("oci:/tmp/oci:faaspub/python-base", Reference("oci:/tmp/oci", "faaspub/python-base")),
        # what `faaspub build` prints, and the same without its tag
        (
            "oci:/tmp/oci:functions/local/x:1.0.0-abc@sha256:" + "b" * 64,
            Reference("oci:/tmp/oci", "functions/local/x", "1.0.0-abc", "sha256:" + "b" * 64),
        ),
        (
            "oci:/tmp/oci:functions/local/x@sha256:" + "b" * 64,
            Reference("oci:/tmp/oci", "functions/local/x", None, "sha256:" + "b" * 64),
        ),
        (
            "127.0.0.1:5000/functions/x:1.0.0@sha256:" + "c" * 64,
            Reference("127.0.0.1:5000", "functions/x", "1.0.0", "sha256:" + "c" * 64),
        ),
    ],
)
def test_parse_reference(text: str, expected: Reference) -> None:
    assert parse_reference(text) == expected


@pytest.mark.parametrize(
    "text", ["Upper/Case:1", "x:bad tag", "x@sha256:123", "oci:/only-a-dir", "oci:/d:x@sha256:12"]
)
def test_parse_reference_rejects(text: str) -> None:
    with pytest.raises(FaaspubError, match="image reference"):
        parse_reference(text)
