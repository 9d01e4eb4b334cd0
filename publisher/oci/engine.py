"""Make an image from a registry or from the local OCI layout runnable by a container engine.

Engines (podman's or Docker's API) pull from registries only. Images in the embedded default store,
a local OCI layout, are handed over as a docker archive instead; either way the engine ends up with
exactly the content of the digest, which is checked.
"""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any

from docker import DockerClient
from docker.errors import DockerException, ImageNotFound

from publisher.config import Settings
from publisher.errors import FaaspubError
from publisher.oci.store import ImageStore


def image_source(settings: Settings, image: str, digest: str | None = None) -> tuple[ImageStore, str, str]:
    """``(store, repository, digest or tag)`` of ``image`` (``[HOST/]REPO[:TAG][@DIGEST]`` or
    ``oci:DIR:REPO[:TAG][@DIGEST]``); without a registry, the configured store is meant."""
    from publisher.oci.layout import OciLayout
    from publisher.oci.registry import RegistryClient
    from publisher.oci.store import open_store, parse_reference

    ref = parse_reference(image)
    digest = digest or ref.ref
    if ref.registry.startswith("oci:"):
        return OciLayout(ref.registry[4:]), ref.repository, digest
    if not ref.registry:
        return open_store(settings), ref.repository, digest
    reg = settings.registry
    client = RegistryClient(ref.registry, insecure=reg.insecure, credentials_file=reg.credentials_file)
    return client, ref.repository, digest


def provide(client: DockerClient, settings: Settings, image: str, digest: str | None = None) -> str:
    """A name under which the engine has ``image`` at ``digest``; pulled or loaded when missing."""
    store, repository, digest = image_source(settings, image, digest)
    if not digest.startswith("sha256:"):  # a tag: run exactly what it points at now
        digest = store.resolve(repository, digest)
    if store.name.startswith("oci:"):
        return _load_from_layout(client, store, repository, digest, image)
    name = f"{store.name}/{repository}@{digest}"
    try:
        client.images.get(name)
    except ImageNotFound:
        try:
            client.images.pull(f"{store.name}/{repository}", tag=digest)
        except DockerException as exc:
            raise FaaspubError(f"cannot pull {name}: {exc}") from None
    return name


def _load_from_layout(
    client: DockerClient, store: ImageStore, repository: str, digest: str, image: str
) -> str:
    from publisher.oci.transfer import fetch_image

    fetched = fetch_image(store, repository, digest)
    config_digest = fetched.manifest.config.digest
    name = f"localhost/faaspub/{repository}:{fetched.digest.split(':', 1)[1][:32]}"
    try:
        if client.images.get(name).id == config_digest:
            return name
    except ImageNotFound:
        pass
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        _add(tar, "config.json", store.get_blob(repository, config_digest))
        layers = []
        for i, desc in enumerate(fetched.manifest.layers):
            layers.append(f"layer{i}.tar")
            _add(tar, layers[-1], store.get_blob(repository, desc.digest))
        _add(
            tar,
            "manifest.json",
            json.dumps([{"Config": "config.json", "RepoTags": [name], "Layers": layers}]),
        )
    try:
        loaded = client.images.load(buf.getvalue())
    except DockerException as exc:
        raise FaaspubError(f"cannot load {image} into the container engine: {exc}") from None
    if not any(img.id == config_digest for img in loaded):
        raise FaaspubError(f"the container engine loaded other content than {image}")
    return name


def _add(tar: tarfile.TarFile, name: str, data: bytes | str) -> None:
    body = data.encode() if isinstance(data, str) else data
    info = tarfile.TarInfo(name)
    info.size = len(body)
    tar.addfile(info, io.BytesIO(body))


def engine_client(settings: Settings, docker_host: str | None = None, timeout: float = 120) -> Any:
    """A docker SDK client on the configured engine (or faaspub's private podman), checked to answer."""
    from publisher.podman import docker_host as default_host

    base_url = docker_host or default_host(settings)
    try:
        client = DockerClient(base_url=base_url, timeout=timeout)
        client.ping()
    except DockerException as exc:
        raise FaaspubError(
            f"container engine at {base_url} does not answer: {type(exc).__name__}",
            hint="start podman system service or Docker, or fix DOCKER_HOST",
        ) from None
    return client
