"""OCI image config, manifest and index documents as plain data, plus the edits builders make.

Documents are serialised compactly with sorted keys (:func:`canonical_json`), so the same
content gives the same digest. Docker v2 manifests and manifest lists are read as well; what we
write is always OCI.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from publisher.errors import FaaspubError

MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MEDIA_DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"

MANIFEST_TYPES = (MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST)
INDEX_TYPES = (MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST)
ACCEPT_MANIFESTS = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))

# Docker layer types have OCI equivalents with the same bytes; the registry and podman accept both.
_TO_OCI_LAYER = {MEDIA_DOCKER_LAYER_GZIP: MEDIA_LAYER_GZIP, MEDIA_DOCKER_LAYER_TAR: MEDIA_LAYER_TAR}

EPOCH = "1970-01-01T00:00:00Z"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def canonical_json(doc: Mapping[str, Any]) -> bytes:
    """Compact, sorted-key JSON: the byte form we hash and push."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor: media type, digest, size (and annotations for index entries)."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            doc["annotations"] = dict(self.annotations)
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Descriptor:
        try:
            return cls(doc["mediaType"], doc["digest"], int(doc["size"]), doc.get("annotations"))
        except (KeyError, TypeError, ValueError) as exc:
            raise FaaspubError(f"malformed OCI descriptor {dict(doc)!r}: missing {exc}") from None

    @classmethod
    def of(cls, media_type: str, data: bytes) -> Descriptor:
        return cls(media_type, sha256_digest(data), len(data))


@dataclass(frozen=True)
class Manifest:
    """An image manifest (OCI or Docker v2): one config and its layers."""

    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str] | None = None

    @property
    def media_type(self) -> str:
        return MEDIA_OCI_MANIFEST

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "config": Descriptor(MEDIA_OCI_CONFIG, self.config.digest, self.config.size).to_dict(),
            "layers": [
                Descriptor(_TO_OCI_LAYER.get(d.media_type, d.media_type), d.digest, d.size).to_dict()
                for d in self.layers
            ],
        }
        if self.annotations:
            doc["annotations"] = dict(self.annotations)
        return doc

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def parse(cls, data: bytes) -> Manifest:
        doc = _load(data, "manifest")
        if doc.get("mediaType", MEDIA_OCI_MANIFEST) not in MANIFEST_TYPES or "config" not in doc:
            raise FaaspubError(f"not an image manifest (mediaType {doc.get('mediaType')!r})")
        return cls(
            Descriptor.from_dict(doc["config"]),
            tuple(Descriptor.from_dict(d) for d in doc.get("layers", [])),
            doc.get("annotations"),
        )


def parse_index(data: bytes) -> list[tuple[Descriptor, dict[str, str]]]:
    """The entries of an OCI index / Docker manifest list with their platform."""
    doc = _load(data, "index")
    return [(Descriptor.from_dict(m), dict(m.get("platform") or {})) for m in doc.get("manifests", [])]


def pick_platform(data: bytes, os_name: str = "linux", architecture: str = "amd64") -> Descriptor:
    """The manifest for ``os_name/architecture`` in an index, or a clear error listing what exists."""
    entries = parse_index(data)
    for desc, platform in entries:
        if platform.get("os") == os_name and platform.get("architecture") == architecture:
            return desc
    found = ", ".join(f"{p.get('os')}/{p.get('architecture')}" for _, p in entries) or "none"
    raise FaaspubError(f"image index has no {os_name}/{architecture} manifest (has: {found})")


def _load(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FaaspubError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise FaaspubError(f"{what} is not a JSON object")
    return doc


class ImageConfig:
    """An image configuration document (``architecture``, ``os``, ``config``, ``rootfs``, ``history``)."""

    def __init__(self, doc: Mapping[str, Any] | None = None) -> None:
        self.doc: dict[str, Any] = copy.deepcopy(dict(doc)) if doc else new_config_doc()
        self.doc.setdefault("config", {})
        self.doc.setdefault("rootfs", {"type": "layers", "diff_ids": []})
        self.doc.setdefault("history", [])

    @classmethod
    def parse(cls, data: bytes) -> ImageConfig:
        return cls(_load(data, "image config"))

    @property
    def container(self) -> dict[str, Any]:
        cfg: dict[str, Any] = self.doc["config"]
        return cfg

    @property
    def diff_ids(self) -> list[str]:
        ids: list[str] = self.doc["rootfs"]["diff_ids"]
        return ids

    @property
    def env(self) -> dict[str, str]:
        pairs = (item.split("=", 1) for item in self.container.get("Env") or [])
        return {p[0]: (p[1] if len(p) > 1 else "") for p in pairs}

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.container.get("Labels") or {})

    def append_layer(self, diff_id: str, created_by: str, comment: str | None = None) -> None:
        self.diff_ids.append(diff_id)
        self.add_history(created_by, comment=comment)

    def add_history(self, created_by: str, *, empty_layer: bool = False, comment: str | None = None) -> None:
        entry: dict[str, Any] = {"created": self.doc.get("created", EPOCH), "created_by": created_by}
        if empty_layer:
            entry["empty_layer"] = True
        if comment:
            entry["comment"] = comment
        self.doc["history"].append(entry)

    def set_env(self, env: Mapping[str, str]) -> None:
        """Merge ``env`` into the existing variables (new values win); order is kept stable."""
        merged = self.env
        merged.update(env)
        self.container["Env"] = [f"{k}={v}" for k, v in merged.items()]

    def set_labels(self, labels: Mapping[str, str]) -> None:
        merged = self.labels
        merged.update(labels)
        self.container["Labels"] = dict(sorted(merged.items()))

    def set_cmd(self, cmd: Sequence[str], entrypoint: Sequence[str] | None = None) -> None:
        self.container["Cmd"] = list(cmd)
        if entrypoint is None:
            self.container.pop("Entrypoint", None)
        else:
            self.container["Entrypoint"] = list(entrypoint)

    def set_workdir(self, path: str) -> None:
        self.container["WorkingDir"] = path

    def set_user(self, user: str) -> None:
        self.container["User"] = user

    def expose(self, *ports: str) -> None:
        exposed = dict(self.container.get("ExposedPorts") or {})
        exposed.update({p: {} for p in ports})
        self.container["ExposedPorts"] = exposed

    def set_created(self, timestamp: str) -> None:
        self.doc["created"] = timestamp

    def to_bytes(self) -> bytes:
        return canonical_json(self.doc)

    def descriptor(self) -> Descriptor:
        return Descriptor.of(MEDIA_OCI_CONFIG, self.to_bytes())


def new_config_doc(architecture: str = "amd64", os_name: str = "linux") -> dict[str, Any]:
    """A fresh config for an image with no layers yet."""
    return {
        "architecture": architecture,
        "os": os_name,
        "created": EPOCH,
        "config": {"Env": [DEFAULT_PATH]},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [],
    }
