"""Client for the OCI distribution API (Docker registry v2, GitLab's container registry, …).

Blobs: existence check, cross-repository mount, monolithic or chunked upload, verified download.
Manifests: put/get with OCI and Docker media types, tag → digest resolution. Auth: basic or the
bearer-token challenge. Transient failures (connection errors, 5xx) are retried with backoff;
what remains becomes a :class:`FaaspubError` that names the registry and the cause, never a secret.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urljoin, urlsplit

import requests

from publisher.errors import FaaspubError
from publisher.oci.auth import Challenge, Credentials, docker_config_credentials, parse_challenge
from publisher.oci.image import ACCEPT_MANIFESTS, sha256_digest

DEFAULT_CHUNK_THRESHOLD = 32 * 1024 * 1024
DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024
_READ = 1024 * 1024

Body = bytes | Path


class ManifestNotFound(FaaspubError):
    """The store has no manifest under that tag or digest."""


@dataclass(frozen=True)
class FetchedManifest:
    """A manifest or index as the store returned it, verified against its digest."""

    data: bytes
    media_type: str
    digest: str


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0][1:]
    return name in ("127.0.0.1", "localhost", "::1")


def normalise_url(url: str, insecure: bool = False) -> tuple[str, str]:
    """``(base_url, host)`` for ``url``; a bare host gets https, or http when insecure or loopback."""
    if "://" not in url:
        host = url.strip("/")
        scheme = "http" if insecure or _is_loopback(host) else "https"
        url = f"{scheme}://{host}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise FaaspubError(f"registry url {url!r} is not an http(s) URL")
    if parts.scheme == "http" and not (insecure or _is_loopback(parts.netloc)):
        raise FaaspubError(
            f"registry {parts.netloc} uses plain http",
            hint="set registry.insecure = true for a registry without TLS",
        )
    return f"{parts.scheme}://{parts.netloc}", parts.netloc


class RegistryClient:
    """One registry (``http(s)://host[:port]``) speaking the OCI distribution API."""

    def __init__(
        self,
        url: str,
        *,
        credentials: Credentials | None = None,
        credentials_file: str | Path | None = None,
        insecure: bool = False,
        retries: int = 4,
        backoff: float = 0.2,
        timeout: float = 60.0,
        chunk_threshold: int = DEFAULT_CHUNK_THRESHOLD,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        self.base_url, self.host = normalise_url(url, insecure)
        self._credentials = credentials or (
            docker_config_credentials(credentials_file, self.host) if credentials_file else None
        )
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.chunk_threshold = chunk_threshold
        self.chunk_size = chunk_size
        self._session = requests.Session()
        self._session.headers["User-Agent"] = "faaspub"
        self._auth: dict[str, str] = {}  # scope key -> Authorization header
        self._scheme: str | None = None

    def __repr__(self) -> str:
        return f"RegistryClient({self.base_url!r})"

    @property
    def name(self) -> str:
        return self.host

    def reference(self, repository: str) -> str:
        """How images of ``repository`` are named for engines: ``host:port/repository``."""
        return f"{self.host}/{repository}"

    # -- blobs ---------------------------------------------------------------------------------

    def has_blob(self, repository: str, digest: str) -> bool:
        resp = self._request("HEAD", f"/v2/{repository}/blobs/{digest}", repository, ok=(200, 404))
        return resp.status_code == 200

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        """Mount ``digest`` from another repository of this registry; False when the registry declined."""
        resp = self._request(
            "POST",
            f"/v2/{repository}/blobs/uploads/",
            repository,
            params={"mount": digest, "from": from_repository},
            ok=(201, 202),
            extra_scope=f"repository:{from_repository}:pull",
        )
        if resp.status_code == 201:
            return True
        # 202: the registry opened an ordinary upload instead; cancel it, the caller copies.
        if resp.headers.get("Location"):
            self._request("DELETE", self._location(resp), repository, ok=(200, 202, 204, 404))
        return False

    def put_blob(self, repository: str, body: Body, digest: str) -> None:
        """Upload a blob (monolithic, or chunked above ``chunk_threshold``) unless it is already there."""
        if self.has_blob(repository, digest):
            return
        size = body.stat().st_size if isinstance(body, Path) else len(body)
        start = self._request("POST", f"/v2/{repository}/blobs/uploads/", repository, ok=(202,))
        location = self._location(start)
        if size > self.chunk_threshold:
            location = self._upload_chunks(repository, location, body)
            payload: Body = b""
        else:
            payload = body
        self._request(
            "PUT",
            location,
            repository,
            params={"digest": digest},
            body=payload,
            headers={"Content-Type": "application/octet-stream"},
            ok=(201,),
        )

    def _upload_chunks(self, repository: str, location: str, body: Body) -> str:
        offset = 0
        for chunk in _chunks(body, self.chunk_size):
            resp = self._request(
                "PATCH",
                location,
                repository,
                body=chunk,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                },
                ok=(202,),
            )
            offset += len(chunk)
            location = self._location(resp)
        return location

    def get_blob(self, repository: str, digest: str) -> bytes:
        resp = self._request("GET", f"/v2/{repository}/blobs/{digest}", repository, ok=(200,))
        _verify(resp.content, digest, f"blob {digest} of {self.host}/{repository}")
        return resp.content

    def download_blob(self, repository: str, digest: str, dest: Path) -> Path:
        """Stream a blob to ``dest``, verifying its digest before the file appears under that name."""
        resp = self._request("GET", f"/v2/{repository}/blobs/{digest}", repository, ok=(200,), stream=True)
        sha = hashlib.sha256()
        tmp = dest.with_name(dest.name + ".part")
        with open(tmp, "wb") as out:
            for chunk in resp.iter_content(_READ):
                sha.update(chunk)
                out.write(chunk)
        if f"sha256:{sha.hexdigest()}" != digest:
            tmp.unlink(missing_ok=True)
            raise FaaspubError(f"digest mismatch for blob {digest} of {self.host}/{repository}")
        tmp.replace(dest)
        return dest

    # -- manifests -----------------------------------------------------------------------------

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        """PUT a manifest under a tag (or its digest); returns the manifest digest."""
        resp = self._request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            repository,
            body=data,
            headers={"Content-Type": media_type},
            ok=(201,),
        )
        digest = sha256_digest(data)
        returned = resp.headers.get("Docker-Content-Digest")
        if returned and returned != digest:
            raise FaaspubError(f"digest mismatch: {self.host} stored manifest as {returned}, sent {digest}")
        return digest

    def get_manifest(self, repository: str, reference: str) -> FetchedManifest:
        resp = self._request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            repository,
            headers={"Accept": ACCEPT_MANIFESTS},
            ok=(200,),
            not_found=f"image {self.host}/{repository}:{reference} not found",
        )
        digest = sha256_digest(resp.content)
        expected = reference if reference.startswith("sha256:") else resp.headers.get("Docker-Content-Digest")
        if expected and expected != digest:
            raise FaaspubError(f"digest mismatch for manifest {self.host}/{repository}:{reference}")
        media = resp.headers.get("Content-Type", "").split(";")[0].strip()
        return FetchedManifest(resp.content, media, digest)

    def resolve(self, repository: str, reference: str) -> str:
        """The manifest digest a tag currently points to (HEAD; falls back to GET)."""
        resp = self._request(
            "HEAD",
            f"/v2/{repository}/manifests/{reference}",
            repository,
            headers={"Accept": ACCEPT_MANIFESTS},
            ok=(200,),
            not_found=f"image {self.host}/{repository}:{reference} not found",
        )
        digest = resp.headers.get("Docker-Content-Digest")
        return digest or self.get_manifest(repository, reference).digest

    def referrers(self, repository: str, digest: str) -> bytes | None:
        """The referrers API's index of manifests whose ``subject`` is ``digest``; ``None`` when the
        registry has no referrers API (then clients keep the ``sha256-<hex>`` tag index themselves)."""
        resp = self._request("GET", f"/v2/{repository}/referrers/{digest}", repository, ok=(200, 404))
        if resp.status_code == 404 or "json" not in resp.headers.get("Content-Type", ""):
            return None
        return resp.content

    def tags(self, repository: str) -> list[str]:
        resp = self._request("GET", f"/v2/{repository}/tags/list", repository, ok=(200, 404))
        if resp.status_code == 404:
            return []
        return sorted(resp.json().get("tags") or [])

    def delete_manifest(self, repository: str, digest: str) -> None:
        self._request("DELETE", f"/v2/{repository}/manifests/{digest}", repository, ok=(202, 404))

    def ping(self) -> None:
        """Check the registry answers and accepts our credentials."""
        self._request("GET", "/v2/", None, ok=(200,))

    # -- transport -----------------------------------------------------------------------------

    def _location(self, resp: requests.Response) -> str:
        location = resp.headers.get("Location")
        if not location:
            raise FaaspubError(f"registry {self.host} answered an upload without a Location header")
        return urljoin(self.base_url + "/", location)

    def _request(
        self,
        method: str,
        path: str,
        repository: str | None,
        *,
        ok: tuple[int, ...],
        params: dict[str, str] | None = None,
        body: Body | None = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        extra_scope: str | None = None,
        not_found: str | None = None,
    ) -> requests.Response:
        url = path if path.startswith("http") else self.base_url + path
        scope = self._scope(repository, method, extra_scope)
        authenticated = False
        attempt = 0
        while True:
            hdrs = dict(headers or {})
            auth = self._auth.get(scope) or self._auth.get("*")
            if auth:
                hdrs["Authorization"] = auth
            try:
                with _open_body(body) as data:
                    resp = self._session.request(
                        method,
                        url,
                        params=params,
                        data=data,
                        headers=hdrs,
                        timeout=self.timeout,
                        stream=stream,
                        allow_redirects=True,
                    )
            except requests.RequestException as exc:
                if attempt < self.retries:
                    attempt += 1
                    time.sleep(self.backoff * 2 ** (attempt - 1))
                    continue
                raise FaaspubError(
                    f"registry {self.host} unreachable after {attempt + 1} attempts: {type(exc).__name__}",
                    hint="check registry.url and that the registry is running",
                ) from None
            if resp.status_code == 401 and not authenticated and "Www-Authenticate" in resp.headers:
                authenticated = True
                self._authenticate(parse_challenge(resp.headers["Www-Authenticate"]), scope)
                continue
            if resp.status_code >= 500 and resp.status_code not in ok and attempt < self.retries:
                attempt += 1
                time.sleep(self.backoff * 2 ** (attempt - 1))
                continue
            if resp.status_code in ok:
                return resp
            if resp.status_code == 404 and not_found:
                raise ManifestNotFound(not_found)
            raise self._error(method, path, resp)

    @staticmethod
    def _scope(repository: str | None, method: str, extra: str | None) -> str:
        if repository is None:
            return "*"
        actions = "pull" if method in ("GET", "HEAD") else "pull,push"
        scope = f"repository:{repository}:{actions}"
        return f"{scope} {extra}" if extra else scope

    def _authenticate(self, challenge: Challenge, scope: str) -> None:
        if challenge.scheme == "basic":
            if self._credentials is None:
                raise FaaspubError(
                    f"registry {self.host} requires a login and no credentials are configured",
                    hint="add the registry to registry.credentials_file (docker login writes it)",
                )
            self._auth["*"] = self._credentials.basic_header()
        elif challenge.scheme == "bearer":
            self._auth[scope] = "Bearer " + self._token(challenge, scope)
        else:
            raise FaaspubError(f"registry {self.host} asks for unsupported auth scheme {challenge.scheme!r}")

    def _token(self, challenge: Challenge, scope: str) -> str:
        realm = challenge.params.get("realm")
        if not realm:
            raise FaaspubError(f"registry {self.host} sent a bearer challenge without a realm")
        params: list[tuple[str, str]] = []
        if challenge.params.get("service"):
            params.append(("service", challenge.params["service"]))
        scopes = scope.split(" ") if scope != "*" else []
        if challenge.params.get("scope") and challenge.params["scope"] not in scopes:
            scopes.insert(0, challenge.params["scope"])
        params += [("scope", s) for s in scopes]
        headers = {"Authorization": self._credentials.basic_header()} if self._credentials else {}
        try:
            resp = self._session.get(realm, params=params, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise FaaspubError(
                f"token service of registry {self.host} unreachable: {type(exc).__name__}"
            ) from None
        if resp.status_code != 200:
            raise FaaspubError(
                f"registry {self.host}: token request refused ({resp.status_code})",
                hint="check the credentials for this registry",
            )
        doc = resp.json()
        token = doc.get("token") or doc.get("access_token")
        if not isinstance(token, str) or not token:
            raise FaaspubError(f"registry {self.host}: token service returned no token")
        return token

    def _error(self, method: str, path: str, resp: requests.Response) -> FaaspubError:
        code, message = _registry_error(resp)
        what = f"{method} {urlsplit(path).path}"
        # HEAD answers carry no body: fall back to the HTTP reason ("Unauthorized", "Not Found").
        detail = f"{resp.status_code} {code}: {message}" if code else f"{resp.status_code} {resp.reason}"
        if resp.status_code in (401, 403):
            return FaaspubError(
                f"registry {self.host}: access denied for {what} ({detail})",
                hint=f"check the credentials for {self.host} (registry.credentials_file)",
            )
        return FaaspubError(f"registry {self.host}: {what} failed ({detail})")


def _registry_error(resp: requests.Response) -> tuple[str, str]:
    try:
        errors = resp.json().get("errors") or []
    except ValueError:
        return "", ""
    if not errors or not isinstance(errors[0], dict):
        return "", ""
    return str(errors[0].get("code", "")), str(errors[0].get("message", ""))


def _verify(data: bytes, digest: str, what: str) -> None:
    if sha256_digest(data) != digest:
        raise FaaspubError(f"digest mismatch for {what}")


class _open_body:
    """Context manager giving a fresh request body per attempt (files are reopened on retry)."""

    def __init__(self, body: Body | None) -> None:
        self.body = body
        self.fh: BinaryIO | None = None

    def __enter__(self) -> Any:
        if isinstance(self.body, Path):
            self.fh = open(self.body, "rb")
            return self.fh
        return self.body

    def __exit__(self, *exc: object) -> None:
        if self.fh is not None:
            self.fh.close()


def _chunks(body: Body, size: int) -> Iterator[bytes]:
    if isinstance(body, bytes):
        for start in range(0, len(body), size):
            yield body[start : start + size]
        return
    with open(body, "rb") as fh:
        while chunk := fh.read(size):
            yield chunk
