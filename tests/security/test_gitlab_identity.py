"""One group's webhook secret cannot act on another group's project (identity comes from GitLab).

The attacker holds other-group's own secret. Its deliveries name the victim's project id (77,
fs-sc/hello) with a path of its own group, which the intake cannot tell apart from a real one;
the worker asks GitLab whose id it is before it acts.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from publisher.db.models import Job, WebhookDelivery
from publisher.gitlab.store import PreviewRecord, ReleaseRecord
from tests.gitlab.conftest import (
    PROJECT,
    PROJECT_ID,
    Env,
    Project,
    pipeline_hook,
    spec,
)
from tests.gitlab.parts import read_log
from tests.gitlab.test_gitlab_flows import queue_idle, release_row, wait_for
from tests.security.conftest import (
    ATTACKER_PROJECT,
    ATTACKER_PROJECT_ID,
    ATTACKER_SECRET,
    VICTIM_SECRET,
    attempt_release,
    workers,
)


def delivery(env: Env, delivery_id: int) -> WebhookDelivery:
    with env.context.sessions() as session:
        row = session.get(WebhookDelivery, delivery_id)
        assert row is not None
        return row


def writes_to_victim(project: Project) -> list[tuple[str, str]]:
    """Every request that changed something in the victim's project on GitLab."""
    prefix = f"/api/v4/projects/{PROJECT_ID}/"
    return [(m, p) for m, p in project.fake.requests if m != "GET" and p.startswith(prefix)]


def test_another_groups_secret_cannot_release_the_victims_pipeline(two_groups: Env, project: Project) -> None:
    pipeline = project.tag_pipeline("v1.2.0")  # the victim's real tag pipeline
    forged = pipeline_hook(pipeline)
    forged["project"]["path_with_namespace"] = ATTACKER_PROJECT  # the id stays the victim's
    answer = two_groups.post(forged, token=ATTACKER_SECRET).json()
    with workers(two_groups):
        wait_for(lambda: queue_idle(two_groups))

    refused = delivery(two_groups, answer["delivery"])
    assert refused.outcome == "refused", (refused.outcome, refused.detail)
    assert PROJECT in (refused.detail or "") and ATTACKER_PROJECT in (refused.detail or "")
    assert release_row(two_groups) is None
    state = two_groups.context.settings.state_path
    assert read_log(state, "backend") == [] and read_log(state, "archive") == []
    assert writes_to_victim(project) == []  # no status, note, release note or merge request

    # The victim's own delivery of the same pipeline is not taken for a duplicate: it releases,
    # in the victim's namespace.
    genuine = two_groups.post(pipeline_hook(pipeline), token=VICTIM_SECRET).json()
    assert genuine["outcome"] == "queued", genuine
    with workers(two_groups):
        wait_for(lambda: (r := release_row(two_groups)) is not None and r.step in ("done", "failed"))
    record = release_row(two_groups)
    assert record is not None and record.step == "done", record.error if record else None
    assert (record.project, record.data["namespace"]) == (PROJECT, "fs-sc")


def test_a_deleted_branch_in_another_group_does_not_remove_the_victims_preview(
    two_groups: Env, project: Project
) -> None:
    project.fake.add_merge_request(PROJECT_ID, 4, "topic", "b" * 40)
    pipeline = project.branch_pipeline("refs/merge-requests/4/head", source="merge_request_event")
    hook = pipeline_hook(pipeline, mr_iid=4, branch="topic")
    assert two_groups.post(hook, token=VICTIM_SECRET).status_code == 202
    with workers(two_groups):
        wait_for(lambda: queue_idle(two_groups))
    before = len(writes_to_victim(project))

    push: dict[str, Any] = spec("push_hook")
    push["project"].update(id=PROJECT_ID, path_with_namespace=ATTACKER_PROJECT)
    push.update(project_id=PROJECT_ID, ref="refs/heads/topic", after="0" * 40, commits=[])
    answer = two_groups.post(push, token=ATTACKER_SECRET, headers={"X-Gitlab-Event": "Push Hook"}).json()
    with workers(two_groups):
        wait_for(lambda: queue_idle(two_groups))

    assert delivery(two_groups, answer["delivery"]).outcome == "refused"
    ops = [e["op"] for e in read_log(two_groups.context.settings.state_path, "backend")]
    assert ops == ["deploy"], ops  # the preview was deployed and nothing was undeployed
    with two_groups.context.sessions() as session:
        assert session.scalars(select(PreviewRecord.state)).all() == ["active"]
        jobs = session.scalars(select(Job.key)).all()
    assert len(writes_to_victim(project)) == before  # the MR note was not rewritten
    assert not [k for k in jobs if k and k.startswith("gitlab:branch-deleted:") and f"@{PROJECT}:" in k]


def test_a_release_json_cannot_deploy_another_projects_image(two_groups: Env, project: Project) -> None:
    """The attacker's own tag pipeline names the victim's image (by digest) in its release.json."""
    release = {"function": "hello", "version": "2.0.0", "image": project.image("v1.0.0")}  # fs-sc/hello's
    record = attempt_release(
        two_groups,
        project,
        release,
        project_id=ATTACKER_PROJECT_ID,
        path=ATTACKER_PROJECT,
        token=ATTACKER_SECRET,
    )
    assert record.step == "failed", record.step
    assert "not under the registry path of project other-group/tool" in (record.error or "")
    assert read_log(two_groups.context.settings.state_path, "backend") == []
    with two_groups.context.sessions() as session:
        assert session.scalars(select(ReleaseRecord.project)).all() == [ATTACKER_PROJECT]
