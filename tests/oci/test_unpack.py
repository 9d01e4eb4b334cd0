"""Pulling and unpacking images (whiteouts, link safety) and appending a function layer to the base."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from publisher.errors import FaaspubError
from publisher.oci.image import ImageConfig
from publisher.oci.layer import EntrySource, Layer, build_layer
from publisher.oci.layout import OciLayout
from publisher.oci.registry import RegistryClient
from publisher.oci.transfer import append_layers, fetch_image, push_image
from publisher.oci.unpack import unpack_image
from tests.infra.containers import BaseImage, require_tool, run_podman


def _image(store: OciLayout, repo: str, layers: list[Layer]) -> None:
    config = ImageConfig()
    for layer in layers:
        config.append_layer(layer.diff_id, "t")
    push_image(store, repo, "t", config, layers)


def _layer(files: dict[str, EntrySource]) -> Layer:
    return build_layer(files, "/")


def _raw_layer(names: list[str]) -> Layer:
    """A layer written by hand, with names build_layer would refuse."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    data = buf.getvalue()
    from publisher.oci.image import MEDIA_LAYER_TAR, sha256_digest

    return Layer(sha256_digest(data), sha256_digest(data), len(data), MEDIA_LAYER_TAR, data=data)


def test_whiteouts_and_opaque_dirs(tmp_path: Path) -> None:
    store = OciLayout(tmp_path / "oci")
    lower = _layer({"etc/a": b"a", "etc/b": b"b", "data/x": b"x", "data/sub/y": b"y"})
    upper = _layer({"etc/.wh.a": b"", "etc/b": b"B", "data/.wh..wh..opq": b"", "data/z": b"z"})
    _image(store, "r", [lower, upper])
    dest = tmp_path / "root"
    image = unpack_image(store, "r", "t", dest)
    assert len(image.manifest.layers) == 2
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == [
        "data",
        "data/z",
        "etc",
        "etc/b",
    ]
    assert (dest / "etc" / "b").read_bytes() == b"B"


def test_file_replaced_by_directory_and_back(tmp_path: Path) -> None:
    store = OciLayout(tmp_path / "oci")
    _image(
        store, "r", [_layer({"p": b"file"}), _layer({"p/inner": b"dir now"}), _layer({"p": b"file again"})]
    )
    unpack_image(store, "r", "t", tmp_path / "root")
    assert (tmp_path / "root" / "p").read_bytes() == b"file again"


def test_writes_through_links_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    src = tmp_path / "src"
    src.mkdir()
    (src / "evil").symlink_to(str(outside))
    store = OciLayout(tmp_path / "oci")
    links = build_layer(src, "/", symlinks="keep")
    # Without a directory entry for "evil", the file would land in the link's target.
    _image(store, "bad", [links, _raw_layer(["evil/pwn"])])
    with pytest.raises(FaaspubError, match="symbolic link evil"):
        unpack_image(store, "bad", "t", tmp_path / "root")
    # With a directory entry, the directory replaces the link (as in overlayfs), still inside the root.
    _image(store, "ok", [links, _layer({"evil/pwn": b"x"})])
    unpack_image(store, "ok", "t", tmp_path / "root2")
    assert (tmp_path / "root2" / "evil" / "pwn").is_file() and not (tmp_path / "root2" / "evil").is_symlink()
    assert list(outside.iterdir()) == []


def test_climbing_entries_are_skipped(tmp_path: Path) -> None:
    store = OciLayout(tmp_path / "oci")
    _image(store, "r", [_raw_layer(["../escaped", "ok/../../escaped2", "./fine"])])
    dest = tmp_path / "deep" / "root"
    unpack_image(store, "r", "t", dest)
    assert [p.name for p in dest.iterdir()] == ["fine"]
    assert not (tmp_path / "deep" / "escaped").exists() and not (tmp_path / "escaped2").exists()


def test_blob_cache_is_reused(tmp_path: Path) -> None:
    store = OciLayout(tmp_path / "oci")
    _image(store, "r", [_layer({"a": b"a"})])
    cache = tmp_path / "cache"
    unpack_image(store, "r", "t", tmp_path / "one", blob_cache=cache)
    cached = list(cache.iterdir())
    assert len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns
    unpack_image(store, "r", "t", tmp_path / "two", blob_cache=cache)
    assert cached[0].stat().st_mtime_ns == mtime and (tmp_path / "two" / "a").read_bytes() == b"a"


@pytest.mark.containers
def test_unpacked_base_runs_python(base_image: BaseImage, tmp_path: Path) -> None:
    chroot = require_tool("chroot")
    dest = tmp_path / "rootfs"
    unpack_image(RegistryClient(base_image.registry.url), base_image.path, base_image.tag, dest)
    assert oct((dest / "tmp").stat().st_mode & 0o7777) == "0o1777"
    proc = subprocess.run(
        [chroot, str(dest), "/usr/bin/python3", "-c", "import ssl, sqlite3, json; print('ok')"],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


@pytest.mark.containers
def test_function_layer_on_base_runs_in_podman(base_image: BaseImage, podman_env: dict[str, str]) -> None:
    client = RegistryClient(base_image.registry.url)
    mounts: list[str] = []
    original = client.mount_blob

    def spy(repository: str, digest: str, from_repository: str) -> bool:
        mounts.append(digest)
        return original(repository, digest, from_repository)

    client.mount_blob = spy  # type: ignore[method-assign]
    base = fetch_image(client, base_image.path, base_image.tag)
    fn = build_layer(
        {"main.py": b"import sys, os\nprint('hello from', os.getcwd(), sys.version_info[:2])\n"}, "/action"
    )
    repo = f"functions/hello-{os.urandom(3).hex()}"

    def edit(config: ImageConfig) -> None:
        config.set_cmd(["python3", "/action/main.py"])

    digest = append_layers(client, base, repo, "1.0.0", [(fn, "COPY . /action")], edit)
    assert mounts == [base.manifest.layers[0].digest]
    ref = f"{base_image.registry.host}/{repo}:1.0.0"
    run_podman(podman_env, "pull", "-q", ref)
    inspected = run_podman(podman_env, "image", "inspect", "--format", "{{.Digest}}", ref).stdout.strip()
    assert inspected == digest
    out = run_podman(podman_env, "run", "--rm", "--network", "none", ref).stdout
    assert out.strip() == "hello from /action (3, 11)"
