"""Adversary tests (issue 16): each test is an attack by one tenant on another, or by anyone on the
service, against real components: the service app or a ``faaspub serve`` process, podman, the
GitLab and dCache test servers. Each asserts the refusal and that nothing leaked or was queued.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from publisher.config import Settings
from publisher.core.context import Context
from publisher.gitlab import events
from publisher.gitlab.store import ReleaseRecord
from publisher.gitlab.worker import KINDS, run_worker
from tests.backends.conftest import function_image  # noqa: F401  (fixture)
from tests.gitlab.conftest import (  # noqa: F401  (project: a fixture)
    JUNIT,
    Env,
    Project,
    example_tree,
    make_env,
    pipeline_hook,
    project,
)
from tests.gitlab.parts import use_recording_parts
from tests.gitlab.test_gitlab_flows import release_row, wait_for

VICTIM_SECRET = "victim-group-secret-4a1"  # fs-sc's own webhook secret
ATTACKER_SECRET = "attacker-group-secret-9c2"  # other-group's own webhook secret
ATTACKER_GROUP = "other-group"
ATTACKER_PROJECT_ID = 88
ATTACKER_PROJECT = f"{ATTACKER_GROUP}/tool"


@pytest.fixture
def two_groups(tmp_path: Path, project: Project, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:  # noqa: F811
    """The service serving fs-sc (the victim, project 77) and other-group (the attacker, project 88),
    each group with a webhook secret of its own."""
    use_recording_parts(monkeypatch)
    project.fake.add_project(ATTACKER_PROJECT_ID, ATTACKER_PROJECT)
    env = make_env(
        tmp_path,
        f"sqlite:///{tmp_path / 'faaspub.db'}",
        project.fake.url,
        project.registry,
        group_secrets={"fs-sc": VICTIM_SECRET, ATTACKER_GROUP: ATTACKER_SECRET},
    )
    yield env
    env.context.engine.dispose()


def local_context(tmp: Path, secrets: dict[str, object] | None = None, **local: object) -> Context:
    """A service context with the local backend (``backend.local`` = ``local``) under ``tmp``."""
    settings = {
        "state_dir": str(tmp / "state"),
        "database": {"url": f"sqlite:///{tmp / 'faaspub.db'}"},
        "registry": {"insecure": True},
        "storage": {"local": {"root": str(tmp / "data")}},
        "backend": {"kind": "local", "local": local},
        "secrets": secrets or {},
    }
    return Context(Settings.model_validate(settings))


@contextmanager
def workers(env: Env) -> Iterator[None]:
    """A real worker for webhook-queued jobs (no reconciliation pass: only deliveries count here)."""
    stop = threading.Event()
    kinds = [kind for kind in KINDS if kind != events.RECONCILE]
    thread = threading.Thread(target=run_worker, args=(env.context, stop, kinds), kwargs={"poll_s": 0.05})
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)


def attempt_release(
    env: Env,
    project: Project,  # noqa: F811
    release: dict[str, Any],
    *,
    project_id: int,
    path: str,
    token: str,
    tree: dict[str, str] | None = None,
) -> ReleaseRecord:
    """A tag pipeline of ``path`` whose release job wrote ``release``, its webhook, the release."""
    tag = "v" + str(release["version"])
    pipeline = project.fake.add_pipeline(
        project_id,
        sha=f"{project_id:040d}",
        ref=tag,
        tag=True,
        jobs={
            "faaspub:test": {"junit.xml": JUNIT.encode()},
            "faaspub:release": {"release.json": json.dumps(release).encode()},
        },
        tree=tree or example_tree(),
    )
    hook = pipeline_hook(pipeline)
    hook["project"].update(id=project_id, path_with_namespace=path)
    assert env.post(hook, token=token).json()["outcome"] == "queued"
    with workers(env):
        wait_for(lambda: (r := release_row(env)) is not None and r.step in ("done", "failed"))
    record = release_row(env)
    assert record is not None
    return record
