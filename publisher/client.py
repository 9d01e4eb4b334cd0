"""A small client of the faaspub catalogue API, for notebooks and scripts.

>>> from publisher.client import Client
>>> fp = Client("http://127.0.0.1:8080", token=os.environ.get("FAASPUB_TOKEN"))
>>> fp.search("hello")                       # functions whose name or description match
>>> fp.function("hello")["citation"]["bibtex"]
>>> run = fp.invoke("hello", {"name": "Ada"})
>>> run["result"], fp.logs(run["id"])

Reading the catalogue needs no token unless the service keeps it private; results and logs need a
token with the ``read`` scope, invoking one with the ``invoke`` scope (``faaspub token create``).
Errors raise :class:`CatalogueError` with the service's message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator
from datetime import datetime
from typing import Any

import httpx

PAGE = 200


class CatalogueError(Exception):
    """An error answer from the service: its HTTP status, message and hint."""

    def __init__(self, status: int, message: str, hint: str | None = None) -> None:
        super().__init__(f"{status}: {message}" + (f" ({hint})" if hint else ""))
        self.status = status
        self.message = message
        self.hint = hint


class _Bearer(httpx.Auth):
    """Sends the token in the Authorization header; never shows it in a repr."""

    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request

    def __repr__(self) -> str:
        return "_Bearer(****)"


class Client:
    """The catalogue API of one faaspub service.

    ``transport`` lets tests and notebooks talk to an in-process app (``httpx.ASGITransport`` is
    async-only, so use a live server or ``httpx.MockTransport`` there).
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url + "/api/v1",
            auth=_Bearer(token) if token else None,
            timeout=timeout,
            transport=transport,
            headers={"Accept": "application/json"},
        )

    def __repr__(self) -> str:
        return f"Client({self.base_url!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- transport -------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        params = kwargs.pop("params", None)
        if params:
            kwargs["params"] = {k: _param(v) for k, v in params.items() if v is not None}
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                body = response.json()
                raise CatalogueError(response.status_code, body.get("error", response.text), body.get("hint"))
            except ValueError:
                raise CatalogueError(response.status_code, response.text or response.reason_phrase) from None
        return response.json()

    def _items(self, path: str, params: dict[str, Any], limit: int | None) -> list[dict[str, Any]]:
        """Up to ``limit`` items (all when ``None``), following the pages' cursors."""
        items: list[dict[str, Any]] = []
        cursor = None
        while limit is None or len(items) < limit:
            want = PAGE if limit is None else min(PAGE, limit - len(items))
            page = self._request("GET", path, params={**params, "limit": want, "cursor": cursor})
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return items

    # -- catalogue -------------------------------------------------------------------------------

    def functions(self, q: str | None = None) -> list[dict[str, Any]]:
        """Every published function, or those whose name or description contains ``q``."""
        return self.search(q)

    def search(
        self,
        q: str | None = None,
        *,
        keyword: str | None = None,
        namespace: str | None = None,
        trigger_path: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Functions matching all given filters, sorted by name.

        ``trigger_path`` finds functions triggered by files at a storage path (or above or below it).
        """
        params = {"q": q, "keyword": keyword, "namespace": namespace, "trigger_path": trigger_path}
        return self._items("/functions", params, limit)

    def function(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        """One function (``name`` or ``namespace/name``): triggers, live version, DOIs, citations."""
        result: dict[str, Any] = self._request("GET", f"/functions/{name}", params={"namespace": namespace})
        return result

    def versions(self, name: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """The versions of a function, newest first; ``current`` marks the live one."""
        return self._items(f"/functions/{name}/versions", {"namespace": namespace}, None)

    def version_by_doi(self, doi: str) -> dict[str, Any]:
        """The version a DOI (``10.5281/zenodo.…`` or its https://doi.org/ URL) was registered for."""
        found = self._items("/versions", {"doi": doi.removeprefix("https://doi.org/")}, 1)
        if not found:
            raise CatalogueError(404, f"no version has DOI {doi}")
        return found[0]

    # -- runs ------------------------------------------------------------------------------------

    def invoke(
        self,
        name: str,
        data: dict[str, Any] | None = None,
        version: str | None = None,
        namespace: str | None = None,
    ) -> dict[str, Any]:
        """Run the function (its live version, or ``version``) with ``data``; the finished activation."""
        result: dict[str, Any] = self._request(
            "POST",
            f"/functions/{name}/invoke",
            params={"version": version, "namespace": namespace},
            json=data or {},
        )
        return result

    def activations(
        self,
        function: str | None = None,
        *,
        namespace: str | None = None,
        version: str | None = None,
        status: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        logs: bool = False,
        limit: int | None = 50,
    ) -> list[dict[str, Any]]:
        """Activations newest first; ``status="failed"`` gives every failure."""
        params = {
            "function": function,
            "namespace": namespace,
            "version": version,
            "status": status,
            "since": since,
            "until": until,
            "logs": logs or None,
        }
        return self._items("/activations", params, limit)

    def activation(self, activation_id: str) -> dict[str, Any]:
        """One activation with its result and logs."""
        result: dict[str, Any] = self._request("GET", f"/activations/{activation_id}")
        return result

    def logs(self, activation_id: str) -> list[str]:
        """The log lines of one activation."""
        return list(self.activation(activation_id)["logs"])

    def follow(
        self,
        name: str,
        interval: float = 2.0,
        *,
        namespace: str | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield the function's new activations as they appear, oldest first, polling every ``interval``.

        Activations that existed before the call are skipped. Stop iterating (``break``) or pass
        ``stop`` to end it; in a notebook, interrupting the cell works too.
        """
        seen = {a["id"] for a in self.activations(name, namespace=namespace, limit=PAGE)}
        while stop is None or not stop():
            fresh = [
                a for a in self.activations(name, namespace=namespace, limit=PAGE) if a["id"] not in seen
            ]
            for activation in reversed(fresh):
                seen.add(activation["id"])
                yield activation
            if stop is not None and stop():
                return
            time.sleep(interval)


def _param(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return value
