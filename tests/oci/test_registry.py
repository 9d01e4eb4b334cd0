"""The registry client against a real ``docker-registry`` (anonymous and htpasswd)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from publisher.errors import FaaspubError
from publisher.oci.auth import Credentials
from publisher.oci.image import (
    MEDIA_DOCKER_LAYER_GZIP,
    MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
    Descriptor,
    ImageConfig,
    canonical_json,
    sha256_digest,
)
from publisher.oci.layer import build_layer
from publisher.oci.registry import RegistryClient
from publisher.oci.transfer import fetch_image, push_image
from tests.infra.containers import RegistryServer

pytestmark = pytest.mark.containers


def _unique(name: str) -> str:
    return f"test/{name}-{os.urandom(4).hex()}"


def _small_image(client: RegistryClient, repo: str, tag: str, content: bytes) -> str:
    layer = build_layer({"hello.txt": content}, "/action")
    config = ImageConfig()
    config.append_layer(layer.diff_id, "test layer")
    return push_image(client, repo, tag, config, [layer])


def test_blob_upload_exists_and_download(registry: RegistryServer, tmp_path: Path) -> None:
    client = RegistryClient(registry.url)
    repo = _unique("blobs")
    data = os.urandom(1000)
    digest = sha256_digest(data)
    assert not client.has_blob(repo, digest)
    client.put_blob(repo, data, digest)
    assert client.has_blob(repo, digest)
    assert client.get_blob(repo, digest) == data
    assert client.download_blob(repo, digest, tmp_path / "blob").read_bytes() == data


def test_chunked_upload_of_a_file(
    registry: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = RegistryClient(registry.url, chunk_threshold=1000, chunk_size=777)
    data = os.urandom(5000)
    path = tmp_path / "blob"
    path.write_bytes(data)
    digest = sha256_digest(data)
    calls: list[str] = []
    original = client._session.request

    def spy(method: str, url: str, **kw: Any) -> requests.Response:
        calls.append(method)
        return original(method, url, **kw)

    monkeypatch.setattr(client._session, "request", spy)
    repo = _unique("chunked")
    client.put_blob(repo, path, digest)
    assert calls.count("PATCH") == 7  # ceil(5000 / 777)
    assert client.get_blob(repo, digest) == data


def test_cross_repository_mount(registry: RegistryServer) -> None:
    client = RegistryClient(registry.url)
    src, dst = _unique("src"), _unique("dst")
    data = os.urandom(300)
    digest = sha256_digest(data)
    client.put_blob(src, data, digest)
    assert client.mount_blob(dst, digest, src) is True
    assert client.has_blob(dst, digest)
    missing = sha256_digest(b"never uploaded")
    # Not mountable: the registry opens an upload instead; the client cancels it and says no.
    assert client.mount_blob(dst, missing, src) is False


def test_manifest_put_get_and_tag_resolution(registry: RegistryServer) -> None:
    client = RegistryClient(registry.url)
    repo = _unique("fn")
    digest = _small_image(client, repo, "v1", b"one")
    assert digest.startswith("sha256:")
    assert client.resolve(repo, "v1") == digest
    fetched = client.get_manifest(repo, "v1")
    assert fetched.media_type == MEDIA_OCI_MANIFEST and fetched.digest == digest
    assert client.get_manifest(repo, digest).data == fetched.data
    image = fetch_image(client, repo, "v1")
    assert image.config.diff_ids and image.manifest.layers[0].digest
    # Moving the tag changes what it resolves to (what the OpenWhisk backend checks).
    other = _small_image(client, repo, "v1", b"two")
    assert other != digest and client.resolve(repo, "v1") == other
    assert client.tags(repo) == ["v1"]
    with pytest.raises(FaaspubError, match=r"not found"):
        client.resolve(repo, "v9")


def test_index_resolves_to_linux_amd64(registry: RegistryServer) -> None:
    client = RegistryClient(registry.url)
    repo = _unique("multi")
    digest = _small_image(client, repo, "amd64", b"x")
    size = len(client.get_manifest(repo, digest).data)
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_INDEX,
        "manifests": [
            {
                **Descriptor(MEDIA_OCI_MANIFEST, digest, size).to_dict(),
                "platform": {"os": "linux", "architecture": "amd64"},
            },
        ],
    }
    client.put_manifest(repo, "multi", canonical_json(index), MEDIA_OCI_INDEX)
    assert fetch_image(client, repo, "multi").digest == digest


def test_docker_layer_types_are_relabelled_oci(registry: RegistryServer) -> None:
    client = RegistryClient(registry.url)
    repo = _unique("docker")
    layer = build_layer({"a": b"a"})
    config = ImageConfig()
    config.append_layer(layer.diff_id, "x")
    client.put_blob(repo, layer.read_bytes(), layer.digest)
    client.put_blob(repo, config.to_bytes(), config.descriptor().digest)
    from publisher.oci.image import Manifest

    manifest = Manifest(config.descriptor(), (Descriptor(MEDIA_DOCKER_LAYER_GZIP, layer.digest, layer.size),))
    assert manifest.to_dict()["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    digest = client.put_manifest(repo, "t", manifest.to_bytes(), MEDIA_OCI_MANIFEST)
    assert client.resolve(repo, "t") == digest


def test_corrupt_blob_is_detected(registry: RegistryServer, tmp_path: Path) -> None:
    client = RegistryClient(registry.url)
    repo = _unique("corrupt")
    data = b"precious bytes" * 10
    digest = sha256_digest(data)
    client.put_blob(repo, data, digest)
    hexd = digest.split(":")[1]
    stored = registry.workdir / "data/docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"
    stored.write_bytes(b"tampered bytes" * 10)
    with pytest.raises(FaaspubError, match="digest mismatch"):
        client.get_blob(repo, digest)
    with pytest.raises(FaaspubError, match="digest mismatch"):
        client.download_blob(repo, digest, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_basic_auth_push_and_pull(registry_auth: RegistryServer) -> None:
    assert registry_auth.username and registry_auth.password
    client = RegistryClient(
        registry_auth.url, credentials=Credentials(registry_auth.username, registry_auth.password)
    )
    repo = _unique("auth")
    digest = _small_image(client, repo, "v1", b"secret stuff")
    assert client.resolve(repo, "v1") == digest
    assert registry_auth.password not in repr(client)


def test_credentials_from_docker_config(registry_auth: RegistryServer, tmp_path: Path) -> None:
    config = registry_auth.docker_config(tmp_path / "docker" / "config.json")
    client = RegistryClient(registry_auth.url, credentials_file=config)
    client.ping()
    repo = _unique("cfg")
    assert client.resolve(repo, _small_image(client, repo, "v1", b"x")).startswith("sha256:")


def test_wrong_password_names_registry_not_password(registry_auth: RegistryServer) -> None:
    assert registry_auth.username
    wrong = "not-the-password-" + os.urandom(4).hex()
    client = RegistryClient(registry_auth.url, credentials=Credentials(registry_auth.username, wrong))
    with pytest.raises(FaaspubError) as info:
        client.get_manifest("test/x", "v1")
    text = str(info.value)
    assert registry_auth.host in text and "401" in text and "UNAUTHORIZED" in text
    assert wrong not in text and wrong not in repr(info.value)


def test_anonymous_on_auth_registry_says_login_needed(registry_auth: RegistryServer) -> None:
    with pytest.raises(FaaspubError, match=r"requires a login"):
        RegistryClient(registry_auth.url).ping()


def test_unreachable_registry_is_retried_then_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = RegistryClient(f"http://127.0.0.1:{port}", retries=3, backoff=0.05)
    attempts: list[float] = []
    original = client._session.request

    def counting(*args: Any, **kw: Any) -> requests.Response:
        attempts.append(time.monotonic())
        return original(*args, **kw)

    monkeypatch.setattr(client._session, "request", counting)
    with pytest.raises(FaaspubError, match=rf"registry 127\.0\.0\.1:{port} unreachable after 4 attempts"):
        client.ping()
    assert len(attempts) == 4
    # Exponential backoff: 0.05, 0.1, 0.2 s between attempts.
    assert attempts[-1] - attempts[0] >= 0.3


def test_plain_http_needs_insecure_for_remote_hosts() -> None:
    with pytest.raises(FaaspubError, match="plain http"):
        RegistryClient("http://registry.example.org")
    assert RegistryClient("registry.example.org").base_url == "https://registry.example.org"
    assert RegistryClient("127.0.0.1:5000").base_url == "http://127.0.0.1:5000"
