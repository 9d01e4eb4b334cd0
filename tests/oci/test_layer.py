"""Deterministic layers: same files, same digest; normalised metadata; links and escapes refused."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher.errors import FaaspubError
from publisher.oci import layer as layer_mod
from publisher.oci.image import MEDIA_LAYER_GZIP, MEDIA_LAYER_TAR
from publisher.oci.layer import build_layer

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_.-", min_size=1, max_size=8).filter(
    lambda s: s not in (".", "..")
)
trees = st.dictionaries(
    st.lists(names, min_size=1, max_size=3).map(tuple), st.binary(max_size=256), min_size=1, max_size=12
)


def _consistent(tree: dict[tuple[str, ...], bytes]) -> dict[tuple[str, ...], bytes]:
    """Drop files whose path is also used as a directory by another entry."""
    dirs = {parts[:i] for parts in tree for i in range(1, len(parts))}
    return {parts: data for parts, data in tree.items() if parts not in dirs}


def _write_tree(root: Path, tree: dict[tuple[str, ...], bytes], order: list[tuple[str, ...]]) -> None:
    for parts in order:
        path = root.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(tree[parts])


def _members(blob: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        return tar.getmembers()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=trees)
def test_same_tree_same_digest_whatever_the_creation_order(
    tmp_path_factory: pytest.TempPathFactory, raw: dict[tuple[str, ...], bytes]
) -> None:
    tree = _consistent(raw)
    one, two = tmp_path_factory.mktemp("one"), tmp_path_factory.mktemp("two")
    _write_tree(one, tree, sorted(tree))
    _write_tree(two, tree, sorted(tree, reverse=True))
    # Timestamps (and the order files were created in) must not matter.
    for path in two.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    a, b = build_layer(one, "/action"), build_layer(two, "/action")
    assert (a.digest, a.diff_id, a.size) == (b.digest, b.diff_id, b.size)
    blob = a.read_bytes()
    assert a.diff_id == "sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest()
    assert a.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert a.size == len(blob)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        contents = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    assert contents == {"action/" + "/".join(parts): data for parts, data in tree.items()}


@given(raw=trees, extra=st.binary(min_size=1, max_size=8))
@settings(max_examples=15, deadline=None)
def test_any_content_change_changes_the_digest(raw: dict[tuple[str, ...], bytes], extra: bytes) -> None:
    tree = {"/".join(k): v for k, v in _consistent(raw).items()}
    first = sorted(tree)[0]
    changed = {**tree, first: tree[first] + extra}
    assert build_layer(tree).digest != build_layer(changed).digest


def test_entries_are_normalised(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(tmp_path / "pkg" / "run.sh", 0o700)
    (tmp_path / "data.txt").write_text("x")
    os.chmod(tmp_path / "data.txt", 0o666)
    os.chown(tmp_path / "data.txt", 1234, 1234)
    layer = build_layer(tmp_path, "/action")
    assert layer.media_type == MEDIA_LAYER_GZIP
    blob = layer.read_bytes()
    # gzip header: no FNAME flag, mtime 0.
    assert blob[3] == 0 and blob[4:8] == b"\0\0\0\0"
    members = _members(blob)
    assert [m.name for m in members] == ["action", "action/data.txt", "action/pkg", "action/pkg/run.sh"]
    for m in members:
        assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", 0)
    modes = {m.name: m.mode for m in members}
    assert modes["action/data.txt"] == 0o644 and modes["action/pkg/run.sh"] == 0o755


def test_fixed_mtime_and_uncompressed(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("a")
    layer = build_layer(tmp_path, "/", compresslevel=None, mtime=42)
    assert layer.media_type == MEDIA_LAYER_TAR and layer.digest == layer.diff_id
    with tarfile.open(fileobj=io.BytesIO(layer.read_bytes())) as tar:
        assert [(m.name, m.mtime) for m in tar.getmembers()] == [("a", 42)]


def test_mapping_entries_and_owners() -> None:
    layer = build_layer({"b/c.py": b"print(1)", "a.txt": Path(__file__)}, "/opt", owners={"opt/b": (5, 6)})
    members = {m.name: m for m in _members(layer.read_bytes())}
    assert list(members) == ["opt", "opt/a.txt", "opt/b", "opt/b/c.py"]
    assert (members["opt/b"].uid, members["opt/b"].gid) == (5, 6)
    again = build_layer({"a.txt": Path(__file__), "b/c.py": b"print(1)"}, "/opt", owners={"opt/b": (5, 6)})
    assert again.digest == layer.digest


def test_symlink_is_refused_with_its_path(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "link").symlink_to("/etc/passwd")
    with pytest.raises(FaaspubError, match=r"sub/link is a symbolic link"):
        build_layer(tmp_path)


def test_symlinks_kept_for_root_filesystems(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "sh").symlink_to("/bin/busybox")
    members = _members(build_layer(tmp_path, symlinks="keep").read_bytes())
    link = next(m for m in members if m.name == "bin/sh")
    assert link.issym() and link.linkname == "/bin/busybox"


@pytest.mark.parametrize("name", ["../evil.py", "a/../../evil.py"])
def test_escaping_path_is_refused(name: str) -> None:
    with pytest.raises(FaaspubError, match=r"escapes the source folder"):
        build_layer({name: b"x"})


def test_large_layer_spills_to_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layer_mod, "IN_MEMORY_LIMIT", 10)
    (tmp_path / "big").write_bytes(os.urandom(4096))
    layer = build_layer(tmp_path)
    assert layer.data is None and layer.path is not None and layer.path.is_file()
    assert layer.digest == "sha256:" + hashlib.sha256(layer.path.read_bytes()).hexdigest()
    path = layer.path
    layer.discard()
    assert not path.exists()


def test_missing_source_dir(tmp_path: Path) -> None:
    with pytest.raises(FaaspubError, match="is not a directory"):
        build_layer(tmp_path / "nope")
