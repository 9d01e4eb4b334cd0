"""``POST /api/v1/releases``: the CI release job's notification, authenticated by its JOB-TOKEN."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from publisher.db.models import Job, WebhookDelivery
from publisher.db.queue import ClaimedJob, Queue
from publisher.gitlab import events
from publisher.gitlab.worker import Dispatcher, run_job
from tests.gitlab.conftest import PROJECT, PROJECT_ID, Env, Project, make_env, pipeline_hook
from tests.gitlab.parts import read_log, use_recording_parts
from tests.gitlab.test_gitlab_flows import release_row

RELEASE_JOB = "faaspub:release"


@pytest.fixture
def served(tmp_path: Path, db_url: str, project: Project, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    use_recording_parts(monkeypatch)
    made = make_env(tmp_path, db_url, project.fake.url, project.registry)
    yield made
    made.context.engine.dispose()


def release_json(pipeline: dict[str, Any]) -> dict[str, Any]:
    """What ``faaspub release-info`` POSTs; it names another project and commit, which must not matter."""
    return {
        "function": "hello",
        "version": pipeline["ref"][1:],
        "project_id": 4242,
        "commit": "f" * 40,
        "source": "https://evil.example.org/x/y",
    }


def notify(env: Env, token: str | None, body: Any) -> Any:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["JOB-TOKEN"] = token
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return env.client.post("/api/v1/releases", content=data, headers=headers)


def token_of(project: Project, pipeline: dict[str, Any]) -> str:
    return project.fake.job_token(pipeline["project_id"], pipeline["id"], RELEASE_JOB)


def jobs(env: Env) -> list[Job]:
    with env.context.sessions() as session:
        return list(session.scalars(select(Job).where(Job.kind != events.RECONCILE).order_by(Job.id)))


def deliveries(env: Env) -> list[WebhookDelivery]:
    with env.context.sessions() as session:
        return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def claim(queue: Queue, timeout: float = 10.0) -> ClaimedJob:
    """The next release job, once its backoff has passed."""
    deadline = time.monotonic() + timeout
    while (job := queue.claim([events.RELEASE], lease_s=60)) is None:
        assert time.monotonic() < deadline, "no release job became runnable"
        time.sleep(0.05)
    return job


def test_valid_notify_queues_the_webhooks_release_job(
    served: Env, project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline = project.tag_pipeline("v1.2.0", running=True)
    token = token_of(project, pipeline)
    with caplog.at_level(logging.DEBUG):
        answer = notify(served, token, release_json(pipeline))
    assert answer.status_code == 202, answer.text
    assert answer.json()["outcome"] == "queued"
    [job] = jobs(served)
    [delivery] = deliveries(served)
    assert (delivery.source, delivery.outcome, delivery.project) == ("ci", "queued", PROJECT)
    assert delivery.body == release_json(pipeline)
    # GitLab's facts, not the body's: the same job (kind, key, payload) the pipeline webhook queues.
    finished = {**pipeline, "status": "success"}
    expected = events.route(pipeline_hook(finished))
    assert (
        (job.kind, job.key)
        == (expected.kind, expected.key)
        == (events.RELEASE, f"gitlab:pipeline:{PROJECT_ID}@{PROJECT}:{pipeline['id']}")
    )
    assert {k: v for k, v in job.payload.items() if k != "delivery_id"} == expected.payload
    assert job.payload["delivery_id"] == delivery.id
    # The job token is asked about once and kept nowhere.
    assert project.fake.count("GET", r"^/api/v4/job$") == 1
    stored = json.dumps([delivery.detail, delivery.body, job.payload, job.last_error])
    assert token not in stored and token not in caplog.text and token not in answer.text


def test_second_notify_and_the_later_webhook_are_duplicates(served: Env, project: Project) -> None:
    pipeline = project.tag_pipeline("v1.3.0", running=True)
    token = token_of(project, pipeline)
    assert notify(served, token, release_json(pipeline)).status_code == 202
    again = notify(served, token, release_json(pipeline))
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate"
    project.fake.finish_pipeline(PROJECT_ID, pipeline["id"])
    hook = served.post(pipeline_hook(pipeline))
    assert hook.status_code == 200 and hook.json()["outcome"] == "duplicate"
    assert len(jobs(served)) == 1
    assert [(d.source, d.outcome) for d in deliveries(served)] == [
        ("ci", "queued"),
        ("ci", "duplicate"),
        ("gitlab", "duplicate"),
    ]


def test_missing_wrong_or_expired_token_is_401_and_recorded_without_body(
    served: Env, project: Project
) -> None:
    pipeline = project.tag_pipeline("v1.4.0", running=True)
    body = release_json(pipeline)
    expired = token_of(project, project.tag_pipeline("v1.4.1"))  # its release job has finished
    for token in (None, "glcbt-not-a-token", expired):
        answer = notify(served, token, body)
        assert answer.status_code == 401, answer.text
        assert answer.json()["outcome"] == "unauthorized"
    rows = deliveries(served)
    assert [(r.source, r.outcome) for r in rows] == [("ci", "unauthorized")] * 3
    assert all(r.body is None and r.detail for r in rows)
    assert "JOB-TOKEN" in (rows[0].detail or "")
    assert not jobs(served)


def test_project_outside_the_served_groups_is_403(served: Env, project: Project) -> None:
    project.fake.add_project(88, "elsewhere/tool")
    pipeline = project.fake.add_pipeline(
        88,
        sha="c" * 40,
        ref="v1.0.0",
        tag=True,
        status="running",
        jobs={RELEASE_JOB: {}},
        job_status={RELEASE_JOB: "running"},
    )
    answer = notify(served, project.fake.job_token(88, pipeline["id"], RELEASE_JOB), release_json(pipeline))
    assert answer.status_code == 403 and answer.json()["outcome"] == "forbidden"
    [row] = deliveries(served)
    assert (row.source, row.outcome, row.project, row.body) == ("ci", "forbidden", "elsewhere/tool", None)
    assert not jobs(served)


def test_body_that_is_not_json_is_400_and_oversized_is_413(served: Env, project: Project) -> None:
    pipeline = project.tag_pipeline("v1.5.0", running=True)
    token = token_of(project, pipeline)
    assert notify(served, token, b"{not json").status_code == 400
    assert notify(served, token, b"[1, 2]").status_code == 400
    assert notify(served, token, b"x" * 70_000).status_code == 413
    assert [r.outcome for r in deliveries(served)] == ["invalid", "invalid", "too_large"]
    assert not jobs(served)


def test_branch_pipeline_notify_is_ignored(served: Env, project: Project) -> None:
    pipeline = project.fake.add_pipeline(
        PROJECT_ID,
        sha="d" * 40,
        ref="main",
        status="running",
        jobs={RELEASE_JOB: {}},
        job_status={RELEASE_JOB: "running"},
    )
    answer = notify(served, token_of(project, pipeline), {"function": "hello"})
    assert answer.status_code == 200 and answer.json()["outcome"] == "ignored"
    assert "not a tag" in answer.json()["detail"]
    assert not jobs(served)


def test_running_pipeline_is_retried_then_released_once_it_succeeds(served: Env, project: Project) -> None:
    pipeline = project.tag_pipeline("v2.1.0", running=True)
    assert notify(served, token_of(project, pipeline), release_json(pipeline)).status_code == 202
    queue = Queue(served.context.sessions, "test-worker")
    dispatcher = Dispatcher(served.context)

    run_job(queue, dispatcher, claim(queue))  # the release job itself is still running
    [job] = jobs(served)
    assert job.status == "queued" and job.attempts == 1
    assert "TransientError" in (job.last_error or "") and "running" in (job.last_error or "")
    assert release_row(served) is None
    assert read_log(served.context.settings.state_path, "backend") == []

    project.fake.finish_pipeline(PROJECT_ID, pipeline["id"])
    run_job(queue, dispatcher, claim(queue))
    [job] = jobs(served)
    assert job.status == "done" and job.attempts == 2
    record = release_row(served)
    assert record is not None and record.step == "done", record.error if record else None
    ops = [e["op"] for e in read_log(served.context.settings.state_path, "backend")]
    assert ops == ["deploy", "bind"]
    assert project.fake.projects[PROJECT_ID].statuses[pipeline["sha"]][-1]["status"] == "success"


def test_failed_pipeline_is_ignored_and_a_retried_success_is_released(served: Env, project: Project) -> None:
    pipeline = project.tag_pipeline("v2.2.0", running=True)
    assert notify(served, token_of(project, pipeline), release_json(pipeline)).status_code == 202
    project.fake.finish_pipeline(PROJECT_ID, pipeline["id"])  # the release job passes ...
    pipeline["status"] = "failed"  # ... but another job of the pipeline fails
    queue = Queue(served.context.sessions, "test-worker")
    dispatcher = Dispatcher(served.context)
    run_job(queue, dispatcher, claim(queue))
    [job] = jobs(served)
    assert job.status == "done" and job.key is None  # the key is free for the pipeline's retry
    assert release_row(served) is None
    status = project.fake.projects[PROJECT_ID].statuses[pipeline["sha"]][-1]
    assert status["status"] == "canceled" and "failed" in status["description"]

    # The failed job is retried and the pipeline succeeds: its webhook queues the release anew.
    pipeline["status"] = "success"
    assert served.post(pipeline_hook(pipeline)).json()["outcome"] == "queued"
    run_job(queue, dispatcher, claim(queue))
    record = release_row(served)
    assert record is not None and record.step == "done", record.error if record else None


def test_the_service_app_serves_the_route(served: Env) -> None:
    from webhooks.app import create_app

    paths = create_app(served.context).openapi()["paths"]
    assert "post" in paths["/api/v1/releases"]
