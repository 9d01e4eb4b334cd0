"""kill -9 ``faaspub serve`` while objects land in a Ceph RGW bucket: every object runs exactly once.

The service is a real subprocess (uvicorn, the intake on ``/hooks/s3``, the S3 source and the
deliverers) with the local backend running the function in podman containers. RGW's notifications
are fire-and-forget: while the service is down (and while it starts, before it listens) they fail
and are gone, although every upload succeeds. The listings after the restart must find those
objects; objects both notified and listed must not run twice. The function reads each object
through the presigned ``data.url`` (it has no S3 credentials) and returns the object's SHA-256.

The service is killed once the runs of what arrived so far have finished: a run in flight at a
kill is the delivery fault suite's subject; here the gap is in the notifications.
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from publisher.config import load_settings
from publisher.core.context import Context
from publisher.core.types import ImageRef
from publisher.db.models import ActivationRecord, WebhookDelivery
from tests.backends.conftest import function_image  # noqa: F401  (fixture)
from tests.backends.images import make_release
from tests.faults import invariants
from tests.faults.processes import tail
from tests.faults.test_service_kill import Service
from tests.infra.ceph import CephRgw
from tests.triggers.conftest import wait_for

pytestmark = [pytest.mark.containers, pytest.mark.slow]

OBJECTS = 100
TOKEN = "kill-test-topic-token-91c3"
READ_AND_HASH = """
import hashlib
from faaspub_runtime.events import StorageEvent, open_input

def main(params):
    event = StorageEvent.from_cloudevent(params)
    with open_input(event) as stream:
        digest = hashlib.sha256(stream.read()).hexdigest()
    return {"subject": event.subject, "sha256": digest, "signed": "X-Amz-Signature=" in event.url}
"""


def write_config(tmp_path: Path, rgw: CephRgw, bucket: str, podman_socket: str) -> Path:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "s3-webhook-token").write_text(TOKEN + "\n")
    credentials = rgw.credentials_file(secrets / "s3-credentials")
    config = tmp_path / "faaspub.toml"
    config.write_text(
        f"""state_dir = "{tmp_path / "state"}"
namespace = "grp"
[server]
workers = 0
[database]
url = "sqlite:///{tmp_path / "faaspub.db"}"
[registry]
insecure = true
[backend]
kind = "local"
[backend.local]
engine = "docker"
docker_host = "{podman_socket}"
network = "host"  # the function reads each object from RGW through its presigned URL
[secrets]
dir = "{secrets / "functions"}"
[storage.s3]
endpoint = "{rgw.endpoint}"
credentials_file = "{credentials}"
webhook_token_file = "{secrets / "s3-webhook-token"}"
[storage.s3.buckets]
grp = ["{bucket}"]
"""
    )
    return config


class Uploader(threading.Thread):
    """Uploads OBJECTS objects one after the other, waiting before upload ``n`` for ``holds[n]``."""

    def __init__(
        self, rgw: CephRgw, bucket: str, rng: random.Random, holds: dict[int, threading.Event]
    ) -> None:
        super().__init__(name="uploader", daemon=True)
        self.client, self.bucket, self.rng, self.holds = rgw.client(), bucket, rng, holds
        self.digests: dict[str, str] = {}  # object path -> sha256 of what was uploaded
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for n in range(OBJECTS):
                if n in self.holds:
                    self.holds[n].wait()
                key = f"frames/run {n:03d}+{n % 7}.h5"
                body = self.rng.randbytes(self.rng.randint(1, 4096))
                self.client.put_object(Bucket=self.bucket, Key=key, Body=body)
                self.digests[f"{self.bucket}/{key}"] = hashlib.sha256(body).hexdigest()
                time.sleep(0.05)
        except BaseException as exc:
            self.error = exc


def successes(context: Context) -> list[ActivationRecord]:
    with context.sessions() as session:
        return list(session.scalars(select(ActivationRecord).where(ActivationRecord.status == "success")))


def test_objects_uploaded_across_a_kill_9_run_exactly_once(
    tmp_path: Path,
    ceph_rgw: CephRgw,
    podman_socket: str,
    function_image: Callable[..., ImageRef],  # noqa: F811
    rng: random.Random,
) -> None:
    bucket = ceph_rgw.bucket("frames")
    config = write_config(tmp_path, ceph_rgw, bucket, podman_socket)
    context = Context(load_settings(config))
    release = make_release(
        "frame-sha",
        "1.0.0",
        function_image("frame-sha", "1.0.0", READ_AND_HASH),
        triggers=[{"storage": {"source": "s3", "path": bucket, "recursive": True}}],
    )
    context.backend.deploy(release)
    context.backend.bind(release, release.source.manifest.storage_triggers())
    service = Service(config, tmp_path / "data", tmp_path / "serve.log")
    kill_after = rng.randint(20, 45)
    killed, restarted = threading.Event(), threading.Event()
    # The last uploads wait for the restart, so some notifications reach the new process too.
    uploader = Uploader(ceph_rgw, bucket, rng, {kill_after: killed, OBJECTS - 15: restarted})
    label = f"kill -9 after {kill_after} of {OBJECTS} uploads"
    service.start()
    try:
        ceph_rgw.notify(bucket, f"{service.url}/hooks/s3?token={TOKEN}")
        uploader.start()
        wait_for(lambda: len(uploader.digests) == kill_after, timeout=60, what=label)
        wait_for(lambda: len(successes(context)) >= kill_after, timeout=120, what=f"{label}: runs so far")
        service.kill()
        killed.set()
        time.sleep(rng.uniform(1.0, 2.0))  # uploads while the service is down
        service.start()  # and while it starts
        restarted.set()
        uploader.join(timeout=120)
        assert uploader.error is None, f"{label}: upload failed: {uploader.error!r}"
        wait_for(lambda: len(successes(context)) >= OBJECTS, timeout=120, what=f"{label}: every object run")
        time.sleep(1.0)  # a second run of anything would show now
    finally:
        killed.set()
        restarted.set()
        service.stop()
    runs = successes(context)
    ran = Counter(run.result["subject"] for run in runs)
    assert sorted(ran) == sorted(uploader.digests), f"{label}: objects and runs differ"
    assert set(ran.values()) == {1}, f"{label}: ran more than once: {[s for s, n in ran.items() if n > 1]}"
    for run in runs:
        subject = run.result["subject"]
        assert run.result["sha256"] == uploader.digests[subject], f"{label}: {subject} read wrong content"
        assert run.result["signed"], f"{label}: {subject} was not given a presigned URL"
    invariants.events_delivered_once(context.sessions, uploader.digests, label)
    log = tail(tmp_path / "serve.log", 10**7)
    assert TOKEN not in log, "the webhook token appears in the service's log"
    recovered = sum(int(n) for n in re.findall(r"(\d+) not notified before", log))
    with context.sessions() as session:
        notified = session.scalar(select(func.count()).where(WebhookDelivery.outcome == "queued"))
    assert recovered > 0, f"{label}: no listing recovered anything"
    assert notified and notified >= kill_after + 15, f"{label}: {notified} notifications, too few"
    context.engine.dispose()
