"""Tag, default-branch and merge-request flows end to end: webhook → queue → real workers → GitLab API."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import select

from publisher.db.models import Job
from publisher.gitlab.store import PreviewRecord, ReleaseRecord
from publisher.gitlab.worker import run_worker
from tests.gitlab.conftest import PROJECT, PROJECT_ID, Env, Project, make_env, pipeline_hook, spec
from tests.gitlab.parts import read_log, use_recording_parts


@pytest.fixture
def served(tmp_path: Path, db_url: str, project: Project, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    use_recording_parts(monkeypatch)
    made = make_env(tmp_path, db_url, project.fake.url, project.registry)
    yield made
    made.context.engine.dispose()


@contextmanager
def workers(env: Env, count: int = 2) -> Iterator[None]:
    stop = threading.Event()
    threads = [
        threading.Thread(target=run_worker, args=(env.context, stop), kwargs={"poll_s": 0.05})
        for _ in range(count)
    ]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)


def wait_for(condition: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the workers")
        time.sleep(0.05)


def queue_idle(env: Env) -> bool:
    with env.context.sessions() as session:
        return not session.scalars(
            select(Job).where(Job.status.in_(["queued", "running"]), Job.kind != "gitlab.reconcile")
        ).first()


def release_row(env: Env) -> ReleaseRecord | None:
    with env.context.sessions() as session:
        return session.scalars(select(ReleaseRecord)).first()


def test_tag_pipeline_publishes_once_and_writes_back(served: Env, project: Project) -> None:
    pipeline = project.tag_pipeline("v1.2.0")
    body = pipeline_hook(pipeline)
    assert served.post(body).status_code == 202
    assert served.post(body).json()["outcome"] == "duplicate"  # a second hook on the same project
    with workers(served):
        wait_for(lambda: (r := release_row(served)) is not None and r.step in ("done", "failed"))
    record = release_row(served)
    assert record is not None and record.step == "done", record.error if record else None
    doi = record.data["reservation"]["doi"]
    assert doi.startswith("10.5072/")

    state = served.context.settings.state_path
    archive = read_log(state, "archive")
    assert [e["op"] for e in archive] == ["reserve", "publish"]
    assert {"release.json", "junit.xml", "CITATION.cff"} <= set(archive[1]["files"])
    backend = read_log(state, "backend")
    assert [e["op"] for e in backend] == ["deploy", "bind"]
    assert backend[1]["paths"] == ["/incoming"]

    gl = project.fake.projects[PROJECT_ID]
    [deployment] = gl.deployments.values()
    assert deployment["status"] == "success" and deployment["environment"]["name"] == "production"
    statuses = gl.statuses[pipeline["sha"]]
    assert [s["status"] for s in statuses] == ["running", "success"]
    assert statuses[-1]["name"] == "faaspub" and "/functions/hello" in statuses[-1]["target_url"]
    assert doi in gl.releases["v1.2.0"]["description"]
    [mr] = gl.merge_requests.values()
    assert mr["source_branch"] == "faaspub/citation-v1.2.0"
    cff = gl.files["faaspub/citation-v1.2.0"]["CITATION.cff"]
    assert f"doi: {doi}" in cff and "version: 1.2.0" in cff and "date-released:" in cff
    assert f"https://doi.org/{doi}" in gl.files["faaspub/citation-v1.2.0"]["README.md"]
    assert "Jane" in cff  # the rest of the file is kept


def test_tag_release_with_missing_image_fails_and_discards_the_draft(served: Env, project: Project) -> None:
    pipeline = project.tag_pipeline("v2.0.0")
    job = next(j for j in project.fake.projects[PROJECT_ID].jobs.values() if j["name"] == "faaspub:release")
    doc = json.loads(job["_files"]["release.json"])
    doc["image"] = doc["image"].split("@")[0] + "@sha256:" + "0" * 64  # well-formed, never pushed
    job["_files"]["release.json"] = json.dumps(doc).encode()
    served.post(pipeline_hook(pipeline))
    with workers(served, 1):
        wait_for(lambda: (r := release_row(served)) is not None and r.step in ("done", "failed"))
    record = release_row(served)
    assert record is not None and record.step == "failed"
    assert "fetch" in (record.error or "") or "verify" in (record.error or "")
    failed = project.fake.projects[PROJECT_ID].statuses[pipeline["sha"]][-1]
    assert failed["status"] == "failed" and failed["description"].startswith("faaspub")
    assert read_log(served.context.settings.state_path, "backend") == []


def test_default_branch_pipeline_deploys_staging(served: Env, project: Project) -> None:
    pipeline = project.branch_pipeline("main")
    served.post(pipeline_hook(pipeline))
    with workers(served, 1):
        wait_for(lambda: queue_idle(served))
    gl = project.fake.projects[PROJECT_ID]
    assert [d["environment"]["name"] for d in gl.deployments.values()] == ["staging"]
    assert gl.statuses[pipeline["sha"]][-1]["status"] == "success"
    deployed = read_log(served.context.settings.state_path, "backend")
    assert [e["key"].split("@")[0] for e in deployed] == ["fs-sc/hello--staging"]


def test_merge_request_preview_keeps_one_note_and_is_removed_on_close(served: Env, project: Project) -> None:
    project.fake.add_merge_request(PROJECT_ID, 3, "feature", "a" * 40)
    first = project.branch_pipeline("refs/merge-requests/3/head", source="merge_request_event")
    served.post(pipeline_hook(first, mr_iid=3, branch="feature"))
    with workers(served, 2):
        wait_for(lambda: queue_idle(served) and project.fake.projects[PROJECT_ID].notes.get(3))
        second = project.branch_pipeline("refs/merge-requests/3/head", source="merge_request_event")
        served.post(pipeline_hook(second, mr_iid=3, branch="feature"))
        wait_for(
            lambda: (
                queue_idle(served)
                and second["sha"][:12]
                in next(iter(project.fake.projects[PROJECT_ID].notes[3].values()))["body"]
            )
        )
        [note] = project.fake.projects[PROJECT_ID].notes[3].values()
        assert "hello--mr-3" in note["body"] and "/api/v1/functions/hello--mr-3/invoke" in note["body"]
        assert "CITATION.cff is valid" in note["body"]

        closed = spec("merge_request_hook")
        closed["project"].update(id=PROJECT_ID, path_with_namespace=PROJECT)
        closed["object_attributes"].update(action="merge", state="merged", iid=3)
        served.post(closed)
        wait_for(lambda: queue_idle(served))
    ops = [(e["op"], e["key"].split("@")[0]) for e in read_log(served.context.settings.state_path, "backend")]
    assert ops.count(("deploy", "fs-sc/hello--mr-3")) == 2 and ops[-1] == ("undeploy", "fs-sc/hello--mr-3")
    assert len(project.fake.projects[PROJECT_ID].notes[3]) == 1
    with served.context.sessions() as session:
        assert session.scalars(select(PreviewRecord.state)).all() == ["removed"]


def test_deleted_branch_removes_its_preview(served: Env, project: Project) -> None:
    project.fake.add_merge_request(PROJECT_ID, 4, "topic", "b" * 40)
    pipeline = project.branch_pipeline("refs/merge-requests/4/head", source="merge_request_event")
    served.post(pipeline_hook(pipeline, mr_iid=4, branch="topic"))
    push = spec("push_hook")
    push["project"].update(id=PROJECT_ID, path_with_namespace=PROJECT)
    push.update(
        project_id=PROJECT_ID,
        ref="refs/heads/topic",
        after="0" * 40,
        checkout_sha=None,
        commits=[],
        total_commits_count=0,
    )
    with workers(served, 1):
        wait_for(lambda: queue_idle(served))
        assert served.post(push, headers={"X-Gitlab-Event": "Push Hook"}).json()["outcome"] == "queued"
        wait_for(lambda: queue_idle(served))
    ops = [e["op"] for e in read_log(served.context.settings.state_path, "backend")]
    assert ops == ["deploy", "undeploy"]


def test_reconciliation_finds_a_pipeline_whose_hook_was_lost(served: Env, project: Project) -> None:
    from publisher.gitlab.client import GitLab
    from publisher.gitlab.reconcile import reconcile

    pipeline = project.tag_pipeline("v3.0.0")  # no webhook: the hook was disabled
    summary = reconcile(served.context, GitLab(served.context.settings.gitlab))
    assert summary.enqueued == 1
    assert reconcile(served.context, GitLab(served.context.settings.gitlab)).enqueued == 0
    # A late delivery of the same pipeline is recognised.
    assert served.post(pipeline_hook(pipeline)).json()["outcome"] == "duplicate"
    with workers(served, 1):
        wait_for(lambda: (r := release_row(served)) is not None and r.step == "done")
