"""A small client for Zenodo's legacy deposit API, written on ``requests``.

Why our own client (docs/decisions/archive-zenodo-client.md): the token travels only in the
``Authorization`` header, requests identify themselves with a ``faaspub/<version>`` User-Agent, every
call has a timeout, 429 answers are retried after ``Retry-After``, and a publish that ends in a 5xx or
a timeout is checked by reading the deposition's state before anything is retried (Zenodo may have
published anyway). The client follows the ``links.*`` the server returns instead of building URLs.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from publisher import __version__
from publisher.errors import FaaspubError

log = logging.getLogger(__name__)

USER_AGENT = f"faaspub/{__version__} (+https://zenodo.org/api; research function publishing)"
# Idempotent calls are retried after transport errors and 5xx; POSTs are not (they could create twice).
_IDEMPOTENT = frozenset({"GET", "PUT", "DELETE", "HEAD"})
_RETRYABLE_STATUS = frozenset({500, 502, 503, 504})


class ZenodoError(FaaspubError):
    """Zenodo refused a request; ``status`` is the HTTP status (0 when it never answered)."""

    def __init__(self, message: str, status: int = 0, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class _BearerAuth(requests.auth.AuthBase):
    """Puts the token in the Authorization header; never in the URL, never in repr()."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(token=**********)"


@dataclass(frozen=True)
class Deposition:
    """The parts of a deposition the release flow reads."""

    id: int
    conceptrecid: str
    state: str
    submitted: bool
    metadata: dict[str, Any]
    files: list[dict[str, Any]]
    links: dict[str, str]
    doi: str | None = None
    conceptdoi: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Deposition:
        return cls(
            id=int(data["id"]),
            conceptrecid=str(data.get("conceptrecid") or ""),
            state=str(data.get("state", "")),
            submitted=bool(data.get("submitted", False)),
            metadata=dict(data.get("metadata") or {}),
            files=list(data.get("files") or []),
            links=dict(data.get("links") or {}),
            doi=data.get("doi") or None,
            conceptdoi=data.get("conceptdoi") or None,
        )

    @property
    def published(self) -> bool:
        return self.submitted and self.state in ("done", "inprogress")

    @property
    def prereserved_recid(self) -> int:
        """The record id behind the pre-reserved DOI (its prefix may be wrong on the sandbox)."""
        reserved = self.metadata.get("prereserve_doi") or {}
        return int(reserved.get("recid") or self.id) if isinstance(reserved, dict) else self.id


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _error_text(response: requests.Response) -> str:
    """Zenodo's message plus field errors, accepting both generations of the ``errors`` item shape."""
    try:
        body = response.json()
    except ValueError:
        return response.reason or "no details"
    if not isinstance(body, dict):
        return response.reason or "no details"
    parts = [str(body.get("message") or response.reason or "")]
    for item in body.get("errors") or []:
        if not isinstance(item, dict):
            continue
        messages = item.get("messages") or [item.get("message", "")]
        text = "; ".join(str(m) for m in messages if m)
        parts.append(f"{item.get('field', '?')}: {text}")
    return " | ".join(p for p in parts if p)


def _retry_after(response: requests.Response, default: float) -> float:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


class ZenodoClient:
    """The deposit API calls the release flow needs; ``url`` is the API base (``…/api``)."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = 60.0,
        publish_timeout: float = 300.0,
        retries: int = 4,
        max_wait: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.publish_timeout = publish_timeout
        self.retries = retries
        self.max_wait = max_wait
        self._sleep = sleep
        self._session = requests.Session()
        self._session.headers["User-Agent"] = USER_AGENT
        self._session.headers["Accept"] = "application/json"
        if token:
            self._session.auth = _BearerAuth(token)

    def __repr__(self) -> str:
        return f"ZenodoClient(url={self.url!r})"

    def close(self) -> None:
        self._session.close()

    # -- transport -------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        data: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        expect: Iterable[int] = (200, 201, 202, 204),
        retry_errors: bool | None = None,
    ) -> requests.Response:
        """One call with retries: 429 always (after Retry-After), 5xx/transport for idempotent methods."""
        url = url if url.startswith(("http://", "https://")) else f"{self.url}/{url.lstrip('/')}"
        retry_errors = method in _IDEMPOTENT if retry_errors is None else retry_errors
        expected = set(expect)
        what = f"Zenodo {method} {_path_of(url)}"
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            if hasattr(data, "seek"):
                data.seek(0)
            try:
                response = self._session.request(
                    method,
                    url,
                    json=json,
                    data=data,
                    params=params,
                    headers=headers,
                    timeout=(min(10.0, self.timeout), timeout or self.timeout),
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                if not retry_errors or last:
                    raise ZenodoError(f"{what}: no answer ({type(exc).__name__})") from None
                self._backoff(what, attempt, f"{type(exc).__name__}")
                continue
            if response.status_code in expected:
                return response
            if response.status_code == 429 and not last:
                wait = min(self.max_wait, _retry_after(response, 2.0**attempt))
                log.warning("%s: rate limited (429), retrying in %.1fs", what, wait)
                self._sleep(wait)
                continue
            if response.status_code in _RETRYABLE_STATUS and retry_errors and not last:
                self._backoff(what, attempt, f"HTTP {response.status_code}")
                continue
            raise ZenodoError(
                f"{what} failed with HTTP {response.status_code}: {_error_text(response)}",
                status=response.status_code,
                hint=_hint_for(response.status_code),
            )
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _backoff(self, what: str, attempt: int, reason: str) -> None:
        wait = min(self.max_wait, 0.5 * 2**attempt)
        log.warning("%s: %s, retrying in %.1fs", what, reason, wait)
        self._sleep(wait)

    # -- deposit API -----------------------------------------------------------------------------

    def create(self, metadata: Mapping[str, Any]) -> Deposition:
        response = self.request("POST", "deposit/depositions", json={"metadata": dict(metadata)})
        return Deposition.from_json(response.json())

    def get(self, deposition_id: int) -> Deposition | None:
        """The deposition, or ``None`` when Zenodo no longer has it (deleted draft)."""
        response = self.request("GET", f"deposit/depositions/{deposition_id}", expect=(200, 404, 410))
        return Deposition.from_json(response.json()) if response.status_code == 200 else None

    def drafts(self) -> list[Deposition]:
        """Own unpublished depositions (to find a draft a crashed run left behind)."""
        response = self.request(
            "GET", "deposit/depositions", params={"status": "draft", "sort": "mostrecent", "size": 100}
        )
        return [Deposition.from_json(item) for item in response.json()]

    def update(self, deposition: Deposition, metadata: Mapping[str, Any]) -> Deposition:
        """Replace the whole metadata object (Zenodo's PUT drops whatever is not re-sent)."""
        url = deposition.links.get("self") or f"deposit/depositions/{deposition.id}"
        response = self.request("PUT", url, json={"metadata": dict(metadata)})
        return Deposition.from_json(response.json())

    def new_version(self, latest_id: int) -> Deposition:
        """A new draft under the concept of ``latest_id`` (which must be the latest published version).

        Zenodo-RDM answers with the new draft, the documented API with the old record; both carry the
        new draft in ``links.latest_draft``, so that is what is read.
        """
        response = self.request("POST", f"deposit/depositions/{latest_id}/actions/newversion")
        link = str(response.json()["links"]["latest_draft"])
        new_id = int(link.rstrip("/").rsplit("/", 1)[1])
        draft = self.get(new_id)
        if draft is None:
            raise ZenodoError(f"Zenodo new version draft {new_id} vanished right after it was created")
        return draft

    def latest_record_id(self, record_id: int) -> int:
        """The id of the latest published version of ``record_id``'s concept (records API)."""
        response = self.request("GET", f"records/{record_id}/versions/latest")
        return int(response.json()["id"])

    def delete_file(self, deposition: Deposition, file: Mapping[str, Any]) -> None:
        url = (file.get("links") or {}).get(
            "self"
        ) or f"deposit/depositions/{deposition.id}/files/{file['id']}"
        self.request("DELETE", url, expect=(200, 204, 404))

    def upload(self, deposition: Deposition, name: str, path: Path) -> dict[str, Any]:
        """Stream ``path`` into the draft's bucket as ``name`` and verify Zenodo's md5 of it."""
        bucket = deposition.links.get("bucket")
        if not bucket:
            raise ZenodoError(
                f"Zenodo deposition {deposition.id} has no bucket link",
                hint="Zenodo sometimes omits links.bucket right after a migration; retry the release",
            )
        expected = md5_of(path)
        with path.open("rb") as body:
            response = self.request(
                "PUT",
                f"{bucket}/{quote(name)}",
                data=body,
                headers={"Content-Type": "application/octet-stream"},
            )
        got = str(response.json().get("checksum", "")).removeprefix("md5:")
        if got != expected:
            raise ZenodoError(
                f"Zenodo stored {name} with checksum md5:{got}, expected md5:{expected}",
                hint="the upload was corrupted in transit; the release is retried from a clean draft",
            )
        return dict(response.json())

    def publish(self, deposition: Deposition) -> Deposition:
        """Publish; after a 5xx or a timeout read the state first, since Zenodo may have published."""
        url = deposition.links.get("publish") or f"deposit/depositions/{deposition.id}/actions/publish"
        for attempt in range(self.retries + 1):
            try:
                response = self.request("POST", url, timeout=self.publish_timeout, expect=(202,))
                return Deposition.from_json(response.json())
            except ZenodoError as exc:
                if exc.status and exc.status not in _RETRYABLE_STATUS:
                    raise
                current = self.get(deposition.id)
                if current is not None and current.published:
                    log.warning("Zenodo publish of %s %s, but the record is published", deposition.id, exc)
                    return current
                if attempt == self.retries:
                    raise
                self._backoff(f"Zenodo publish of {deposition.id}", attempt, str(exc.status or "timeout"))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def delete(self, deposition_id: int) -> None:
        """Delete an unpublished draft; a draft that is already gone is fine."""
        self.request("DELETE", f"deposit/depositions/{deposition_id}", expect=(201, 204, 404, 410))


def _path_of(url: str) -> str:
    """The URL without scheme, host and query: enough to name the call, nothing secret."""
    rest = url.split("://", 1)[-1]
    path = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    return path.split("?", 1)[0]


def _hint_for(status: int) -> str | None:
    return {
        401: "the archive token is missing; set archive.token_file (or archive.token_files[namespace])",
        403: "the archive token is wrong or lacks the deposit:write and deposit:actions scopes",
        413: "a release file is larger than Zenodo accepts",
        429: "Zenodo kept rate-limiting; retry later",
    }.get(status)
