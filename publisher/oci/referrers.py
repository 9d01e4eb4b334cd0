"""OCI 1.1 artifacts that refer to an image: attach them, find them, read them.

An artifact is an image manifest with an ``artifactType``, the empty config, one layer (the SBOM or
the signed statement) and a ``subject`` descriptor naming the image. Registries with the referrers
API (``GET /v2/<name>/referrers/<digest>``) index such manifests themselves; for the others (the
Debian docker-registry, distribution 2.x) and for a local OCI layout the client keeps the referrers
tag schema: an image index tagged ``sha256-<hex>`` that lists the artifacts (distribution-spec
v1.1, "Referrers tag schema").
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from publisher.errors import FaaspubError
from publisher.oci.image import MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST, canonical_json, sha256_digest
from publisher.oci.registry import ManifestNotFound
from publisher.oci.store import ImageStore

MEDIA_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"
# A writer that lost a race on the tag index retries this often before giving up.
INDEX_ATTEMPTS = 5


@dataclass(frozen=True)
class Referrer:
    """One artifact referring to an image, as the index lists it."""

    digest: str
    artifact_type: str
    size: int
    annotations: Mapping[str, str]

    def descriptor(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "mediaType": MEDIA_OCI_MANIFEST,
            "digest": self.digest,
            "size": self.size,
            "artifactType": self.artifact_type,
        }
        if self.annotations:
            doc["annotations"] = dict(self.annotations)
        return doc


def tag_of(digest: str) -> str:
    """The referrers tag of ``digest`` (``sha256:abc…`` -> ``sha256-abc…``)."""
    return digest.replace(":", "-", 1)[:128]


@dataclass(frozen=True)
class Artifact:
    """Content to attach: its type (also the layer's media type), bytes and manifest annotations."""

    artifact_type: str
    content: bytes
    annotations: Mapping[str, str] = field(default_factory=dict)


def attach(store: ImageStore, repository: str, subject: str, artifacts: Sequence[Artifact]) -> list[Referrer]:
    """Push ``artifacts`` as manifests referring to the manifest ``subject``; where the store has no
    referrers API, list them in the ``sha256-<hex>`` tag index (one update for all of them).

    Attaching the same content again changes nothing (the manifest, and so its digest, is the same).
    """
    image = store.get_manifest(repository, subject)
    store.put_blob(repository, EMPTY, sha256_digest(EMPTY))
    attached = []
    for artifact in artifacts:
        content = artifact.content
        store.put_blob(repository, content, sha256_digest(content))
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "artifactType": artifact.artifact_type,
            "config": {
                "mediaType": MEDIA_EMPTY,
                "digest": sha256_digest(EMPTY),
                "size": len(EMPTY),
                "data": "e30=",
            },
            "layers": [
                {"mediaType": artifact.artifact_type, "digest": sha256_digest(content), "size": len(content)}
            ],
            "subject": {
                "mediaType": image.media_type or MEDIA_OCI_MANIFEST,
                "digest": subject,
                "size": len(image.data),
            },
        }
        if artifact.annotations:
            manifest["annotations"] = dict(artifact.annotations)
        data = canonical_json(manifest)
        digest = store.put_manifest(repository, sha256_digest(data), data, MEDIA_OCI_MANIFEST)
        attached.append(Referrer(digest, artifact.artifact_type, len(data), dict(artifact.annotations)))
    if store.referrers(repository, subject) is None:
        _add_to_tag_index(store, repository, subject, attached)
    return attached


def _add_to_tag_index(store: ImageStore, repository: str, subject: str, new: list[Referrer]) -> None:
    """Read, extend and put the ``sha256-<hex>`` index; re-read to catch a concurrent writer."""
    for _ in range(INDEX_ATTEMPTS):
        listed = _tag_index(store, repository, subject)
        missing = [r for r in new if all(r.digest != known.digest for known in listed)]
        if not missing:
            return
        index = {
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_INDEX,
            "manifests": [r.descriptor() for r in [*listed, *missing]],
        }
        store.put_manifest(repository, tag_of(subject), canonical_json(index), MEDIA_OCI_INDEX)
    raise FaaspubError(
        f"{store.reference(repository)}: could not record artifacts in the referrers tag "
        f"{tag_of(subject)} (other writers kept replacing it)"
    )


def _tag_index(store: ImageStore, repository: str, subject: str) -> list[Referrer]:
    try:
        data = store.get_manifest(repository, tag_of(subject)).data
    except ManifestNotFound:
        return []
    return _parse_index(data)


def _parse_index(data: bytes) -> list[Referrer]:
    try:
        manifests = json.loads(data).get("manifests") or []
    except (ValueError, AttributeError):
        raise FaaspubError("the referrers index is not a JSON image index") from None
    return [
        Referrer(m["digest"], m.get("artifactType", ""), int(m.get("size", 0)), m.get("annotations") or {})
        for m in manifests
        if isinstance(m, dict) and "digest" in m
    ]


def referrers(
    store: ImageStore, repository: str, subject: str, artifact_type: str | None = None
) -> list[Referrer]:
    """The artifacts referring to ``subject`` (of ``artifact_type`` when given), oldest first."""
    data = store.referrers(repository, subject)
    found = _parse_index(data) if data is not None else _tag_index(store, repository, subject)
    return [r for r in found if artifact_type is None or r.artifact_type == artifact_type]


def read(store: ImageStore, repository: str, referrer: Referrer, subject: str) -> bytes:
    """The content of an artifact, after checking it really refers to ``subject``."""
    manifest = json.loads(store.get_manifest(repository, referrer.digest).data)
    if (manifest.get("subject") or {}).get("digest") != subject:
        raise FaaspubError(f"artifact {referrer.digest} does not refer to {subject}")
    layers = manifest.get("layers") or []
    if len(layers) != 1:
        raise FaaspubError(f"artifact {referrer.digest} has {len(layers)} layers, expected one")
    return store.get_blob(repository, layers[0]["digest"])
