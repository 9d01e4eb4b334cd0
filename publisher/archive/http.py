"""HTTP for archive APIs (Zenodo's deposit API, InvenioRDM's records API), written on ``requests``.

Why our own transport (docs/decisions/archive-zenodo-client.md): the token travels only in the
``Authorization`` header, requests identify themselves with a ``faaspub/<version>`` User-Agent, every
call has a timeout, 429 answers are retried after ``Retry-After``, idempotent calls are retried after
transport errors and 5xx, and errors name the call and the server's message, never the token.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import requests

from publisher import __version__
from publisher.errors import FaaspubError

log = logging.getLogger(__name__)
T = TypeVar("T")

USER_AGENT = f"faaspub/{__version__} (+https://zenodo.org/api; research function publishing)"
# Idempotent calls are retried after transport errors and 5xx; POSTs are not (they could create twice).
_IDEMPOTENT = frozenset({"GET", "PUT", "DELETE", "HEAD"})
RETRYABLE_STATUS = frozenset({500, 502, 503, 504})


class ArchiveError(FaaspubError):
    """The archive refused a request; ``status`` is the HTTP status (0 when it never answered)."""

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


class ArchiveHttp:
    """Calls to one archive API base (``…/api``) with retries; subclasses add the API's operations."""

    service = "archive"
    error: type[ArchiveError] = ArchiveError

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
        return f"{type(self).__name__}(url={self.url!r})"

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
        what = f"{self.service} {method} {_path_of(url)}"
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
                    raise self.error(f"{what}: no answer ({type(exc).__name__})") from None
                self._backoff(what, attempt, f"{type(exc).__name__}")
                continue
            if response.status_code in expected:
                return response
            if response.status_code == 429 and not last:
                wait = min(self.max_wait, _retry_after(response, 2.0**attempt))
                log.warning("%s: rate limited (429), retrying in %.1fs", what, wait)
                self._sleep(wait)
                continue
            if response.status_code in RETRYABLE_STATUS and retry_errors and not last:
                self._backoff(what, attempt, f"HTTP {response.status_code}")
                continue
            raise self.error(
                f"{what} failed with HTTP {response.status_code}: {_error_text(response)}",
                status=response.status_code,
                hint=self.hint_for(response.status_code),
            )
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _backoff(self, what: str, attempt: int, reason: str) -> None:
        wait = min(self.max_wait, 0.5 * 2**attempt)
        log.warning("%s: %s, retrying in %.1fs", what, reason, wait)
        self._sleep(wait)

    def publish_checked(
        self,
        url: str,
        expect: Iterable[int],
        answer: Callable[[requests.Response], T],
        published: Callable[[], T | None],
    ) -> T:
        """POST a publish action; after a 5xx or a timeout ask ``published()`` first, since the
        archive may have published anyway, and only then try again."""
        for attempt in range(self.retries + 1):
            try:
                return answer(self.request("POST", url, timeout=self.publish_timeout, expect=expect))
            except ArchiveError as exc:
                if exc.status and exc.status not in RETRYABLE_STATUS:
                    raise
                current = published()
                if current is not None:
                    log.warning(
                        "%s publish %s answered %s, but the record is published", self.service, url, exc
                    )
                    return current
                if attempt == self.retries:
                    raise
                self._backoff(f"{self.service} publish", attempt, str(exc.status or "timeout"))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def hint_for(self, status: int) -> str | None:
        return {
            401: "the archive token is missing; set archive.token_file (or archive.token_files[namespace])",
            403: "the archive token is wrong or lacks the scopes to deposit and publish",
            413: "a release file is larger than the archive accepts",
            429: "the archive kept rate-limiting; retry later",
        }.get(status)


def _path_of(url: str) -> str:
    """The URL without scheme, host and query: enough to name the call, nothing secret."""
    rest = url.split("://", 1)[-1]
    path = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    return path.split("?", 1)[0]
