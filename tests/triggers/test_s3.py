"""S3 notifications of the three dialects through the real FastAPI router, with hand-written bodies.

What Ceph RGW really sends is tested against a real RGW in ``test_s3_rgw.py``; the bodies here are
those of senders that cannot run here (AWS, MinIO, SNS envelopes) and malformed ones.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from base64 import b64encode
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest
import requests
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import assume, given
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from sqlalchemy import select

from publisher.core.context import Context
from publisher.db.models import WebhookDelivery
from publisher.triggers import s3
from publisher.triggers.runner import intake_for
from publisher.triggers.store import EventRow
from tests.infra.ceph import free_port
from tests.triggers.conftest import Publish, make_settings, wait_for
from webhooks import s3_hooks
from webhooks.app import create_app

TOKEN = "s3-hook-token-77"

MINIO: dict[str, Any] = {
    "EventName": "s3:ObjectCreated:Put",
    "Key": "raw/run 1/img+0001.h5",
    "Records": [
        {
            "eventVersion": "2.0",
            "eventSource": "minio:s3",
            "awsRegion": "",
            "eventTime": "2017-09-04T09:22:31Z",
            "eventName": "s3:ObjectCreated:Put",
            "userIdentity": {"principalId": "xxxxxxxxx"},
            "requestParameters": {"sourceIPAddress": "192.168.1.130:53175"},
            "responseElements": {"x-amz-request-id": "14E11E32397D42C4"},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "Config",
                "bucket": {"name": "raw", "ownerIdentity": {"principalId": "x"}, "arn": "arn:aws:s3:::raw"},
                "object": {
                    "key": "run+1/img%2B0001.h5",
                    "size": 488,
                    "eTag": "f22d66a7d0dbbc4a7cf1122eeeb1a106",
                    "contentType": "application/x-hdf5",
                    "versionId": "1",
                    "sequencer": "14E11E32397D42C4",
                },
            },
            "source": {"host": "192.168.1.130", "port": "53175", "userAgent": "MinIO"},
        }
    ],
}


def aws() -> dict[str, Any]:
    body = copy.deepcopy({"Records": MINIO["Records"]})
    record = body["Records"][0]
    record.update(eventSource="aws:s3", eventName="ObjectCreated:Put", eventVersion="2.1")
    record["s3"]["object"]["key"] = "run+2/a.h5"
    return body


def ceph() -> dict[str, Any]:
    body = copy.deepcopy({"Records": MINIO["Records"]})
    record = body["Records"][0]
    record.update(eventSource="ceph:s3", eventName="ObjectCreated:Put", eventVersion="2.2", eventId="1.2.3")
    obj = record["s3"]["object"]
    obj["key"] = "run3/b.h5"
    obj["etag"] = obj.pop("eTag")
    obj["metadata"] = [{"key": "x-amz-meta-a", "val": "1"}]
    removed = copy.deepcopy(record)
    removed["eventName"] = "ObjectRemoved:Delete"
    removed["s3"]["object"] = {"key": "run3/old.h5", "sequencer": "ABC"}
    ignored = copy.deepcopy(record)
    ignored["eventName"] = "ObjectAccessed:Get"
    body["Records"] += [removed, ignored]
    return body


@pytest.fixture
def client(tmp_path: Path, publish: Publish, context: Context) -> TestClient:
    settings = make_settings(tmp_path, s3={"webhook_token": TOKEN, "endpoint": "http://minio.example:9000"})
    context.settings = settings
    publish("fn", [{"source": "s3", "path": "raw", "recursive": True, "events": ["created", "deleted"]}])
    app = FastAPI()
    app.include_router(s3_hooks.router)
    app.state.context = context
    return TestClient(app)


def post(client: TestClient, body: Any, token: str | None = TOKEN) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/hooks/s3", content=raw, headers={**headers, "Content-Type": "application/json"})


def stored(context: Context) -> list[tuple[str, str, str | None, int | None]]:
    with context.sessions() as session:
        found = session.execute(select(EventRow.path, EventRow.kind, EventRow.checksum, EventRow.size)).all()
    return sorted(tuple(row) for row in found)  # type: ignore[misc]


def outcomes(context: Context) -> list[tuple[str, str | None]]:
    with context.sessions() as session:
        return [
            (d.outcome, d.detail)
            for d in session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id))
        ]


def test_head_answers_for_minio_liveness_check(client: TestClient) -> None:
    assert client.head("/hooks/s3").status_code == 200


def test_three_dialects_are_normalised_and_stored_before_the_answer(
    client: TestClient, context: Context
) -> None:
    for body in (MINIO, aws(), ceph()):
        answer = post(client, body)
        assert answer.status_code == 200, answer.text
    assert stored(context) == [
        ("raw/run 1/img+0001.h5", "created", "etag:f22d66a7d0dbbc4a7cf1122eeeb1a106", 488),
        ("raw/run 2/a.h5", "created", "etag:f22d66a7d0dbbc4a7cf1122eeeb1a106", 488),
        ("raw/run3/b.h5", "created", "etag:f22d66a7d0dbbc4a7cf1122eeeb1a106", 488),
        ("raw/run3/old.h5", "deleted", None, None),
    ]
    assert [o for o, _ in outcomes(context)] == ["queued", "queued", "queued"]
    assert "ObjectAccessed:Get is not a create or remove" in (outcomes(context)[2][1] or "")
    with context.sessions() as session:
        url = session.scalar(select(EventRow.url).where(EventRow.path == "raw/run 1/img+0001.h5"))
    assert url == "http://minio.example:9000/raw/run%201/img%2B0001.h5"
    # MinIO retries a delivery it thinks failed: the same records again add nothing.
    assert post(client, MINIO).json()["queued"] == 0


def test_wrong_or_missing_token_is_401_and_recorded(client: TestClient, context: Context) -> None:
    before = (
        REGISTRY.get_sample_value("faaspub_storage_events_rejected_total", {"reason": "unauthorized"}) or 0
    )
    assert post(client, MINIO, token="wrong").status_code == 401
    assert post(client, MINIO, token=None).status_code == 401
    assert stored(context) == []
    assert outcomes(context) == [
        ("unauthorized", "wrong token"),
        ("unauthorized", "no token (Authorization header or ?token= in the push endpoint)"),
    ]
    after = REGISTRY.get_sample_value("faaspub_storage_events_rejected_total", {"reason": "unauthorized"})
    assert after == before + 2
    with context.sessions() as session:
        assert all(d.body is None for d in session.scalars(select(WebhookDelivery)))


def test_bad_bodies_are_answered_recorded_and_counted(client: TestClient, context: Context) -> None:
    def count(reason: str) -> float:
        return REGISTRY.get_sample_value("faaspub_storage_events_rejected_total", {"reason": reason}) or 0

    not_json, no_records = count("not_json"), count("no_records")
    assert post(client, b"{not json").status_code == 400
    assert post(client, b"[1, 2]").status_code == 400
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "raw"}
    assert post(client, test_event).status_code == 200
    assert [o for o, _ in outcomes(context)] == ["invalid", "invalid", "ignored"]
    assert count("not_json") == not_json + 2
    assert count("no_records") == no_records + 1
    context.settings.server.max_body_bytes = 100
    assert post(client, MINIO).status_code == 413
    assert outcomes(context)[-1][0] == "too_large"
    assert stored(context) == []


def test_no_configured_token_refuses_everything(tmp_path: Path, context: Context) -> None:
    app = FastAPI()
    app.include_router(s3_hooks.router)
    app.state.context = context
    answer = TestClient(app).post("/hooks/s3", json=MINIO, headers={"Authorization": "Bearer anything"})
    assert answer.status_code == 401
    assert "no storage.s3 webhook token" in answer.json()["detail"]


def record(source: str, key: str, name: str = "ObjectCreated:Put") -> dict[str, Any]:
    """A create record as ``source`` (``aws:s3``, ``minio:s3``, ``ceph:s3``) sends it, key encoded by it."""
    body = copy.deepcopy(MINIO["Records"][0])
    body.update(eventSource=source, eventName=name)
    body["s3"]["object"]["key"] = key if source == "ceph:s3" else quote_plus(key, safe="")
    return body


AWKWARD = ["a+b+c.txt", "100%25 done %.txt", "dir with space/ünï+cödé&x=1.txt", "d/e/e/p/?#x=%2F.h5"]


@pytest.mark.parametrize("source", ["aws:s3", "minio:s3", "ceph:s3"])
def test_keys_arrive_exactly_as_stored_in_each_dialect(
    client: TestClient, context: Context, source: str
) -> None:
    """AWS and MinIO (Go's url.QueryEscape) send keys query-encoded, RGW as they are."""
    answer = post(client, {"Records": [record(source, key) for key in AWKWARD]})
    assert answer.json()["queued"] == len(AWKWARD)
    assert sorted(path for path, *_ in stored(context)) == sorted(f"raw/{key}" for key in AWKWARD)


@given(key=st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1))
def test_any_key_round_trips_through_every_dialect(key: str) -> None:
    assume(not key.endswith("/"))
    for source in ("aws:s3", "minio:s3", "ceph:s3"):
        parsed = s3.parse(json.dumps({"Records": [record(source, key)]}).encode())
        assert [e.path for e in parsed.events] == [f"raw/{key}"], source
    # An RGW that does not call itself ceph:s3 (older releases) is known by its own fields.
    legacy = {**record("ceph:s3", key), "eventSource": "aws:s3", "eventId": "1.2", "opaqueData": ""}
    assert [e.path for e in s3.parse(json.dumps({"Records": [legacy]}).encode()).events] == [f"raw/{key}"]


def test_listing_and_notification_give_one_identity() -> None:
    """The ETag is quoted in listings and not in notifications; multipart ETags carry a part count."""
    notified = s3.parse(json.dumps({"Records": [record("ceph:s3", "m/part.bin")]}).encode()).events[0]
    listed = s3.object_event("raw", "m/part.bin", etag='"f22d66a7d0dbbc4a7cf1122eeeb1a106"', size=1)
    assert notified.key() == listed.key()
    rewritten = s3.object_event("raw", "m/part.bin", etag='"0cc175b9c0f1b6a831c399e269772661-3"')
    assert rewritten.key() != listed.key()
    removed = [
        s3.object_event("raw", "m/part.bin", kind="deleted", etag="f22d", sequencer=seq) for seq in "AB"
    ]
    assert removed[0].key() != removed[1].key() and removed[0].checksum is None


@pytest.mark.parametrize(
    ("headers", "query", "status", "detail"),
    [
        ({"Authorization": f"Bearer {TOKEN}"}, "", 200, None),
        ({"Authorization": "Basic " + b64encode(f"rgw:{TOKEN}".encode()).decode()}, "", 200, None),
        ({}, f"?token={TOKEN}", 200, None),
        ({}, "?token=s3-hook-token-78", 401, "wrong token"),
        ({"Authorization": "Basic " + b64encode(b"rgw:nope").decode()}, "", 401, "wrong token"),
        ({"Authorization": "Basic %%%"}, "", 401, "malformed Basic credentials"),
        # A header, when present, is what counts: a right query token does not excuse a wrong header.
        ({"Authorization": "Bearer nope"}, f"?token={TOKEN}", 401, "wrong token"),
    ],
)
def test_token_in_the_header_basic_password_or_query(
    client: TestClient,
    context: Context,
    caplog: pytest.LogCaptureFixture,
    headers: dict[str, str],
    query: str,
    status: int,
    detail: str | None,
) -> None:
    raw = json.dumps(MINIO).encode()
    answer = client.post(f"/hooks/s3{query}", content=raw, headers=headers)
    assert answer.status_code == status, answer.text
    assert outcomes(context)[-1] == ("queued" if status == 200 else "unauthorized", detail)
    assert TOKEN not in answer.text and TOKEN not in caplog.text
    assert intake_for(context).missed("s3").is_set() is (status != 200)


def test_sns_envelope_is_unwrapped_and_a_confirmation_kept_for_the_operator(
    client: TestClient, context: Context
) -> None:
    """AWS: S3 -> SNS -> HTTPS subscription; without raw delivery SNS wraps the body."""
    envelope = {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:eu-central-1:123456789012:faaspub",
        "Subject": "Amazon S3 Notification",
        "Message": json.dumps(aws()),
        "Timestamp": "2026-12-01T12:00:00.000Z",
        "SignatureVersion": "1",
    }
    assert post(client, envelope).json()["queued"] == 1
    assert [path for path, *_ in stored(context)] == ["raw/run 2/a.h5"]
    confirmation = {
        "Type": "SubscriptionConfirmation",
        "TopicArn": "arn:aws:sns:eu-central-1:123456789012:faaspub",
        "Token": "2336412f37",
        "SubscribeURL": "https://sns.eu-central-1.amazonaws.com/?Action=ConfirmSubscription",
    }
    answer = post(client, confirmation)
    assert answer.status_code == 200 and answer.json()["outcome"] == "ignored"
    with context.sessions() as session:
        last = session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id.desc())).first()
    assert last is not None and last.body == confirmation
    assert last.detail == (
        "SNS subscription confirmation: aws sns confirm-subscription "
        "--topic-arn arn:aws:sns:eu-central-1:123456789012:faaspub --token 2336412f37"
    )


def test_folder_markers_and_unreadable_records(client: TestClient, context: Context) -> None:
    """A console's folder marker is no file; a create record naming no object is a gap to list."""
    body = {"Records": [record("ceph:s3", "new folder/"), {"eventName": "ObjectCreated:Put", "s3": {}}]}
    answer = post(client, body)
    assert answer.json()["outcome"] == "ignored"
    assert stored(context) == []
    assert "new folder/ is a folder marker" in (outcomes(context)[-1][1] or "")
    assert intake_for(context).missed("s3").is_set()


def test_the_query_token_never_reaches_uvicorns_access_log(tmp_path: Path, context: Context) -> None:
    """uvicorn logs each request's path with its query string; an S3 push endpoint carries the
    token there. The app keeps it out, whichever way uvicorn was started (here: access log on)."""
    context.settings = make_settings(tmp_path, s3={"webhook_token": TOKEN})
    lines: list[str] = []
    collect = logging.Handler()
    collect.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    port = free_port()
    config = uvicorn.Config(create_app(context), host="127.0.0.1", port=port, log_level="info")
    server = uvicorn.Server(config)  # the default log configuration, access log included
    logging.getLogger("uvicorn.access").addHandler(collect)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, what="uvicorn")
        answer = requests.post(f"http://127.0.0.1:{port}/hooks/s3?token={TOKEN}", json=MINIO, timeout=10)
        assert answer.status_code == 200
        wait_for(lambda: lines, what="the access log line")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        logging.getLogger("uvicorn.access").removeHandler(collect)
    assert any('"POST /hooks/s3 HTTP/1.1" 200' in line for line in lines), lines
    assert not [line for line in lines if TOKEN in line or "token=" in line]
