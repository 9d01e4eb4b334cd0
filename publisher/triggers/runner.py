"""The long-running storage-event consumer: sources feeding the intake, and deliverer threads.

``faaspub serve`` runs it in a background thread (``run_triggers(context, stop)``); a separate worker
process may run it too: deliverers share the outbox through leases. Run the dCache source in only
one process, because dCache allows one consumer per channel. S3 notifications arrive through the
webhook app (``/hooks/s3``); the S3 source here reconciles by listing.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from publisher.core.context import Context
from publisher.core.parts import TriggerSource
from publisher.triggers.bindings import BindingCache
from publisher.triggers.dcache import DcacheSource
from publisher.triggers.dcache_api import DcacheClient, auth_from_settings
from publisher.triggers.delivery import Deliverer
from publisher.triggers.intake import Intake
from publisher.triggers.local import LocalDirectorySource
from publisher.triggers.s3_api import S3Api
from publisher.triggers.s3_source import S3Source

log = logging.getLogger(__name__)

DCACHE_IDLE_RESUME_S = 5.0
_INTAKES: weakref.WeakKeyDictionary[Context, Intake] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def intake_for(context: Context) -> Intake:
    """The process-wide intake of ``context`` (the S3 route and the sources share its wake-up)."""
    with _LOCK:
        intake = _INTAKES.get(context)
        if intake is None:
            intake = _INTAKES[context] = Intake(context.sessions, BindingCache(context.sessions))
        return intake


def sources(context: Context, intake: Intake, s3: S3Api | None = None) -> list[TriggerSource]:
    """The local directory always; dCache when ``storage.dcache.url`` is set; S3 listings when
    ``storage.s3`` has an endpoint and credentials (notifications arrive on ``/hooks/s3`` anyway)."""
    storage = context.settings.storage
    found: list[TriggerSource] = [LocalDirectorySource(storage.local.root)]
    s3 = s3 or S3Api(storage.s3)
    if s3.configured:
        found.append(S3Source(s3, intake, reconcile_s=storage.s3.reconcile_interval_s))
    if storage.dcache.url:
        client = DcacheClient(
            storage.dcache.url,
            auth_from_settings(storage.dcache),
            verify=storage.dcache.verify_tls,
            # An idle stream is resumed this often, and the source then watches paths bound since:
            # a release's dCache trigger is live within seconds, not at the next event.
            idle_timeout_s=DCACHE_IDLE_RESUME_S,
        )
        found.append(
            DcacheSource(
                client,
                context.sessions,
                intake.bindings,
                channel_timeout_s=storage.dcache.channel_timeout_s,
                webdav_url=storage.dcache.webdav_url,
            )
        )
    return found


def supervise(name: str, target: Callable[..., Any], stop: Callable[[], bool], *args: Any) -> None:
    """Run ``target(*args, stop)`` until ``stop()``, restarting it (after a pause) if it fails."""
    while not stop():
        try:
            target(*args, stop)
        except Exception:
            log.exception("%s failed; restarting in 5s", name)
            until = time.monotonic() + 5
            while not stop() and time.monotonic() < until:
                time.sleep(0.1)


def run_triggers(
    context: Context,
    stop: Callable[[], bool],
    deliverer: Deliverer | None = None,
    with_sources: bool = True,
) -> None:
    """Consume storage events and deliver them until ``stop()`` is true.

    ``with_sources=False`` runs deliverers only: extra worker processes share the outbox, while one
    process consumes the sources (dCache allows one consumer per channel).
    """
    intake = intake_for(context)
    s3 = S3Api(context.settings.storage.s3)
    deliverer = deliverer or Deliverer(
        context.sessions, context.backend, wakeup=intake.wakeup, url_for=s3.url_for
    )
    threads = [
        threading.Thread(
            target=supervise,
            args=(source.name, source.run, stop, intake),
            name=f"source-{source.name}",
            daemon=True,
        )
        for source in (sources(context, intake, s3) if with_sources else [])
    ]
    threads.append(
        threading.Thread(
            target=supervise, args=("deliverer", deliverer.run, stop), name="deliverer", daemon=True
        )
    )
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
