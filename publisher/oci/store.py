"""The one interface builders and backends use for images: a registry or a local OCI layout.

:func:`open_store` picks the implementation from the settings: ``registry.url`` set means the
OCI distribution API (:class:`~publisher.oci.registry.RegistryClient`), otherwise the local
layout at ``registry.oci_layout`` (:class:`~publisher.oci.layout.OciLayout`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from publisher.errors import FaaspubError
from publisher.oci.layout import OciLayout
from publisher.oci.registry import Body, FetchedManifest, RegistryClient

if TYPE_CHECKING:
    from publisher.config import Settings


@runtime_checkable
class ImageStore(Protocol):
    """Blobs and manifests by repository; both registries and layouts verify digests on read."""

    @property
    def name(self) -> str:
        """``host:port`` for a registry, ``oci:DIR`` for a layout."""
        ...

    def reference(self, repository: str) -> str:
        """The name engines use for ``repository`` in this store."""
        ...

    def has_blob(self, repository: str, digest: str) -> bool: ...

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool: ...

    def put_blob(self, repository: str, body: Body, digest: str) -> None: ...

    def get_blob(self, repository: str, digest: str) -> bytes: ...

    def download_blob(self, repository: str, digest: str, dest: Path) -> Path: ...

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str: ...

    def get_manifest(self, repository: str, reference: str) -> FetchedManifest: ...

    def resolve(self, repository: str, reference: str) -> str: ...

    def referrers(self, repository: str, digest: str) -> bytes | None:
        """The referrers API's index for ``digest``, ``None`` where the store has no such API."""
        ...

    def tags(self, repository: str) -> list[str]: ...

    def delete_manifest(self, repository: str, digest: str) -> None: ...


def open_store(settings: Settings) -> ImageStore:
    """The image store the configuration names (registry URL, else the local OCI layout)."""
    reg = settings.registry
    if reg.url:
        return RegistryClient(reg.url, insecure=reg.insecure, credentials_file=reg.credentials_file)
    return OciLayout(reg.oci_layout)


def store_named(name: str, settings: Settings) -> ImageStore:
    """The store an image reference names (``host:port`` or ``oci:DIR``; empty: the configured one)."""
    configured = open_store(settings)
    if not name or name == configured.name:
        return configured
    if name.startswith("oci:"):
        return OciLayout(name[4:])
    reg = settings.registry
    return RegistryClient(name, insecure=reg.insecure, credentials_file=reg.credentials_file)


_NAME = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Reference:
    """A parsed image reference: ``[registry/]repository[:tag][@digest]`` or ``oci:DIR:repository[:tag]``."""

    registry: str  # "host:port", "oci:DIR" or "" when none was given
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def ref(self) -> str:
        """The digest when pinned, else the tag (``latest`` by default): what to ask the store for."""
        return self.digest or self.tag or "latest"


def parse_reference(text: str) -> Reference:
    """Split an image reference; a bad name, tag or digest is a :class:`FaaspubError` naming it.

    Every form faaspub prints is accepted back: ``[registry/]repository[:tag][@digest]`` and
    ``oci:DIR:repository[:tag][@digest]``.
    """
    # A digest is always last and its algorithm's colon must not be taken for a tag separator.
    rest, _, digest = text.partition("@")
    if text.startswith("oci:"):
        root, sep, last = rest[4:].rpartition(":")
        # oci:DIR:repo:tag has two colons after DIR; oci:DIR:repo one.
        head, sep2, maybe_repo = root.rpartition(":")
        if sep2 and "/" not in last and _NAME.match(maybe_repo):
            return _checked(Reference(f"oci:{head}", maybe_repo, last or None, digest or None), text)
        if not sep:
            raise FaaspubError(f"image reference {text!r} must be oci:DIR:REPOSITORY[:TAG][@DIGEST]")
        return _checked(Reference(f"oci:{root}", last, None, digest or None), text)
    registry = ""
    first, slash, remainder = rest.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, rest = first, remainder
    tag = None
    if ":" in rest.rsplit("/", 1)[-1]:
        rest, _, tag = rest.rpartition(":")
    return _checked(Reference(registry, rest, tag, digest or None), text)


def _checked(ref: Reference, text: str) -> Reference:
    if not _NAME.match(ref.repository):
        raise FaaspubError(
            f"image reference {text!r}: repository {ref.repository!r} is not a valid name",
            hint="lowercase letters, digits and . _ - separated by /",
        )
    if ref.tag is not None and not _TAG.match(ref.tag):
        raise FaaspubError(f"image reference {text!r}: tag {ref.tag!r} is not valid")
    if ref.digest is not None and not _DIGEST.match(ref.digest):
        raise FaaspubError(f"image reference {text!r}: digest {ref.digest!r} is not a sha256 digest")
    return ref
