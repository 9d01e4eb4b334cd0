"""The parts of dCache's frontend REST API the trigger source uses: event channels and the namespace.

Credentials (bearer token, macaroon, or user name + password) only ever travel in the
``Authorization`` header; they are read from the configured files and never logged.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import ServerSentEvent, connect_sse

from publisher.config import DcacheStorageSettings, read_secret
from publisher.errors import ConfigError, FaaspubError

EVENTS = "/api/v1/events"
NAMESPACE = "/api/v1/namespace"


class DcacheError(FaaspubError):
    """dCache answered with an error (its ``errors[].message``) or not at all."""


class BearerAuth(httpx.Auth):
    """``Authorization: Bearer …`` for OIDC tokens and macaroons (dCache accepts both that way)."""

    def __init__(self, token: str) -> None:
        self.__token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.__token}"
        yield request

    def __repr__(self) -> str:
        return "BearerAuth(**********)"


def auth_from_settings(settings: DcacheStorageSettings) -> httpx.Auth:
    """Bearer token, else macaroon, else basic auth: dCache refuses anonymous event clients."""
    token = read_secret(settings.token, settings.token_file, "storage.dcache token")
    if token:
        return BearerAuth(token)
    macaroon = read_secret(None, settings.macaroon_file, "storage.dcache macaroon")
    if macaroon:
        return BearerAuth(macaroon)
    password = read_secret(None, settings.password_file, "storage.dcache password")
    if settings.username and password:
        return httpx.BasicAuth(settings.username, password)
    raise ConfigError(
        "storage.dcache has no credentials: dCache refuses anonymous event clients",
        hint="set storage.dcache.token_file, macaroon_file, or username and password_file",
    )


def _message(response: httpx.Response) -> str:
    try:
        errors = response.json().get("errors") or []
        return "; ".join(str(e.get("message")) for e in errors) or response.reason_phrase
    except (ValueError, AttributeError):
        return response.text[:200] or response.reason_phrase


class DcacheClient:
    """A small synchronous client for one dCache frontend (``https://host:3880``)."""

    def __init__(
        self,
        url: str,
        auth: httpx.Auth,
        verify: bool = True,
        idle_timeout_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        # dCache sends no keep-alive comments on the SSE stream: an idle read times out and we resume.
        timeout = httpx.Timeout(10.0, read=idle_timeout_s)
        self.http = httpx.Client(
            base_url=self.url, auth=auth, verify=verify, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self.http.close()

    def _check(self, response: httpx.Response, what: str, ok: tuple[int, ...]) -> httpx.Response:
        if response.status_code not in ok:
            raise DcacheError(
                f"dCache {self.url}: {what} failed: {response.status_code} {_message(response)}"
            )
        return response

    # --- channels -----------------------------------------------------------------------------------
    def create_channel(self, client_id: str) -> str:
        response = self.http.post(f"{EVENTS}/channels", json={"client-id": client_id})
        if response.status_code == 429:
            raise DcacheError(
                f"dCache {self.url}: too many event channels for this user (the limit is 128)",
                hint="delete unused channels; faaspub reuses one channel per source",
            )
        return self._check(response, "creating an event channel", (201,)).headers["Location"]

    def channel_timeout(self, channel: str) -> int | None:
        """The channel's disconnect timeout in seconds, or None when the channel is gone."""
        response = self.http.get(channel, headers={"Accept": "application/json"})
        if response.status_code in (404, 403):
            return None
        return int(self._check(response, "reading the event channel", (200,)).json()["timeout"])

    def set_channel_timeout(self, channel: str, seconds: int) -> None:
        self._check(
            self.http.patch(channel, json={"timeout": seconds}), "setting the channel timeout", (204,)
        )

    def delete_channel(self, channel: str) -> None:
        self._check(self.http.delete(channel), "deleting the event channel", (204, 404))

    def subscriptions(self, channel: str) -> dict[str, str]:
        """Subscription URL -> watched path, for the inotify subscriptions of ``channel``."""
        urls = self._check(self.http.get(f"{channel}/subscriptions"), "listing subscriptions", (200,)).json()
        found = {}
        for url in urls:
            if "/subscriptions/inotify/" in url:
                selector = self.http.get(url)
                if selector.status_code == 200:
                    found[url] = selector.json()["path"]
        return found

    def subscribe(self, channel: str, path: str, flags: list[str]) -> str:
        """Watch ``path``; returns the subscription URL (an identical selector gives the existing one)."""
        response = self.http.post(f"{channel}/subscriptions/inotify", json={"path": path, "flags": flags})
        return self._check(response, f"watching {path}", (201, 303)).headers["Location"]

    @contextmanager
    def stream(self, channel: str, last_event_id: str | None) -> Iterator[Iterator[ServerSentEvent]]:
        """The channel's SSE stream, resumed after ``last_event_id`` when given."""
        headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
        with connect_sse(self.http, "GET", channel, headers=headers) as source:
            self._check(source.response, "opening the event stream", (200,))
            yield source.iter_sse()

    # --- namespace ----------------------------------------------------------------------------------
    def _namespace_url(self, path: str) -> str:
        return NAMESPACE + quote(path)

    def stat(self, path: str) -> dict[str, Any] | None:
        response = self.http.get(self._namespace_url(path))
        if response.status_code == 404:
            return None
        return dict(self._check(response, f"reading {path}", (200,)).json())

    def children(self, path: str) -> list[dict[str, Any]]:
        """The entries of directory ``path`` (``fileName``, ``fileType``, ``size``, ``mtime``, ``pnfsId``)."""
        response = self.http.get(self._namespace_url(path), params={"children": "true"})
        if response.status_code == 404:
            return []
        try:
            return list(self._check(response, f"listing {path}", (200,)).json().get("children") or [])
        except json.JSONDecodeError:
            raise DcacheError(f"dCache {self.url}: listing {path} did not return JSON") from None
