"""Adversary tests (issue 16): each test is an attack by one tenant on another, or by anyone on the
service, against real components: the service app or a ``faaspub serve`` process, podman, the
GitLab and dCache test servers. Each asserts the refusal and that nothing leaked or was queued.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from publisher.config import Settings
from publisher.core.context import Context
from tests.backends.conftest import function_image  # noqa: F401  (fixture)
from tests.gitlab.conftest import Env, Project, make_env, project  # noqa: F401  (fixture)
from tests.gitlab.parts import use_recording_parts

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
