"""S3 triggers against a real Ceph RGW: its notifications, keys, multipart uploads, deletes, tokens,
and the listings that recover what its fire-and-forget notifications lose."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from boto3.s3.transfer import TransferConfig
from sqlalchemy import func, select

from publisher.db.models import WebhookDelivery
from publisher.triggers import s3_api
from publisher.triggers.runner import intake_for
from publisher.triggers.s3_api import S3Api
from publisher.triggers.s3_source import Prefix, S3Source, folded
from publisher.triggers.store import DeliveryRow
from tests.infra.ceph import CephRgw
from tests.triggers.s3_bed import TOKEN, S3Bed, make_bed

FAASPUB = shutil.which("faaspub", path=str(Path(sys.executable).parent)) or "faaspub"
AWKWARD = {
    "a+b+c.txt": b"plus",
    "100%25 done %.txt": b"percent",
    "dir with space/\u00fcn\u00ef+c\u00f6d\u00e9&x=1.txt": b"unicode",
    "deep/1/2/3/4/5/6/7/8/9/ten levels?#frag.h5": b"deep",
    "q&a=1;b=2/@!$'()*,.txt": b"punctuation",
}


@pytest.fixture
def bed(tmp_path: Path, ceph_rgw: CephRgw) -> Iterator[S3Bed]:
    bed = make_bed(tmp_path, ceph_rgw)
    yield bed
    bed.context.engine.dispose()


def listed_again(bed: S3Bed) -> int:
    """Reconcile the whole bucket now; the number of deliveries that added (should be none)."""
    with bed.context.sessions() as session:
        before = session.scalar(select(func.count()).select_from(DeliveryRow))
    intake = intake_for(bed.context)
    source = S3Source(S3Api(bed.context.settings.storage.s3), intake)
    assert source.reconcile(Prefix(bed.bucket, "", True), intake)
    with bed.context.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(DeliveryRow)) or 0) - int(before or 0)


def test_awkward_keys_run_once_each_with_the_exact_key(bed: S3Bed) -> None:
    """RGW sends keys as stored; each object runs once, and its presigned URL reads it without
    credentials (what a function does with ``data.url``)."""
    bed.bind("fn")
    with bed.running():
        bed.rgw.notify(bed.bucket, f"{bed.hook}?token={TOKEN}")
        for key, body in AWKWARD.items():
            bed.put(key, body)
        bed.wait_runs(len(AWKWARD))
        assert listed_again(bed) == 0  # notified and listed: the same objects
    expected = {("storage.object.created", f"{bed.bucket}/{key}"): 1 for key in AWKWARD}
    assert bed.runs() == expected
    for event in bed.events():
        key = event["subject"].removeprefix(f"{bed.bucket}/")
        assert event["data"]["path"] == event["subject"]
        assert event["data"]["storage"] == "s3"
        assert event["data"]["url"].startswith(f"{bed.rgw.endpoint}/{bed.bucket}/{quote(key)}?")
        assert "X-Amz-Signature=" in event["data"]["url"]
        read = requests.get(event["data"]["url"], timeout=10)  # no credentials of any kind
        assert read.status_code == 200 and read.content == AWKWARD[key], key


def test_multipart_copy_and_delete_map_to_created_and_deleted(bed: S3Bed) -> None:
    bed.bind("on-created", "in")
    bed.bind("on-deleted", "in", events=["deleted"])
    s3 = bed.rgw.client()
    with bed.running():
        bed.rgw.notify(bed.bucket, f"{bed.hook}?token={TOKEN}")
        parts = TransferConfig(multipart_threshold=5 * 2**20, multipart_chunksize=5 * 2**20)
        s3.upload_fileobj(io.BytesIO(b"m" * (11 * 2**20)), bed.bucket, "in/multi.bin", Config=parts)
        s3.copy_object(
            Bucket=bed.bucket, Key="in/copy.bin", CopySource={"Bucket": bed.bucket, "Key": "in/multi.bin"}
        )
        bed.wait_runs(2, "on-created")
        s3.delete_object(Bucket=bed.bucket, Key="in/copy.bin")
        bed.wait_runs(1, "on-deleted")
        assert listed_again(bed) == 0
    multi, copy = f"{bed.bucket}/in/multi.bin", f"{bed.bucket}/in/copy.bin"
    assert bed.runs("on-created") == {
        ("storage.object.created", multi): 1,
        ("storage.object.created", copy): 1,
    }
    assert bed.runs("on-deleted") == {("storage.object.deleted", copy): 1}
    created = {e["subject"]: e["data"] for e in bed.events("on-created")}
    assert created[multi]["size"] == 11 * 2**20
    assert created[multi]["checksum"].startswith("etag:") and created[multi]["checksum"].endswith("-3")


def test_objects_uploaded_while_the_service_was_down_run_once_after_start(
    bed: S3Bed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RGW's topic points at the service, which is not running: every upload succeeds, every
    notification is lost. The start-up listing (in pages of 5 here) runs them; later uploads
    arrive as notifications."""
    monkeypatch.setattr(s3_api, "PAGE", 5)
    bed.bind("fn", "runs", recursive=False)
    bed.rgw.notify(bed.bucket, f"{bed.hook}?token={TOKEN}")
    missed = [f"runs/early-{n:02d}.dat" for n in range(12)]
    for key in missed:
        bed.put(key, key.encode())
    bed.put("elsewhere/not-bound.dat", b"x")
    bed.put("runs/sub/not-a-direct-child.dat", b"x")
    with bed.running():
        bed.wait_runs(len(missed))
        bed.put("runs/late.dat", b"late")
        bed.wait_runs(len(missed) + 1)
    subjects = [f"{bed.bucket}/{key}" for key in [*missed, "runs/late.dat"]]
    assert bed.runs() == {("storage.object.created", subject): 1 for subject in subjects}


def test_a_wrong_token_is_refused_recorded_and_the_object_still_runs(bed: S3Bed) -> None:
    """A topic whose token is wrong gets 401 for every notification; the refusal is a gap the
    source closes by listing, and the token appears nowhere."""
    bed.bind("fn")
    with bed.running():
        bed.rgw.notify(bed.bucket, f"{bed.hook}?token=not-the-token")
        bed.put("refused.dat", b"x")
        bed.wait_runs(1, timeout=20)
    assert bed.runs() == {("storage.object.created", f"{bed.bucket}/refused.dat"): 1}
    with bed.context.sessions() as session:
        rows = session.execute(select(WebhookDelivery.outcome, WebhookDelivery.detail)).all()
    assert [tuple(row) for row in rows] == [("unauthorized", "wrong token")]


def test_basic_auth_from_an_rgw_topic(bed: S3Bed) -> None:
    """RGW sends ``Authorization: Basic`` for a ``user:password@`` endpoint (a topic created over
    HTTPS); the token is the password."""
    bed.bind("fn")
    with bed.running():
        endpoint = bed.hook.replace("http://", f"http://rgw:{TOKEN}@")
        bed.rgw.notify(bed.bucket, endpoint, basic_auth=True)
        bed.put("basic.dat", b"x")
        bed.wait_runs(1)
    with bed.context.sessions() as session:
        outcomes = session.scalars(select(WebhookDelivery.outcome)).all()
    assert outcomes == ["queued"]  # the notification itself, not a listing, brought it


def test_a_bucket_without_notifications_is_listed_periodically(tmp_path: Path, ceph_rgw: CephRgw) -> None:
    """No topic at all: the periodic listing (``reconcile_interval_s``) still runs every object once."""
    bed = make_bed(tmp_path, ceph_rgw, reconcile_interval_s=1.0)
    bed.bind("fn")
    with bed.running():
        bed.put("unannounced-1.dat", b"1")
        bed.wait_runs(1, timeout=20)
        bed.put("unannounced-2.dat", b"2")
        bed.wait_runs(2, timeout=20)
        time.sleep(2.5)  # more listings: nothing runs again
    assert bed.runs() == {
        ("storage.object.created", f"{bed.bucket}/unannounced-1.dat"): 1,
        ("storage.object.created", f"{bed.bucket}/unannounced-2.dat"): 1,
    }
    bed.context.engine.dispose()


@pytest.mark.parametrize(
    ("bound", "expected"),
    [
        ([("b", True)], {Prefix("b", "", True)}),
        (
            [("b/raw", False), ("b/raw/sub", True)],
            {Prefix("b", "raw/", False), Prefix("b", "raw/sub/", True)},
        ),
        (
            [("b/raw", True), ("b/raw/sub", False), ("b/rawer", True)],
            {Prefix("b", "raw/", True), Prefix("b", "rawer/", True)},
        ),
        ([("b", True), ("c/x", True)], {Prefix("b", "", True), Prefix("c", "x/", True)}),
    ],
)
def test_bound_paths_become_folded_listings(bound: list[tuple[str, bool]], expected: set[Prefix]) -> None:
    """A recursive listing covers the prefixes below it (a prefix is a folder: raw/ is not rawer/)."""
    assert folded([Prefix.of(path, recursive) for path, recursive in bound]) == expected


@pytest.mark.parametrize(
    ("path", "refusal"),
    [
        ("{other}/raw", "outside the buckets namespace 'local' may bind: {bucket}/SPB"),
        ("{bucket}/SPB/run1", "outside the paths namespace 'local' may bind: /{bucket}/SPB/run2, "),
    ],
)
def test_publish_refuses_a_bucket_or_prefix_outside_the_namespace(
    tmp_path: Path, ceph_rgw: CephRgw, path: str, refusal: str
) -> None:
    """``faaspub publish`` (a real process) stops at the bindings, before building anything (the
    prefix rules themselves: ``test_bindings.py``)."""
    bucket, other = ceph_rgw.bucket(), ceph_rgw.bucket()
    credentials = ceph_rgw.credentials_file(tmp_path / "s3-credentials")
    config = tmp_path / "faaspub.toml"
    config.write_text(f"""state_dir = "{tmp_path / "state"}"
[database]
url = "sqlite:///{tmp_path / "faaspub.db"}"
[storage.s3]
endpoint = "{ceph_rgw.endpoint}"
credentials_file = "{credentials}"
[storage.s3.buckets]
local = ["{bucket}/SPB"]
[storage.allowed_paths]
local = ["/{bucket}/SPB/run2", "/{bucket}/SPB2", "/{other}"]
""")
    subprocess.run([FAASPUB, "init", "s3fn", "--dir", str(tmp_path / "fn")], check=True, capture_output=True)
    manifest = tmp_path / "fn" / "function.yaml"
    trigger = f"source: s3\n      path: {path.format(bucket=bucket, other=other)}"
    manifest.write_text(manifest.read_text().replace("source: local\n      path: /incoming", trigger))
    done = subprocess.run(
        [FAASPUB, "publish", str(tmp_path / "fn"), "--config", str(config)], capture_output=True, text=True
    )
    assert done.returncode != 0
    assert refusal.format(bucket=bucket) in " ".join(done.stderr.split()), done.stderr  # (wrapped)
    assert "building" not in done.stdout + done.stderr
