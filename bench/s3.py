"""S3 upload -> function start through a real Ceph RGW (issue 22).

A throwaway Ceph cluster (``tests/infra/ceph.py``) with a bucket whose topic pushes to
``/hooks/s3?token=…`` of the service, which runs in this process as ``faaspub serve`` composes it
(the app with its storage-event consumer, served by uvicorn on a loopback port); the function runs
on the local backend in warm podman containers and returns ``time.time()`` from its first line.
Measured, for small objects uploaded one after the other:

* upload -> function start: from the start of the PUT (the uploader's clock) to the handler's start;
* the PUT itself, which includes RGW's synchronous notification (what every uploader pays), beside
  the same PUT to a bucket without notification;
* ``/hooks/s3`` answer time as the service records it (auth, parse, store in one transaction).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select

from bench.containers import percentile, podman_local_backend, wait_started, warm
from publisher.db.models import WebhookDelivery
from tests.infra.ceph import free_port, start_ceph_rgw
from tests.triggers.s3_bed import s3_storage, served

COMMAND = "python bench/run.py s3"
TOKEN = "bench-topic-token"


def _uploads(client: Any, bucket: str, n: int, spacing_s: float) -> tuple[dict[str, float], list[float]]:
    """Upload ``n`` 1 KB objects to ``bucket/in/``: when each PUT started (by path), how long each took."""
    sent, puts = {}, []
    for i in range(n):
        key = f"in/obj-{i:05d}.h5"
        began = time.time()
        client.put_object(Bucket=bucket, Key=key, Body=b"x" * 1024)
        sent[f"{bucket}/{key}"] = began
        puts.append(time.time() - began)
        time.sleep(spacing_s)
    return sent, puts


def upload_to_start(n: int, spacing_s: float) -> dict[str, Any]:
    """The samples of every figure, in seconds, for ``n`` uploads ``spacing_s`` apart."""
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="faaspub-bench-s3-") as name:
        tmp = Path(name)
        rgw = start_ceph_rgw(tmp / "ceph")
        try:
            bucket, plain = rgw.bucket("bench"), rgw.bucket("plain")
            storage = {"s3": s3_storage(tmp, rgw, webhook_token=TOKEN)}
            trigger = {"source": "s3", "path": f"{bucket}/in", "recursive": True}
            bed = podman_local_backend(tmp, trigger, storage=storage, server={"workers": 0})
            with bed as (context, backend):
                warm(backend)
                with served(context, free_port()) as url:
                    rgw.notify(bucket, f"{url}/hooks/s3?token={TOKEN}")
                    time.sleep(1.0)  # the S3 source's start-up listing
                    setup = time.monotonic() - began
                    sent, puts = _uploads(rgw.client(), bucket, n, spacing_s)
                    started = wait_started(context, n)
                    _, plain_puts = _uploads(rgw.client(), plain, n, spacing_s)
                with context.sessions() as session:
                    answers = session.scalars(
                        select(WebhookDelivery.answer_ms).where(WebhookDelivery.outcome == "queued")
                    ).all()
        finally:
            rgw.stop()
    return {
        "lags": [started[subject] - t for subject, t in sent.items() if subject in started],
        "puts": puts,
        "plain_puts": plain_puts,
        "answers": [ms / 1000 for ms in answers if ms is not None],
        "setup_s": round(setup, 1),
    }


def _rows(
    key: str, what: str, samples: list[float], peer: tuple[str, list[float]] | None = None, **extra: Any
) -> list[dict[str, Any]]:
    rows = []
    for pct in (50, 99):
        value = round(percentile(samples, pct) * 1000, 1)
        row = {
            "id": f"s3.{key}_p{pct}",
            "metric": f"{what}, p{pct} ({len(samples)} objects)",
            "value": value,
            "unit": "ms",
            "command": COMMAND,
            "load_avg_1m": round(os.getloadavg()[0], 2),
            **extra,
        }
        if peer:
            peer_value = round(percentile(peer[1], pct) * 1000, 1)
            row.update(peer=peer[0], peer_value=peer_value, ratio=round(value / peer_value, 2))
        rows.append(row)
    return rows


def run(quick: bool) -> list[dict[str, Any]]:
    found = upload_to_start(200 if quick else 1_000, 0.02)
    assert len(found["lags"]) == len(found["puts"]), "not every upload ran"
    return [
        *_rows(
            "upload_to_start_ms",
            "S3 upload -> function start (Ceph RGW notification, warm podman containers)",
            found["lags"],
            goal="p99 < 250 ms with warm containers",
            setup_s=found["setup_s"],
        ),
        *_rows(
            "put_with_notification_ms",
            "S3 PUT of 1 KB, RGW waiting for /hooks/s3",
            found["puts"],
            peer=("the same PUT to a bucket without notification", found["plain_puts"]),
        ),
        *_rows("hook_answer_ms", "/hooks/s3 answer time (auth, parse, store)", found["answers"]),
    ]


if __name__ == "__main__":
    print(json.dumps(run(quick="--full" not in sys.argv), indent=2))
