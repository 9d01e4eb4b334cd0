"""Pull an image and unpack its layers into a directory (for the process executor and tests).

Layers are applied in order with OCI whiteouts: ``.wh..wh..opq`` empties its directory and
``.wh.NAME`` deletes ``NAME``. Nothing is ever written through a symbolic link or outside the
destination: an entry whose path climbs out with ``..`` is skipped, and an entry whose parent is a
link is refused. Device nodes are skipped (nothing in a function image needs them).
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from publisher.errors import FaaspubError
from publisher.oci.store import ImageStore
from publisher.oci.transfer import Image, fetch_image

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


def unpack_image(
    store: ImageStore,
    repository: str,
    reference: str,
    dest: Path,
    blob_cache: Path | None = None,
) -> Image:
    """Fetch ``repository:reference`` and apply all its layers onto ``dest`` (created if missing).

    With ``blob_cache``, layer blobs are kept there by digest and not downloaded again.
    """
    image = fetch_image(store, repository, reference)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="faaspub-pull-") as tmp:
        for desc in image.manifest.layers:
            blob = _blob_file(store, repository, desc.digest, blob_cache or Path(tmp))
            apply_layer(blob, dest)
    return image


def _blob_file(store: ImageStore, repository: str, digest: str, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / digest.replace(":", "-")
    if not path.is_file():
        store.download_blob(repository, digest, path)
    return path


def apply_layer(blob: Path, dest: Path) -> None:
    """Apply one layer tar (gzip or plain) onto ``dest`` with whiteout handling."""
    root = dest.resolve()
    try:
        with tarfile.open(blob, mode="r:*") as tar:
            for member in tar:
                _apply(tar, member, root)
    except tarfile.TarError as exc:
        raise FaaspubError(f"layer {blob.name} is not a valid tar archive: {exc}") from None


def _clean(name: str) -> PurePosixPath | None:
    parts = [p for p in PurePosixPath(name).parts if p not in ("/", ".")]
    if not parts or ".." in parts:
        return None
    return PurePosixPath(*parts)


def _target(root: Path, rel: PurePosixPath) -> Path:
    """``root/rel`` after checking every existing parent is a real directory (never a link)."""
    current = root
    for part in rel.parts[:-1]:
        current = current / part
        try:
            st = current.lstat()
        except FileNotFoundError:
            current.mkdir(mode=0o755)
            continue
        if stat.S_ISLNK(st.st_mode):
            raise FaaspubError(f"layer entry {rel} would be written through the symbolic link {part}")
        if not stat.S_ISDIR(st.st_mode):
            current.unlink()
            current.mkdir(mode=0o755)
    return current / rel.parts[-1]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _apply(tar: tarfile.TarFile, member: tarfile.TarInfo, root: Path) -> None:
    rel = _clean(member.name)
    if rel is None:
        return
    name = rel.name
    if name == OPAQUE:
        directory = _target(root, rel).parent
        if directory.is_dir() and not directory.is_symlink():
            for child in directory.iterdir():
                _remove(child)
        return
    if name.startswith(WHITEOUT):
        _remove(_target(root, rel.with_name(name[len(WHITEOUT) :])))
        return
    target = _target(root, rel)
    existing_dir = target.is_dir() and not target.is_symlink()
    if not (member.isdir() and existing_dir) and (target.exists() or target.is_symlink()):
        _remove(target)
    mode = member.mode & 0o7777
    if member.isdir():
        target.mkdir(exist_ok=True)
        os.chmod(target, mode)
    elif member.isreg():
        src = tar.extractfile(member)
        assert src is not None
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with src, os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(src, out, 1024 * 1024)
        os.chmod(target, mode)
    elif member.issym():
        os.symlink(member.linkname, target)
    elif member.islnk():
        link_rel = _clean(member.linkname)
        if link_rel is None:
            return
        source = _target(root, link_rel)
        if source.is_symlink() or not source.is_file():
            raise FaaspubError(f"layer hard link {rel} points at {member.linkname}, which is not a file")
        os.link(source, target)
