"""Whole-image operations on an :class:`ImageStore`: fetch an image, push one, append layers to a base.

This is the ``crane append`` of faaspub: base layers are mounted (or already present), only new
layers and the new config are uploaded, and an OCI manifest is put under the tag.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from publisher.errors import FaaspubError
from publisher.oci.image import INDEX_TYPES, MEDIA_OCI_MANIFEST, ImageConfig, Manifest, pick_platform
from publisher.oci.layer import Layer
from publisher.oci.store import ImageStore


@dataclass(frozen=True)
class Image:
    """A resolved single-platform image: its manifest digest, manifest and config."""

    repository: str
    digest: str
    manifest: Manifest
    config: ImageConfig

    @property
    def size(self) -> int:
        return self.manifest.config.size + sum(d.size for d in self.manifest.layers)


def fetch_image(
    store: ImageStore, repository: str, reference: str, os_name: str = "linux", architecture: str = "amd64"
) -> Image:
    """Resolve ``reference`` (tag or digest; an index resolves to ``os_name/architecture``)."""
    fetched = store.get_manifest(repository, reference)
    if fetched.media_type in INDEX_TYPES or b'"manifests"' in fetched.data[:4096]:
        desc = pick_platform(fetched.data, os_name, architecture)
        fetched = store.get_manifest(repository, desc.digest)
    manifest = Manifest.parse(fetched.data)
    config = ImageConfig.parse(store.get_blob(repository, manifest.config.digest))
    if len(config.diff_ids) != len(manifest.layers):
        raise FaaspubError(
            f"image {store.reference(repository)}@{fetched.digest}: "
            f"{len(manifest.layers)} layers but {len(config.diff_ids)} diff_ids"
        )
    return Image(repository, fetched.digest, manifest, config)


def ensure_blob(store: ImageStore, repository: str, digest: str, from_repository: str | None) -> None:
    """Make an existing blob of ``from_repository`` available in ``repository`` (mount, else copy)."""
    if store.has_blob(repository, digest):
        return
    if from_repository and from_repository != repository:
        if store.mount_blob(repository, digest, from_repository):
            return
        store.put_blob(repository, store.get_blob(from_repository, digest), digest)
        return
    raise FaaspubError(f"blob {digest} is missing from {store.reference(repository)}")


def push_image(
    store: ImageStore,
    repository: str,
    tag: str,
    config: ImageConfig,
    layers: Sequence[Layer],
    base: Image | None = None,
) -> str:
    """Push ``base``'s layers (mounted) plus ``layers`` with ``config``; returns the manifest digest.

    ``config`` must already list every diff_id (base ones first, then those of ``layers``).
    """
    base_layers = base.manifest.layers if base else ()
    if len(config.diff_ids) != len(base_layers) + len(layers):
        raise FaaspubError("image config diff_ids do not match the layers being pushed")
    for desc in base_layers:
        ensure_blob(store, repository, desc.digest, base.repository if base else None)
    for layer in layers:
        store.put_blob(repository, layer.data if layer.data is not None else _path(layer), layer.digest)
    config_bytes = config.to_bytes()
    config_desc = config.descriptor()
    store.put_blob(repository, config_bytes, config_desc.digest)
    manifest = Manifest(config_desc, (*base_layers, *(layer.descriptor for layer in layers)))
    return store.put_manifest(repository, tag, manifest.to_bytes(), MEDIA_OCI_MANIFEST)


def append_layers(
    store: ImageStore,
    base: Image,
    repository: str,
    tag: str,
    layers: Sequence[tuple[Layer, str]],
    edit: Callable[[ImageConfig], None] | None = None,
) -> str:
    """Push ``base`` plus ``layers`` (each with its history ``created_by``) as ``repository:tag``.

    ``edit`` changes the new config (Cmd, Env, Labels, …) before it is pushed.
    """
    config = ImageConfig(base.config.doc)
    for layer, created_by in layers:
        config.append_layer(layer.diff_id, created_by)
    if edit:
        edit(config)
    return push_image(store, repository, tag, config, [layer for layer, _ in layers], base)


def _path(layer: Layer) -> Path:
    if layer.path is None:
        raise FaaspubError(f"layer {layer.digest} has been discarded before it was pushed")
    return layer.path
