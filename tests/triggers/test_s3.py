"""S3 notifications of the three dialects through the real FastAPI router."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import select

from publisher.core.context import Context
from publisher.db.models import WebhookDelivery
from publisher.triggers.store import EventRow
from tests.triggers.conftest import Publish, make_settings
from webhooks import s3_hooks

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
    assert outcomes(context) == [("unauthorized", "wrong token"), ("unauthorized", "no Authorization header")]
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
