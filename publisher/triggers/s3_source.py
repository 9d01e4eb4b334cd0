"""S3 reconciling: list the bound buckets so that no object is missed when a notification was.

Notifications (``POST /hooks/s3``) are the fast path, but S3 servers lose them: Ceph RGW's default
topics make one attempt and drop the event when faaspub is down, slow or answers 5xx; MinIO drops
them without a ``queue_dir``. So the source lists every bound ``bucket/prefix`` (``ListObjectsV2``,
paginated) at start-up (twice: see ``relist_after_start_s``), whenever a gap shows (a notification
refused or not stored, a listing that failed), for each newly bound prefix, and every
``reconcile_interval_s``. Listed objects go through the same intake as notifications with the same
identity (bucket, key, ETag: :func:`publisher.triggers.s3.object_event`), so an object both
notified and listed runs once. S3 lists only complete objects (a multipart upload appears when it
completes), so a listing never announces an object still being written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from publisher.core.parts import EventSink
from publisher.core.types import StorageEvent
from publisher.errors import ConfigError
from publisher.triggers import metrics
from publisher.triggers.intake import Intake, store_with_retry
from publisher.triggers.s3 import is_folder, object_event
from publisher.triggers.s3_api import S3Api

log = logging.getLogger(__name__)


class Prefix(NamedTuple):
    """One listing: a bucket, a key prefix ending in ``/`` (or empty), and whether to go deeper."""

    bucket: str
    prefix: str
    recursive: bool

    @classmethod
    def of(cls, path: str, recursive: bool) -> Prefix:
        """``bucket/some/dir`` as a listing of ``some/dir/`` in ``bucket``."""
        bucket, _, prefix = path.strip("/").partition("/")
        return cls(bucket, prefix + "/" if prefix else "", recursive)

    def covers(self, other: Prefix) -> bool:
        return self.recursive and self.bucket == other.bucket and other.prefix.startswith(self.prefix)


def folded(prefixes: list[Prefix]) -> set[Prefix]:
    """The prefixes without those a recursive one already lists."""
    return {p for p in prefixes if not any(q != p and q.covers(p) for q in prefixes)}


class S3Source:
    """Lists the S3 paths functions are bound to and hands unseen objects to the intake."""

    name = "s3"

    def __init__(
        self,
        api: S3Api,
        intake: Intake,
        *,
        reconcile_s: float = 300.0,
        rebind_s: float = 2.0,
        min_gap_s: float = 1.0,
        relist_after_start_s: float = 5.0,
    ) -> None:
        self.api = api
        self.intake = intake
        self.reconcile_s = reconcile_s
        self.rebind_s = rebind_s  # how soon a newly bound prefix is listed
        self.min_gap_s = min_gap_s  # at most one gap-triggered listing this often
        # The service starts listening only after its sources started: an object uploaded in
        # between lost its notification and may have been passed by the first listing.
        self.relist_after_start_s = relist_after_start_s
        self.missed = intake.missed("s3")
        self.listed: set[Prefix] = set()
        self._stop: Callable[[], bool] = lambda: False

    def bound(self) -> set[Prefix]:
        paths = self.intake.bindings.directories("s3")
        return folded([Prefix.of(path, recursive) for path, recursive in paths])

    def run(self, sink: EventSink, stop: Callable[[], bool]) -> None:
        self._stop = stop
        everything_at = 0.0  # start-up: list everything bound, and again once the service listens
        interval = self.relist_after_start_s
        retry_s = self.min_gap_s
        while not stop():
            wanted = self.bound()
            if self.missed.is_set() or time.monotonic() >= everything_at:
                self.missed.clear()
                todo, self.listed = wanted, set()
                everything_at, interval = time.monotonic() + interval, self.reconcile_s
            else:
                todo = wanted - self.listed
            failed = [p for p in sorted(todo) if not self.reconcile(p, sink)]
            if failed:  # a gap of its own: list everything again, backing off while it fails
                everything_at = time.monotonic() + retry_s
                retry_s = min(retry_s * 2, 60.0)
            elif todo:
                retry_s = self.min_gap_s
            self._pause(self.min_gap_s if todo else 0.0)

    def _pause(self, at_least: float) -> None:
        """Wait ``at_least`` seconds, then until a gap, ``rebind_s`` or stop (whichever is first)."""
        until = time.monotonic() + at_least
        while not self._stop() and time.monotonic() < until:
            time.sleep(0.05)
        until = time.monotonic() + self.rebind_s
        while not self._stop() and time.monotonic() < until and not self.missed.wait(0.1):
            pass

    def reconcile(self, prefix: Prefix, sink: EventSink) -> bool:
        """List ``prefix`` and store the objects the inbox lacks; False when the listing failed."""
        started, listed, recovered = time.monotonic(), 0, 0
        try:
            for page in self.api.objects(*prefix):
                events = [self._event(prefix.bucket, entry) for entry in page if not is_folder(entry["Key"])]
                listed += len(events)
                unseen = self.intake.unseen(events)
                store_with_retry(sink, unseen, self._stop)
                recovered += len(unseen)
                if self._stop():
                    return False
        except (BotoCoreError, ClientError, ConfigError) as exc:
            log.warning("cannot list s3://%s/%s: %s", prefix.bucket, prefix.prefix, exc)
            return False
        self.listed.add(prefix)
        metrics.RECOVERED.labels(source="s3").inc(recovered)
        log.log(
            logging.INFO if recovered else logging.DEBUG,
            "listed s3://%s/%s: %d objects, %d not notified before (%.0f ms)",
            prefix.bucket,
            prefix.prefix,
            listed,
            recovered,
            (time.monotonic() - started) * 1000,
        )
        return True

    def _event(self, bucket: str, entry: dict[str, Any]) -> StorageEvent:
        return object_event(
            bucket,
            entry["Key"],
            etag=entry.get("ETag"),
            size=entry.get("Size"),
            time=entry.get("LastModified"),
            endpoint=self.api.endpoint,
        )
