"""Deterministic tar layers: the same files always give the same ``diff_id`` and blob digest.

Every entry is normalised (uid/gid 0 unless told otherwise, empty user/group names, one fixed
mtime, PAX format) and entries are written in sorted order, so a layer depends only on paths,
modes and contents. The gzip stream has ``mtime=0`` and no file name in its header.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Literal

from publisher.errors import FaaspubError
from publisher.oci.image import MEDIA_LAYER_GZIP, MEDIA_LAYER_TAR, Descriptor

# Layers up to this size stay in memory; larger ones are spooled to a temporary file.
IN_MEMORY_LIMIT = 8 * 1024 * 1024
_CHUNK = 1024 * 1024

EntrySource = bytes | Path


@dataclass
class Layer:
    """A built layer blob: in memory (``data``) or in a temporary file (``path``) that you own."""

    digest: str
    diff_id: str
    size: int
    media_type: str
    data: bytes | None = field(default=None, repr=False)
    path: Path | None = None

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size)

    def open(self) -> BinaryIO:
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.path is not None
        return open(self.path, "rb")

    def read_bytes(self) -> bytes:
        with self.open() as fh:
            return fh.read()

    def save(self, dest: Path) -> None:
        """Write the blob to ``dest`` (for caching) without keeping a second copy in memory."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".part")
        with self.open() as src, open(tmp, "wb") as out:
            while chunk := src.read(_CHUNK):
                out.write(chunk)
        tmp.replace(dest)

    def discard(self) -> None:
        """Remove the temporary file, if the blob lives in one."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


class _HashingWriter:
    """A write-only stream that hashes and counts what passes through on its way to ``target``."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        self.target.write(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.target.flush()

    @property
    def digest(self) -> str:
        return f"sha256:{self.sha.hexdigest()}"


@dataclass(frozen=True)
class _Entry:
    name: str  # posix path inside the layer, no leading slash
    kind: Literal["dir", "file", "symlink"]
    mode: int
    source: EntrySource | None = None
    linkname: str = ""


def _safe_name(name: str, origin: str) -> str:
    parts = PurePosixPath(name.replace(os.sep, "/")).parts
    if any(p == ".." for p in parts):
        raise FaaspubError(f"layer path {origin!r} escapes the source folder", hint="remove the '..' part")
    return "/".join(p for p in parts if p not in ("/", "."))


def _walk(root: Path, symlinks: Literal["refuse", "keep"]) -> list[_Entry]:
    """Every entry under ``root`` (sorted), refusing symlinks unless they are to be kept verbatim."""
    if not root.is_dir():
        raise FaaspubError(f"layer source {root} is not a directory")
    entries: list[_Entry] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(dirnames + filenames):
            path = base / name
            rel = path.relative_to(root).as_posix()
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                if symlinks == "refuse":
                    raise FaaspubError(
                        f"{rel} is a symbolic link; function folders must hold regular files only",
                        hint="replace the link with the file it points to",
                    )
                entries.append(_Entry(rel, "symlink", 0o777, linkname=os.readlink(path)))
            elif stat.S_ISDIR(st.st_mode):
                entries.append(_Entry(rel, "dir", stat.S_IMODE(st.st_mode)))
            elif stat.S_ISREG(st.st_mode):
                entries.append(_Entry(rel, "file", stat.S_IMODE(st.st_mode), source=path))
            else:
                raise FaaspubError(f"{rel} is not a regular file, directory or link and cannot go in a layer")
    # os.walk visits depth-first per directory; a single global sort makes the order independent of it.
    return sorted(entries, key=lambda e: e.name)


def _from_mapping(files: Mapping[str, EntrySource]) -> list[_Entry]:
    entries: dict[str, _Entry] = {}
    for raw, source in files.items():
        name = _safe_name(raw, raw)
        if not name:
            raise FaaspubError(f"layer entry {raw!r} has an empty path")
        if isinstance(source, Path):
            if source.is_symlink():
                raise FaaspubError(f"{source} is a symbolic link and cannot go in a layer")
            mode = 0o755 if os.access(source, os.X_OK) else 0o644
        else:
            mode = 0o644
        entries[name] = _Entry(name, "file", mode, source=source)
        parent = PurePosixPath(name).parent
        while str(parent) != ".":
            entries.setdefault(str(parent), _Entry(str(parent), "dir", 0o755))
            parent = parent.parent
    return sorted(entries.values(), key=lambda e: e.name)


def _normal_mode(entry: _Entry) -> int:
    if entry.kind == "symlink":
        return 0o777
    # Keep the execute bits and the sticky bit (/tmp); drop group/other write and set-id bits.
    if entry.kind == "dir":
        return (entry.mode & 0o1000) | (0o777 if entry.mode & 0o1000 else 0o755)
    return 0o755 if entry.mode & 0o111 else 0o644


def _write_tar(
    out: _HashingWriter,
    entries: Iterable[_Entry],
    prefix: str,
    mtime: int,
    owners: Mapping[str, tuple[int, int]],
) -> None:
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        prefix_parts = [p for p in PurePosixPath(prefix).parts if p != "/"]
        # The prefix directories themselves, so the layer is self-contained.
        for depth in range(1, len(prefix_parts) + 1):
            _add(tar, _Entry("/".join(prefix_parts[:depth]), "dir", 0o755), mtime, owners)
        for entry in entries:
            name = "/".join([*prefix_parts, entry.name])
            _add(tar, _Entry(name, entry.kind, entry.mode, entry.source, entry.linkname), mtime, owners)


def _add(tar: tarfile.TarFile, entry: _Entry, mtime: int, owners: Mapping[str, tuple[int, int]]) -> None:
    info = tarfile.TarInfo(entry.name)
    info.mtime = mtime
    info.uid, info.gid = owners.get(entry.name, (0, 0))
    info.uname = info.gname = ""
    info.mode = _normal_mode(entry)
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    elif entry.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.linkname
        tar.addfile(info)
    elif isinstance(entry.source, bytes):
        info.size = len(entry.source)
        tar.addfile(info, io.BytesIO(entry.source))
    else:
        assert isinstance(entry.source, Path)
        with open(entry.source, "rb") as fh:
            info.size = os.fstat(fh.fileno()).st_size
            tar.addfile(info, fh)


def build_layer(
    source: Path | Mapping[str, EntrySource],
    prefix: str = "/",
    *,
    mtime: int = 0,
    compresslevel: int | None = 6,
    symlinks: Literal["refuse", "keep"] = "refuse",
    owners: Mapping[str, tuple[int, int]] | None = None,
    workdir: Path | None = None,
) -> Layer:
    """Build a layer from a directory or from ``{path: bytes | Path}`` entries, placed under ``prefix``.

    ``compresslevel=None`` gives an uncompressed layer. ``symlinks="keep"`` stores links verbatim
    (root filesystems); the default refuses them (function folders). ``owners`` maps a path inside
    the layer (e.g. ``"home/app"``) to ``(uid, gid)``; all other entries belong to root.
    """
    entries = _walk(source, symlinks) if isinstance(source, Path) else _from_mapping(source)
    fd, tmp_name = tempfile.mkstemp(prefix="faaspub-layer-", dir=workdir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            blob = _HashingWriter(out)
            if compresslevel is None:
                tar_hash = blob
                _write_tar(tar_hash, entries, prefix, mtime, owners or {})
            else:
                # filename="" keeps the temp file's name out of the gzip header.
                with gzip.GzipFile(
                    filename="",
                    mode="wb",
                    fileobj=blob,
                    compresslevel=compresslevel,
                    mtime=0,
                ) as gz:
                    tar_hash = _HashingWriter(gz)
                    _write_tar(tar_hash, entries, prefix, mtime, owners or {})
        media = MEDIA_LAYER_TAR if compresslevel is None else MEDIA_LAYER_GZIP
        layer = Layer(blob.digest, tar_hash.digest, blob.size, media, path=tmp)
        if blob.size <= IN_MEMORY_LIMIT:
            layer.data = tmp.read_bytes()
            layer.discard()
        return layer
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
