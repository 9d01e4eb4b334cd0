"""``POST /hooks/gitlab``: authentication, routing, dedupe, limits, and that every answer is recorded."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from sqlalchemy import func, select

from publisher.db.models import Job, WebhookDelivery
from publisher.gitlab.auth import sign
from tests.gitlab.conftest import GROUP_SECRET, PROJECT, PROJECT_ID, SIGNING_SECRET, Env, spec


def deliveries(env: Env) -> list[WebhookDelivery]:
    with env.context.sessions() as session:
        return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def jobs(env: Env) -> list[Job]:
    with env.context.sessions() as session:
        return list(session.scalars(select(Job).order_by(Job.id)))


def tag_pipeline_body(pipeline_id: int = 501, project: str = PROJECT) -> dict[str, Any]:
    body = spec("pipeline_hook")
    body["object_attributes"].update(id=pipeline_id, ref="v1.0.0", tag=True, source="push")
    body.pop("merge_request")
    body["project"].update(id=PROJECT_ID, path_with_namespace=project)
    return body


def test_tag_pipeline_is_stored_with_its_job_before_the_answer(env: Env) -> None:
    answer = env.post(tag_pipeline_body())
    assert answer.status_code == 202, answer.text
    assert answer.json()["outcome"] == "queued"
    [delivery] = deliveries(env)
    [job] = jobs(env)
    assert delivery.outcome == "queued" and delivery.project == PROJECT
    assert job.kind == "gitlab.release"
    assert job.payload["delivery_id"] == delivery.id
    assert job.payload["ref"] == "v1.0.0" and job.payload["project_id"] == PROJECT_ID
    assert "url" not in json.dumps(job.payload)  # workers get ids, never URLs from the body


def test_wrong_or_missing_token_is_401_and_recorded_without_body(env: Env) -> None:
    assert env.post(tag_pipeline_body(), token="nope").status_code == 401
    assert env.post(tag_pipeline_body(), token=None).status_code == 401
    rows = deliveries(env)
    assert [r.outcome for r in rows] == ["unauthorized", "unauthorized"]
    assert all(r.body is None for r in rows)
    assert not jobs(env)


def test_group_token_only_admits_its_group(env: Env) -> None:
    outside = env.post(tag_pipeline_body(), token=GROUP_SECRET)  # fs-sc/hello is not in fs-sc/sub
    assert outside.status_code == 200 and outside.json()["outcome"] == "ignored"
    inside = env.post(tag_pipeline_body(502, project="fs-sc/sub/tool"), token=GROUP_SECRET)
    assert inside.json()["outcome"] == "queued"


def test_signed_delivery_is_accepted_and_replays_are_refused(env: Env) -> None:
    body = json.dumps(tag_pipeline_body()).encode()
    msg_id = str(uuid.uuid4())
    stamp = int(time.time())
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(SIGNING_SECRET, msg_id, stamp, body),
    }
    assert env.post(body, token=None, key=msg_id, headers=headers).status_code == 202
    old = stamp - 301
    stale = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(old),
        "webhook-signature": sign(SIGNING_SECRET, msg_id, old, body),
    }
    assert env.post(body, token=None, key=str(uuid.uuid4()), headers=stale).status_code == 401
    forged = {**headers, "webhook-signature": sign("whsec_" + "A" * 44, msg_id, stamp, body)}
    assert env.post(body, token=None, key=str(uuid.uuid4()), headers=forged).status_code == 401
    tampered = body.replace(b"v1.0.0", b"v9.9.9")
    assert env.post(tampered, token=None, key=str(uuid.uuid4()), headers=headers).status_code == 401
    assert [r.outcome for r in deliveries(env)] == ["queued", "unauthorized", "unauthorized", "unauthorized"]


def test_same_idempotency_key_is_stored_once(env: Env) -> None:
    key = str(uuid.uuid4())
    first = env.post(tag_pipeline_body(), key=key)
    again = env.post(tag_pipeline_body(), key=key)
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["outcome"] == "duplicate"
    assert len(jobs(env)) == 1
    # The same pipeline without the key (another hook, or an old GitLab) is deduplicated by the job key.
    third = env.post(tag_pipeline_body(), key=str(uuid.uuid4()))
    assert third.json()["outcome"] == "duplicate" and len(jobs(env)) == 1


def test_body_that_is_not_json_is_400(env: Env) -> None:
    assert env.post(b"{not json").status_code == 400
    assert env.post(b"[1, 2]").status_code == 400
    assert [r.outcome for r in deliveries(env)] == ["invalid", "invalid"]


def test_oversized_body_is_413(env: Env) -> None:
    big = json.dumps({"object_kind": "push", "pad": "x" * 70_000}).encode()
    assert env.post(big).status_code == 413
    [row] = deliveries(env)
    assert row.outcome == "too_large"


def test_unhandled_events_are_2xx_and_recorded_as_ignored(env: Env) -> None:
    push = spec("push_hook")
    push["project"]["path_with_namespace"] = PROJECT
    tag_push = spec("tag_push_hook")
    tag_push["project"]["path_with_namespace"] = PROJECT
    mr_update = spec("merge_request_hook")
    mr_update["project"]["path_with_namespace"] = PROJECT
    mr_update["changes"] = {}
    mr_update["object_attributes"]["action"] = "update"
    failed = tag_pipeline_body(503)
    failed["object_attributes"]["status"] = "failed"
    foreign = tag_pipeline_body(504, project="elsewhere/tool")
    for body in (push, tag_push, mr_update, failed, foreign, {"object_kind": "wiki_page"}):
        answer = env.post(body)
        assert answer.status_code == 200, body.get("object_kind")
        assert answer.json()["outcome"] == "ignored"
    assert not jobs(env)
    assert all(r.detail for r in deliveries(env))


def test_routing_uses_the_body_not_the_event_header(env: Env) -> None:
    system = spec("system_hook_push")
    system["project"]["path_with_namespace"] = PROJECT
    system["after"] = "0" * 40  # a deleted branch, as a system hook
    system["ref"] = "refs/heads/feature"
    answer = env.post(system, headers={"X-Gitlab-Event": "System Hook"})
    assert answer.json()["outcome"] == "queued"
    [job] = jobs(env)
    assert job.kind == "gitlab.preview_remove" and job.payload["source_branch"] == "feature"


def test_merge_request_close_and_mr_pipeline_are_routed(env: Env) -> None:
    closed = spec("merge_request_hook")
    closed["project"].update(id=PROJECT_ID, path_with_namespace=PROJECT)
    closed["object_attributes"].update(action="close", state="closed", iid=5)
    assert env.post(closed).json()["outcome"] == "queued"
    mr_pipeline = spec("pipeline_hook")
    mr_pipeline["project"].update(id=PROJECT_ID, path_with_namespace=PROJECT)
    assert env.post(mr_pipeline).json()["outcome"] == "queued"
    kinds = {j.kind: j.payload for j in jobs(env)}
    assert kinds["gitlab.preview_remove"]["mr_iid"] == 5
    assert kinds["gitlab.preview"]["mr_iid"] == 1 and kinds["gitlab.preview"]["source_branch"] == "test"


def test_metrics_count_deliveries_by_outcome_and_show_the_queue(env: Env) -> None:
    env.post(tag_pipeline_body())
    env.post(b"nope")
    text = env.client.get("/metrics").text
    assert 'faaspub_webhook_deliveries_total{outcome="queued",source="gitlab"}' in text
    assert 'faaspub_queue_jobs{status="queued"} 1.0' in text
    assert "faaspub_queue_oldest_age_seconds" in text


def test_deliveries_query_pages_by_cursor_and_filters_by_outcome(env: Env) -> None:
    from publisher.gitlab.deliveries import list_deliveries

    for i in range(5):
        env.post(tag_pipeline_body(600 + i))
    env.post(b"bad")
    with env.context.sessions() as session:
        first = list_deliveries(session, limit=2, outcome="queued")
        second = list_deliveries(session, limit=2, outcome="queued", cursor=first.next_cursor)
        third = list_deliveries(session, limit=2, outcome="queued", cursor=second.next_cursor)
        total = session.scalar(select(func.count()).select_from(WebhookDelivery))
    ids = [d["id"] for d in first.items + second.items + third.items]
    assert len(ids) == 5 == len(set(ids)) and ids == sorted(ids, reverse=True)
    assert third.next_cursor is None and total == 6
