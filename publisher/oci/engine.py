"""Make an image from a registry or from the local OCI layout runnable by a container engine.

Engines (podman's or Docker's API) pull from registries only. Images in the embedded default store,
a local OCI layout, are handed over as a docker archive instead; either way the engine ends up with
exactly the content of the digest, which is checked.
"""

from __future__ import annotations

import io
import json
import tarfile
from typing import TYPE_CHECKING, Any

from docker import DockerClient
from docker.errors import DockerException, ImageNotFound

from publisher.config import Settings
from publisher.errors import FaaspubError
from publisher.oci.store import ImageStore

if TYPE_CHECKING:
    from publisher.oci.transfer import Image


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
    try:
        if not _pull_from_layout(client, store, repository, fetched.digest, name):
            client.images.load(_docker_archive(store, repository, fetched, name))
    except DockerException as exc:
        raise FaaspubError(f"cannot load {image} into the container engine: {exc}") from None
    try:
        loaded = client.images.get(name)
    except ImageNotFound:
        loaded = None
    if loaded is None or loaded.id != config_digest:
        raise FaaspubError(f"the container engine holds other content than {image} under {name}")
    return name


def _pull_from_layout(
    client: DockerClient, store: ImageStore, repository: str, digest: str, name: str
) -> bool:
    """Pull through this process's layout server (podman's own API); False when the engine has none.

    Only the layers the engine lacks travel, so a code-only change arrives in milliseconds.
    """
    from publisher.oci.layout import OciLayout
    from publisher.oci.serve import serve_layout

    assert isinstance(store, OciLayout)
    source = f"{serve_layout(store).prefix}/{repository}@{digest}"
    api = client.api
    response = api._post(
        api._url("/libpod/images/pull"),
        params={"reference": source, "tlsVerify": "false", "quiet": "true", "policy": "missing"},
        timeout=600,
    )
    if response.status_code == 404:
        return False  # not podman: Docker's API has no pull with TLS verification off
    lines = [line for line in response.text.splitlines() if line.strip()]
    try:
        result = json.loads(lines[-1]) if lines else {}
    except ValueError:
        result = {"error": response.text[-300:]}
    if response.status_code != 200 or result.get("error"):
        reason = result.get("error") or result.get("message") or response.text[-300:]
        raise FaaspubError(f"the container engine could not pull {repository}@{digest}: {reason}")
    repo, _, tag = name.rpartition(":")
    client.images.get(str(result.get("id"))).tag(repo, tag)
    return True


def _docker_archive(store: ImageStore, repository: str, fetched: Image, name: str) -> bytes:
    """The image as a docker archive (every layer, whatever the engine has already)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        _add(tar, "config.json", store.get_blob(repository, fetched.manifest.config.digest))
        layers = []
        for i, desc in enumerate(fetched.manifest.layers):
            layers.append(f"layer{i}.tar")
            _add(tar, layers[-1], store.get_blob(repository, desc.digest))
        _add(
            tar,
            "manifest.json",
            json.dumps([{"Config": "config.json", "RepoTags": [name], "Layers": layers}]),
        )
    return buf.getvalue()


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
