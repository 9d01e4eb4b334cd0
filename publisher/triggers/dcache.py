"""dCache storage events over SSE: one reused channel, per-directory inotify watches, and reconciling.

inotify watches are per directory and name only the basename, so the source keeps a map of
subscription URL -> watched path and, for recursive bindings, watches every subdirectory (and each
new one). Whenever events may have been lost — a new channel, ``EVENT_LOSS`` after a long
disconnect, ``IN_Q_OVERFLOW``, a competing client, a new subdirectory — the source lists the
directory through the namespace API and reports every file; the intake drops those it already
has, because a dCache file's event key is its path, PNFS id and modification time.
"""

from __future__ import annotations

import json
import logging
import posixpath
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import ServerSentEvent, SSEError
from sqlalchemy.orm import Session, sessionmaker

from publisher.core.parts import EventSink
from publisher.core.types import StorageEvent
from publisher.triggers import metrics
from publisher.triggers.bindings import BindingCache
from publisher.triggers.dcache_api import DcacheClient, DcacheError
from publisher.triggers.intake import store_with_retry
from publisher.triggers.store import load_cursor, save_cursor

log = logging.getLogger(__name__)

FLAGS = ["IN_CLOSE_WRITE", "IN_MOVED_TO", "IN_DELETE", "IN_DELETE_SELF", "IN_MOVE_SELF"]
# Recursive watches also need IN_CREATE to notice new subdirectories.
RECURSIVE_FLAGS = [*FLAGS, "IN_CREATE"]
CREATED = {"IN_CLOSE_WRITE", "IN_MOVED_TO"}
GONE = {"IN_IGNORED", "IN_DELETE_SELF", "IN_MOVE_SELF"}


def created_event(
    path: str, entry: dict[str, Any], webdav_url: str | None, observed: datetime | None = None
) -> StorageEvent:
    """A ``created`` event from a namespace entry; its key is the path, PNFS id and modification time."""
    mtime = entry.get("mtime")
    when = observed or datetime.fromtimestamp(float(mtime or 0) / 1000, UTC)
    return StorageEvent(
        source="dcache",
        path=path,
        kind="created",
        time=when,
        size=entry.get("size"),
        event_id=f"{entry.get('pnfsId')}@{mtime}",
        url=f"{webdav_url.rstrip('/')}{quote(path)}" if webdav_url else None,
    )


class _Reconnect(Exception):
    """End this stream and open a new one after ``delay`` seconds."""

    def __init__(self, reason: str, delay: float) -> None:
        super().__init__(reason)
        self.delay = delay


class DcacheSource:
    """Consumes one dCache event channel (persisted, so a restart resumes where it stopped)."""

    name = "dcache"

    def __init__(
        self,
        client: DcacheClient,
        sessions: sessionmaker[Session],
        bindings: BindingCache,
        *,
        channel_timeout_s: int = 300,
        cursor_name: str = "dcache",
        client_id: str = "faaspub",
        webdav_url: str | None = None,
        reconnect_s: float = 1.0,
        competing_backoff_s: float = 30.0,
        cursor_every_s: float = 0.5,
        rewatch_s: float = 10.0,
    ) -> None:
        self.client = client
        self._sessions = sessions
        self.bindings = bindings
        self.channel_timeout_s = channel_timeout_s
        self.cursor_name = cursor_name
        self.client_id = client_id
        self.webdav_url = webdav_url.rstrip("/") if webdav_url else None
        self.reconnect_s = reconnect_s
        self.competing_backoff_s = competing_backoff_s
        self.cursor_every_s = cursor_every_s
        self.rewatch_s = rewatch_s
        self._must_reconcile = False
        self.channel: str | None = None
        self.last_id: str | None = None
        self.watches: dict[str, str] = {}  # subscription URL -> directory
        self._recursive: dict[str, bool] = {}  # directory -> recursive
        self._saved_at = 0.0
        self._sink: EventSink = lambda _event: None
        self._stop: Callable[[], bool] = lambda: False

    # --- the loop -----------------------------------------------------------------------------------
    def run(self, sink: EventSink, stop: Callable[[], bool]) -> None:
        self._sink, self._stop = sink, stop
        delay = self.reconnect_s
        while not stop():
            try:
                self._connect_and_consume()
                delay = self.reconnect_s
            except httpx.ReadTimeout:
                log.debug("dCache event stream idle; resuming")  # no keep-alives: idle reads time out
            except _Reconnect as exc:
                log.warning("dCache event stream: %s; reconnecting in %.1fs", exc, exc.delay)
                self._sleep(exc.delay)
            except (httpx.HTTPError, DcacheError, SSEError) as exc:
                log.warning("dCache event stream interrupted (%s); resuming in %.1fs", exc, delay)
                self._sleep(delay)
                delay = min(delay * 2, 60.0)
            finally:
                self._save_cursor(force=True)

    def _sleep(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        while not self._stop() and time.monotonic() < until:
            time.sleep(min(0.1, seconds))

    def _connect_and_consume(self) -> None:
        lost = self._ensure_channel() or self._must_reconcile
        self._sync_watches(reconcile_new=not lost)
        if lost:
            self.reconcile_all()
            self._must_reconcile = False
        next_sync = time.monotonic() + self.rewatch_s
        with self.client.stream(self.channel or "", self.last_id) as events:
            for sse in events:
                self.handle(sse)
                self._save_cursor()
                if self._stop():
                    return
                if time.monotonic() >= next_sync:  # bindings deployed since we connected
                    self._sync_watches(reconcile_new=True)
                    next_sync = time.monotonic() + self.rewatch_s
        raise _Reconnect("the server closed the stream", self.reconnect_s)

    # --- channel and watches ------------------------------------------------------------------------
    def _ensure_channel(self) -> bool:
        """Reuse the persisted channel or create one; True when events may have been missed."""
        if self.channel is None:
            with self._sessions() as session:
                cursor = load_cursor(session, self.cursor_name)
                if cursor is not None:
                    self.channel, self.last_id = cursor.channel_url, cursor.last_event_id
        if self.channel and self.client.channel_timeout(self.channel) is not None:
            if not self.watches:
                self.watches = self.client.subscriptions(self.channel)
            self.client.set_channel_timeout(self.channel, self.channel_timeout_s)
            return False
        self.channel = self.client.create_channel(self.client_id)
        self.last_id = None
        self.watches = {}
        # Kept alive while disconnected for this long (dCache's default is 5 minutes).
        self.client.set_channel_timeout(self.channel, self.channel_timeout_s)
        self._save_cursor(force=True)
        log.info("dCache event channel %s created", self.channel)
        return True

    def _sync_watches(self, reconcile_new: bool) -> None:
        """Watch every bound directory (and, for recursive bindings, every subdirectory)."""
        for path, recursive in self.bindings.directories("dcache"):
            self._watch(path, recursive, reconcile=reconcile_new, expand=True)

    def _watch(self, path: str, recursive: bool, reconcile: bool, expand: bool = False) -> None:
        self._recursive[path] = self._recursive.get(path, False) or recursive
        if path not in self.watches.values():
            try:
                url = self.client.subscribe(self.channel or "", path, RECURSIVE_FLAGS if recursive else FLAGS)
            except DcacheError as exc:  # e.g. the directory does not exist yet; retried on the next connect
                log.warning("cannot watch %s: %s", path, exc)
                return
            self.watches[url] = path
            if reconcile:
                self.reconcile(path, recursive=False)
        if recursive and expand:
            for entry in self.client.children(path):
                if entry.get("fileType") == "DIR":
                    self._watch(posixpath.join(path, entry["fileName"]), True, reconcile, expand=True)

    # --- events -------------------------------------------------------------------------------------
    def handle(self, sse: ServerSentEvent) -> None:
        """Act on one SSE event; bad input is counted and skipped, never fatal."""
        try:
            data = json.loads(sse.data)
        except json.JSONDecodeError:
            log.warning("dCache sent a %r event whose data is not JSON; skipped", sse.event)
            metrics.reject("malformed")
            return
        if not isinstance(data, dict):
            metrics.reject("malformed")
            return
        if sse.event == "SYSTEM":
            self._system(data)
        elif sse.event == "inotify":
            self._inotify(data, sse.id)
        else:
            log.warning("dCache sent an event of unknown type %r; skipped", sse.event)
            metrics.reject("unknown_event_type")

    def _system(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        if kind == "NEW_SUBSCRIPTION":
            log.debug("dCache confirmed subscription %s", data.get("subscription"))
        elif kind == "SUBSCRIPTION_CLOSED":
            self._lost_watch(str(data.get("subscription")))
        elif kind == "EVENT_LOSS":
            log.warning("dCache reports lost events on %s; reconciling every watched directory", self.channel)
            self.reconcile_all()
        elif kind == "COMPETING_CLIENT":
            # Another consumer took the channel; take it back later and list what it may have consumed.
            self._must_reconcile = True
            raise _Reconnect("another client took over the channel", self.competing_backoff_s)
        elif kind == "SHUTDOWN":
            raise _Reconnect("dCache is shutting down", self.reconnect_s)
        else:
            log.warning("dCache sent an unknown SYSTEM event %r; skipped", kind)
            metrics.reject("unknown_event_type")

    def _inotify(self, data: dict[str, Any], sse_id: str) -> None:
        event, subscription = data.get("event"), data.get("subscription")
        directory = self.watches.get(str(subscription))
        if not isinstance(event, dict) or not isinstance(event.get("mask"), list):
            metrics.reject("malformed")
            return
        if directory is None:
            log.warning("dCache event for unknown subscription %s; skipped", subscription)
            metrics.reject("unknown_subscription")
            return
        self.last_id = sse_id or self.last_id
        mask, name = set(event["mask"]), event.get("name")
        if "IN_Q_OVERFLOW" in mask:
            log.warning("dCache queue overflow on %s; reconciling", directory)
            self.reconcile(directory, recursive=self._recursive.get(directory, False))
        elif mask & GONE:
            self._lost_watch(str(subscription))
        elif not isinstance(name, str) or not name:
            metrics.reject("malformed")
        elif "IN_ISDIR" in mask:
            if mask & {"IN_CREATE", "IN_MOVED_TO"} and self._recursive.get(directory):
                child = posixpath.join(directory, name)
                self._watch(child, True, reconcile=False)
                self.reconcile(child, recursive=True)  # files may have landed before the watch
        elif mask & CREATED:
            self._created(posixpath.join(directory, name))
        elif "IN_DELETE" in mask:
            self._store(
                StorageEvent(
                    source="dcache",
                    path=posixpath.join(directory, name),
                    kind="deleted",
                    time=datetime.now(UTC),
                    event_id=f"{self.channel}#{sse_id}",
                )
            )

    def _lost_watch(self, subscription: str) -> None:
        directory = self.watches.pop(subscription, None)
        if directory is None:
            return
        wanted = dict(self.bindings.directories("dcache"))
        parent_recursive = any(r and directory.startswith(p.rstrip("/") + "/") for p, r in wanted.items())
        if (directory in wanted or parent_recursive) and self.client.stat(directory) is not None:
            self._watch(directory, self._recursive.get(directory, False), reconcile=True)

    def _created(self, path: str, entry: dict[str, Any] | None = None) -> None:
        entry = entry if entry is not None else self.client.stat(path)
        if entry is None or entry.get("fileType", "REGULAR") != "REGULAR":
            return  # gone again before we looked, or not a file
        self._store(created_event(path, entry, self.webdav_url, datetime.now(UTC)))

    def _store(self, event: StorageEvent) -> None:
        store_with_retry(self._sink, [event], self._stop)

    # --- reconciling ----------------------------------------------------------------------------------
    def reconcile(self, directory: str, recursive: bool) -> None:
        """Report every file of ``directory`` (the intake keeps only those not seen before)."""
        for entry in self.client.children(directory):
            name = entry.get("fileName")
            if not name:
                continue
            path = posixpath.join(directory, name)
            if entry.get("fileType") == "DIR":
                if recursive:
                    self._watch(path, True, reconcile=False)
                    self.reconcile(path, recursive=True)
            else:
                self._created(path, entry)

    def reconcile_all(self) -> None:
        for directory, recursive in self.bindings.directories("dcache"):
            self.reconcile(directory, recursive)

    def _save_cursor(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._saved_at < self.cursor_every_s:
            return
        with self._sessions() as session, session.begin():
            save_cursor(session, self.cursor_name, self.channel, self.last_id)
        self._saved_at = time.monotonic()
