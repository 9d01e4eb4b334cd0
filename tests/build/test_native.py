"""The native builder against a local OCI layout: reproducible digests, caching, labels, bad input."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from publisher.build.native import NativeBuilder
from publisher.config import Settings
from publisher.errors import FaaspubError
from publisher.manifest.load import load_function
from publisher.oci.image import ImageConfig, Manifest
from publisher.oci.layout import OciLayout
from publisher.oci.store import parse_reference
from tests.build.conftest import FunctionFactory, commit_all


def build(settings: Settings, root: Path, version: str = "1.0.0", **labels: str):  # type: ignore[no-untyped-def]
    return NativeBuilder(settings).build(load_function(root), version, labels)


def image_files(settings: Settings, ref: str, layer_index: int) -> dict[str, tarfile.TarInfo | bytes]:
    """Names -> content (files) or TarInfo (others) of one layer of the image ``ref``."""
    parsed = parse_reference(ref)
    store = OciLayout(settings.registry.oci_layout)
    manifest = Manifest.parse(store.get_manifest(parsed.repository, parsed.ref).data)
    blob = store.get_blob(parsed.repository, manifest.layers[layer_index].digest)
    out: dict[str, tarfile.TarInfo | bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        for info in tar.getmembers():
            fh = tar.extractfile(info)
            out[info.name] = fh.read() if fh else info
            if fh:
                out["@" + info.name] = info
    return out


def image_config(settings: Settings, ref: str) -> ImageConfig:
    parsed = parse_reference(ref)
    store = OciLayout(settings.registry.oci_layout)
    manifest = Manifest.parse(store.get_manifest(parsed.repository, parsed.ref).data)
    return ImageConfig.parse(store.get_blob(parsed.repository, manifest.config.digest))


def test_build_is_reproducible_and_tag_pins_content(
    make_function: FunctionFactory, layout_settings: Settings
) -> None:
    root = make_function()
    first = build(layout_settings, root)
    # Touching files (new mtimes) must not change anything.
    os.utime(root / "handler.py", (1, 1))
    second = build(layout_settings, root)
    assert first.ref.digest == second.ref.digest
    assert first.ref.tag == second.ref.tag == f"1.0.0-{first.ref.digest[7:19]}"
    assert first.test_ref is not None and first.test_ref.tag == first.ref.tag + "-test"
    assert first.ref.repository.endswith(":functions/local/hello")
    # The tag resolves to exactly that digest in the store.
    assert (
        OciLayout(layout_settings.registry.oci_layout).resolve("functions/local/hello", first.ref.tag)
        == first.ref.digest
    )


def test_code_layer_content_and_config(make_function: FunctionFactory, layout_settings: Settings) -> None:
    root = make_function(files={"data/lookup.json": "{}", "__pycache__/x.pyc": "junk", ".git-keep": ""})
    built = build(layout_settings, root, "1.2.0", **{"org.faaspub.doi": "10.5281/zenodo.42"})
    files = image_files(layout_settings, built.ref.tagged, -1)
    assert files["action/handler.py"].startswith(b"def main")  # type: ignore[union-attr]
    assert "action/data/lookup.json" in files
    assert not any(name.startswith("action/tests") for name in files), "tests are never shipped"
    assert not any("__pycache__" in name for name in files)
    handler = json.loads(files["action/.faaspub/handler.json"])  # type: ignore[arg-type]
    assert handler == {
        "handler": "handler:main",
        "env": {"GREETING_STYLE": "plain"},
        "name": "hello",
        "version": "1.2.0",
        "concurrency": 2,
        "timeout_ms": 30_000,
    }
    info = files["@action/handler.py"]
    assert isinstance(info, tarfile.TarInfo) and (info.uid, info.gid, info.mtime) == (0, 0, 0)

    config = image_config(layout_settings, built.ref.tagged)
    labels = config.labels
    assert labels["org.opencontainers.image.created"] == "2024-05-01T10:00:00Z"  # the commit time
    assert labels["org.opencontainers.image.version"] == "1.2.0"
    assert labels["org.opencontainers.image.title"] == "hello"
    assert labels["org.opencontainers.image.description"] == "Says hello."
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.source"] == "https://gitlab.example.org/group/hello.git"
    assert len(labels["org.opencontainers.image.revision"]) == 40
    assert (labels["org.faaspub.function"], labels["org.faaspub.namespace"]) == ("hello", "local")
    assert labels["org.faaspub.manifest-hash"].startswith("sha256:")
    assert labels["org.faaspub.doi"] == "10.5281/zenodo.42"
    assert config.env["PYTHONPATH"] == "/opt/faaspub/deps:/opt/faaspub/runtime"
    assert config.container["WorkingDir"] == "/action"
    assert config.container["Cmd"] == ["python3", "-m", "faaspub_runtime"], "the base's command is kept"
    assert config.doc["created"] == "2024-05-01T10:00:00Z"

    test_config = image_config(layout_settings, built.test_ref.tagged)  # type: ignore[union-attr]
    assert test_config.env["PYTHONPATH"].startswith("/opt/faaspub/test-deps:/opt/faaspub/deps:")
    assert test_config.labels["org.faaspub.tested-image"] == built.ref.digest  # any reference finds it
    tests = image_files(layout_settings, built.test_ref.tagged, -1)  # type: ignore[union-attr]
    assert "action/tests/test_handler.py" in tests


def test_code_only_change_reuses_dependency_layer(
    make_function: FunctionFactory, layout_settings: Settings
) -> None:
    root = make_function(files={"requirements.txt": "six==1.16.0\n"})
    first = build(layout_settings, root)
    deps = image_files(layout_settings, first.ref.tagged, 1)
    assert "opt/faaspub/deps/six.py" in deps
    assert not any(name.endswith(".pyc") or "/bin/" in name for name in deps)

    (root / "handler.py").write_text((root / "handler.py").read_text() + "\n# tweak\n")
    commit_all(root)
    builder = NativeBuilder(layout_settings)
    plan = builder.plan(load_function(root), "1.0.1", {})
    assert plan.cached_layers == 2, "requirements and test requirements both come from the cache"
    second = builder.build(load_function(root), "1.0.1", {})
    assert second.ref.digest != first.ref.digest
    m1 = Manifest.parse(
        OciLayout(layout_settings.registry.oci_layout)
        .get_manifest("functions/local/hello", first.ref.tag)
        .data
    )
    m2 = Manifest.parse(
        OciLayout(layout_settings.registry.oci_layout)
        .get_manifest("functions/local/hello", second.ref.tag)
        .data
    )
    assert m1.layers[:2] == m2.layers[:2] and m1.layers[2] != m2.layers[2]
    assert second.layers == 3 and second.layers_reused == 2


def test_wheel_missing_names_the_package(make_function: FunctionFactory, layout_settings: Settings) -> None:
    # pycrypto only ever published a source distribution.
    root = make_function(files={"requirements.txt": "pycrypto==2.6.1\n"})
    with pytest.raises(FaaspubError) as err:
        build(layout_settings, root)
    assert "pycrypto" in err.value.message and "manylinux2014_x86_64" in err.value.message
    assert err.value.hint and "runtime: docker" in err.value.hint


def test_symlink_in_function_folder_is_refused(
    make_function: FunctionFactory, layout_settings: Settings
) -> None:
    root = make_function()
    (root / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(FaaspubError, match=r"passwd .*symbolic link"):
        build(layout_settings, root)


def test_symlinked_folder_is_refused(make_function: FunctionFactory, layout_settings: Settings) -> None:
    root = make_function()
    (root / "etc").symlink_to("/etc")
    with pytest.raises(FaaspubError, match=r"etc .*symbolic link"):
        build(layout_settings, root)


@pytest.mark.parametrize("field", ["requirements: ../outside.txt", "tests:\n  path: ../../"])
def test_paths_escaping_the_folder_are_refused(
    make_function: FunctionFactory, layout_settings: Settings, field: str
) -> None:
    manifest = f"name: hello\nruntime: python:3.11\nhandler: handler:main\n{field}\n"
    root = make_function(manifest=manifest)
    (root.parent / "outside.txt").write_text("six\n")
    with pytest.raises(FaaspubError, match="outside the function folder"):
        build(layout_settings, root)


def test_requirement_include_outside_is_refused(
    make_function: FunctionFactory, layout_settings: Settings
) -> None:
    root = make_function(files={"requirements.txt": "-r ../../etc/requirements.txt\n"})
    with pytest.raises(FaaspubError, match="outside"):
        build(layout_settings, root)


def test_corrupt_base_manifest_is_detected(make_function: FunctionFactory, layout_settings: Settings) -> None:
    layout = OciLayout(layout_settings.registry.oci_layout)
    digest = layout.resolve("faaspub/base", "3.11")
    blob = Path(layout_settings.registry.oci_layout) / "blobs" / "sha256" / digest[7:]
    blob.write_bytes(blob.read_bytes().replace(b'"layers"', b'"layers" '))
    with pytest.raises(FaaspubError, match="digest mismatch"):
        build(layout_settings, make_function())


def test_docker_runtime_needs_buildah(make_function: FunctionFactory, layout_settings: Settings) -> None:
    root = make_function(manifest="name: hello\nruntime: docker\nhandler: handler:main\n")
    with pytest.raises(FaaspubError, match="Dockerfile") as err:
        build(layout_settings, root)
    assert "buildah" in (err.value.hint or "")
