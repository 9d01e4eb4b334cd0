"""Webhook and CI-notification input: recorded refusals, signed identifiers, remembered bad tokens."""

from __future__ import annotations

import json
import time
import uuid

from sqlalchemy import select

from publisher.db.models import WebhookDelivery
from publisher.gitlab.auth import sign
from tests.gitlab.conftest import PROJECT, PROJECT_ID, SIGNING_SECRET, Env, Project, spec
from tests.security.conftest import VICTIM_SECRET


def outcomes(env: Env) -> list[tuple[str, str | None]]:
    with env.context.sessions() as session:
        rows = session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id))
        return [(row.outcome, row.detail) for row in rows]


def test_deeply_nested_json_is_recorded_as_invalid(two_groups: Env) -> None:
    nested = b'{"a":' * 6_000 + b"1" + b"}" * 6_000  # 36 KB, within the body limit
    answer = two_groups.post(nested, token=VICTIM_SECRET)
    assert answer.status_code == 400, answer.text
    assert outcomes(two_groups) == [("invalid", "body is nested too deeply to be a webhook")]


def test_a_replayed_signed_delivery_is_a_duplicate_whatever_its_idempotency_key(two_groups: Env) -> None:
    """A captured signed delivery, sent again within the tolerance with a fresh unsigned key."""
    push = spec("push_hook")
    push["project"].update(id=PROJECT_ID, path_with_namespace=PROJECT)
    body = json.dumps(push).encode()
    stamp, msg_id = int(time.time()), f"msg_{uuid.uuid4().hex}"
    signed = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(SIGNING_SECRET, msg_id, stamp, body),
        "X-Gitlab-Event": "Push Hook",
    }
    first = two_groups.post(body, token=None, key="original-key", headers=signed)
    replayed = two_groups.post(body, token=None, key=str(uuid.uuid4()), headers=signed)
    assert first.json()["outcome"] == "ignored"  # push events act through their pipelines
    assert replayed.status_code == 200 and replayed.json()["outcome"] == "duplicate", replayed.json()
    assert msg_id in (replayed.json()["detail"] or "")


def test_a_job_token_gitlab_refused_is_not_asked_about_again(two_groups: Env, project: Project) -> None:
    headers = {"JOB-TOKEN": "glcbt-not-a-running-job", "Content-Type": "application/json"}
    for _ in range(3):
        answer = two_groups.client.post("/api/v1/releases", content=b"{}", headers=headers)
        assert answer.status_code == 401, answer.text
    assert project.fake.count("GET", r"^/api/v4/job$") == 1
    assert [outcome for outcome, _ in outcomes(two_groups)] == ["unauthorized"] * 3
