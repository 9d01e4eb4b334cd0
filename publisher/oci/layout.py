"""A local OCI image layout directory used as an image store (the embedded default registry).

Layout: ``oci-layout``, ``index.json`` (one entry per tag, named by the
``org.opencontainers.image.ref.name`` annotation as ``repository:tag``) and ``blobs/sha256/…``.
Blobs are shared by all repositories, so a cross-repository mount is just an existence check.
Writes go through a temporary file and a rename, and ``index.json`` updates hold a file lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from publisher.errors import FaaspubError
from publisher.oci.image import MEDIA_OCI_INDEX, canonical_json, sha256_digest
from publisher.oci.registry import Body, FetchedManifest, ManifestNotFound

REF_NAME = "org.opencontainers.image.ref.name"
_READ = 1024 * 1024


class OciLayout:
    """An OCI image layout at ``root`` (created on first write)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()

    def __repr__(self) -> str:
        return f"OciLayout({str(self.root)!r})"

    @property
    def name(self) -> str:
        return f"oci:{self.root}"

    def reference(self, repository: str) -> str:
        """``oci:DIR:repository`` (see :class:`publisher.core.types.ImageRef`)."""
        return f"oci:{self.root}:{repository}"

    def _blob_path(self, digest: str) -> Path:
        algo, _, hexpart = digest.partition(":")
        if algo != "sha256" or len(hexpart) != 64 or not all(c in "0123456789abcdef" for c in hexpart):
            raise FaaspubError(f"invalid digest {digest!r}")
        return self.root / "blobs" / "sha256" / hexpart

    def _init(self) -> None:
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        marker = self.root / "oci-layout"
        if not marker.exists():
            marker.write_text('{"imageLayoutVersion":"1.0.0"}')
        if not (self.root / "index.json").exists():
            self._write_index({"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": []})

    # -- blobs ---------------------------------------------------------------------------------

    def has_blob(self, repository: str, digest: str) -> bool:
        return self._blob_path(digest).is_file()

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        return self.has_blob(repository, digest)

    def put_blob(self, repository: str, body: Body, digest: str) -> None:
        target = self._blob_path(digest)
        if target.is_file():
            return
        self._init()
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        tmp = Path(tmp_name)
        try:
            sha = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                if isinstance(body, Path):
                    with open(body, "rb") as src:
                        while chunk := src.read(_READ):
                            sha.update(chunk)
                            out.write(chunk)
                else:
                    sha.update(body)
                    out.write(body)
            if f"sha256:{sha.hexdigest()}" != digest:
                raise FaaspubError(f"digest mismatch: content given for {digest} hashes differently")
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)

    def get_blob(self, repository: str, digest: str) -> bytes:
        path = self._blob_path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise FaaspubError(f"blob {digest} not found in {self.name}") from None
        if sha256_digest(data) != digest:
            raise FaaspubError(f"digest mismatch for blob {digest} in {self.name}")
        return data

    def blob_file(self, digest: str) -> Path:
        """The file holding blob ``digest`` (not verified: readers that stream it check the digest)."""
        path = self._blob_path(digest)
        if not path.is_file():
            raise FaaspubError(f"blob {digest} not found in {self.name}")
        return path

    def download_blob(self, repository: str, digest: str, dest: Path) -> Path:
        path = self._blob_path(digest)
        if not path.is_file():
            raise FaaspubError(f"blob {digest} not found in {self.name}")
        sha = hashlib.sha256()
        tmp = dest.with_name(dest.name + ".part")
        with open(path, "rb") as src, open(tmp, "wb") as out:
            while chunk := src.read(_READ):
                sha.update(chunk)
                out.write(chunk)
        if f"sha256:{sha.hexdigest()}" != digest:
            tmp.unlink(missing_ok=True)
            raise FaaspubError(f"digest mismatch for blob {digest} in {self.name}")
        tmp.replace(dest)
        return dest

    # -- manifests -----------------------------------------------------------------------------

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        digest = sha256_digest(data)
        self.put_blob(repository, data, digest)
        if reference.startswith("sha256:"):
            if reference != digest:
                raise FaaspubError(f"digest mismatch: manifest pushed as {reference} hashes to {digest}")
            return digest
        name = f"{repository}:{reference}"
        entry = {
            "mediaType": media_type,
            "digest": digest,
            "size": len(data),
            "annotations": {REF_NAME: name},
        }
        with self._locked_index() as index:
            index["manifests"] = [
                m for m in index["manifests"] if (m.get("annotations") or {}).get(REF_NAME) != name
            ] + [entry]
        return digest

    def _entry(self, repository: str, reference: str) -> dict[str, Any]:
        name = f"{repository}:{reference}"
        for m in self._read_index()["manifests"]:
            if (m.get("annotations") or {}).get(REF_NAME) == name:
                entry: dict[str, Any] = m
                return entry
        raise ManifestNotFound(f"image {name} not found in {self.name}")

    def get_manifest(self, repository: str, reference: str) -> FetchedManifest:
        if reference.startswith("sha256:"):
            data = self.get_blob(repository, reference)
            media = json.loads(data).get("mediaType", "")
            return FetchedManifest(data, media, reference)
        entry = self._entry(repository, reference)
        return FetchedManifest(
            self.get_blob(repository, entry["digest"]), entry["mediaType"], entry["digest"]
        )

    def resolve(self, repository: str, reference: str) -> str:
        if reference.startswith("sha256:"):
            if not self.has_blob(repository, reference):
                raise FaaspubError(f"image {repository}@{reference} not found in {self.name}")
            return reference
        digest: str = self._entry(repository, reference)["digest"]
        return digest

    def referrers(self, repository: str, digest: str) -> bytes | None:
        """A layout has no referrers API: the ``sha256-<hex>`` tag index stands in for it."""
        return None

    def tags(self, repository: str) -> list[str]:
        prefix = f"{repository}:"
        names = ((m.get("annotations") or {}).get(REF_NAME, "") for m in self._read_index()["manifests"])
        return sorted(n[len(prefix) :] for n in names if n.startswith(prefix))

    def delete_manifest(self, repository: str, digest: str) -> None:
        """Drop every tag of ``repository`` pointing at ``digest`` (blobs stay until a garbage collection)."""
        with self._locked_index() as index:
            index["manifests"] = [
                m
                for m in index["manifests"]
                if not (
                    m["digest"] == digest
                    and (m.get("annotations") or {}).get(REF_NAME, "").startswith(f"{repository}:")
                )
            ]

    # -- index.json ----------------------------------------------------------------------------

    def _read_index(self) -> dict[str, Any]:
        path = self.root / "index.json"
        if not path.exists():
            return {"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": []}
        try:
            doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise FaaspubError(f"{path} is not a valid OCI index: {exc}") from None
        doc.setdefault("manifests", [])
        return doc

    def _write_index(self, doc: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".index-")
        with os.fdopen(fd, "wb") as out:
            out.write(canonical_json(doc))
        os.replace(tmp, self.root / "index.json")

    @contextmanager
    def _locked_index(self) -> Iterator[dict[str, Any]]:
        self._init()
        with open(self.root / ".index.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                index = self._read_index()
                yield index
                self._write_index(index)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def remove(self) -> None:
        """Delete the whole layout directory (tests and ``faaspub`` state resets)."""
        shutil.rmtree(self.root, ignore_errors=True)
