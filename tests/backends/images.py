"""Function images for backend tests: a code layer (handler + handler.json) appended to the base image."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from publisher.core.types import FunctionSource, ImageRef, Release
from publisher.manifest.model import Manifest
from publisher.oci.layer import build_layer
from publisher.oci.registry import RegistryClient
from publisher.oci.transfer import append_layers, fetch_image


def build_function_image(
    base: object, name: str, version: str, code: str, handler: str = "handler:main"
) -> ImageRef:
    """Push ``functions/NAME:VERSION-<hash>`` holding ``handler.py`` = ``code``; the tag is unique to it."""
    registry = base.registry  # type: ignore[attr-defined]
    store = RegistryClient(registry.url, insecure=True)
    image = fetch_image(store, base.path, base.digest)  # type: ignore[attr-defined]
    files = {
        "handler.py": code.encode(),
        ".faaspub/handler.json": json.dumps({"handler": handler}).encode(),
    }
    layer = build_layer(files, "/action")
    repository = f"functions/{name}"
    tag = f"{version}-{hashlib.sha256(code.encode()).hexdigest()[:12]}"
    digest = append_layers(store, image, repository, tag, [(layer, "COPY handler")])
    return ImageRef(f"{registry.host}/{repository}", tag, digest)


def make_release(
    name: str,
    version: str,
    image: ImageRef,
    namespace: str = "grp",
    project: int | None = 7,
    root: Path | None = None,
    **manifest: object,
) -> Release:
    """A release of a function whose manifest is ``manifest`` (name, runtime and handler filled in)."""
    fields: dict[str, object] = {"name": name, "runtime": "python:3.11", "handler": "handler:main"}
    fields.update(manifest)
    source = FunctionSource(
        root=root or Path("/nonexistent"),
        manifest=Manifest.model_validate(fields),
        repo_root=root or Path("/nonexistent"),
        namespace=namespace,
        commit="0123456789abcdef0123456789abcdef01234567",
        source_url=f"https://gitlab.example.org/{namespace}/{name}",
        project_id=project,
    )
    return Release(source=source, version=version, image=image)
