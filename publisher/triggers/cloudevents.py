"""The CloudEvents 1.0 (structured JSON) form of a storage event, as functions receive it.

Built with the runtime's own :func:`faaspub_runtime.events.make_cloudevent`, so the platform sends
exactly what the function-side helpers (``open_input``, ``write_output``) read.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from faaspub_runtime.events import make_cloudevent

from publisher.core.types import StorageEvent


def function_path(event: StorageEvent) -> str:
    """The path the function opens: the file on disk for local storage, else the storage path.

    Local bindings name paths below ``storage.local.root`` (``/incoming``); the function needs the
    real file, which the local source records as a ``file://`` URL.
    """
    if event.source == "local" and event.url and event.url.startswith("file://"):
        return url2pathname(urlsplit(event.url).path)
    return event.path


def storage_cloudevent(event: StorageEvent, event_id: str, url: str | None = None) -> dict[str, Any]:
    """``type`` is ``storage.object.created|deleted``, ``subject`` the full path.

    ``event_id`` is deterministic for (event, function version), so a function that sees the same
    ``id`` twice (a redelivery after a crash) can recognise it. ``url`` replaces the event's own
    ``data.url`` (a presigned URL for an S3 object).
    """
    return make_cloudevent(
        source=f"/faaspub/storage/{event.source}",
        kind=event.kind,
        path=function_path(event),
        size=event.size,
        checksum=event.checksum,
        url=url or event.url,
        event_id=event_id,
        time=event.time.isoformat().replace("+00:00", "Z"),
        storage=event.source,
    )
