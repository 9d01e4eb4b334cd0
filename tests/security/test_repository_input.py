"""What a member of a served group pushes is read inside the service: bounded, in time and size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from publisher.manifest.load import load_manifest
from publisher.manifest.problems import ProblemsError
from tests.gitlab.conftest import JUNIT, PROJECT_ID, Env, Project, example_tree, pipeline_hook
from tests.gitlab.parts import read_log
from tests.gitlab.test_gitlab_flows import release_row, wait_for
from tests.security.conftest import VICTIM_SECRET
from tests.security.test_gitlab_identity import workers


def alias_bomb(levels: int) -> str:
    """A small function.yaml whose nested aliases expand to 9**levels strings."""
    lines = [
        "name: hello",
        "runtime: python:3.11",
        "handler: hello:main",
        'a0: &a0 ["x","x","x","x","x","x","x","x","x"]',
    ]
    for level in range(1, levels + 1):
        ref = f"*a{level - 1}"
        lines.append(f"a{level}: &a{level} [{', '.join([ref] * 9)}]")
    return "\n".join(lines) + "\n"


def test_yaml_aliases_are_refused_before_they_are_expanded(tmp_path: Path) -> None:
    (tmp_path / "function.yaml").write_text(alias_bomb(7))  # 4.8 million strings once expanded
    with pytest.raises(ProblemsError) as refused:
        load_manifest(tmp_path)
    [problem] = refused.value.problems
    assert "anchors and aliases" in problem.message and problem.line == 4


def test_a_release_whose_function_yaml_is_an_alias_bomb_fails_with_its_reason(
    two_groups: Env, project: Project
) -> None:
    tree = {**example_tree(), "function.yaml": alias_bomb(7)}
    release = {"function": "hello", "version": "1.0.0", "image": project.image("v1.0.0")}
    pipeline = project.fake.add_pipeline(
        PROJECT_ID,
        sha="d" * 40,
        ref="v1.0.0",
        tag=True,
        jobs={
            "faaspub:test": {"junit.xml": JUNIT.encode()},
            "faaspub:release": {"release.json": json.dumps(release).encode()},
        },
        tree=tree,
    )
    assert two_groups.post(pipeline_hook(pipeline), token=VICTIM_SECRET).status_code == 202
    with workers(two_groups):
        wait_for(lambda: (r := release_row(two_groups)) is not None and r.step in ("done", "failed"))
    record = release_row(two_groups)
    assert record is not None and record.step == "failed"
    assert "anchors and aliases" in (record.error or "")
    assert read_log(two_groups.context.settings.state_path, "backend") == []


def test_an_oversized_pipeline_artifact_is_not_read(two_groups: Env, project: Project) -> None:
    image = project.image("v1.3.0")
    release = {"function": "hello", "version": "1.3.0", "image": image, "padding": "x" * (17 << 20)}
    pipeline = project.fake.add_pipeline(
        PROJECT_ID,
        sha="e" * 40,
        ref="v1.3.0",
        tag=True,
        jobs={
            "faaspub:test": {"junit.xml": JUNIT.encode()},
            "faaspub:release": {"release.json": json.dumps(release).encode()},
        },
        tree=example_tree(),
    )
    assert two_groups.post(pipeline_hook(pipeline), token=VICTIM_SECRET).status_code == 202
    with workers(two_groups):
        wait_for(lambda: (r := release_row(two_groups)) is not None and r.step in ("done", "failed"))
    record = release_row(two_groups)
    assert record is not None and record.step == "failed"
    assert "release.json of job" in (record.error or "") and "larger than 16 MiB" in (record.error or "")
    assert read_log(two_groups.context.settings.state_path, "backend") == []
    releases = two_groups.context.settings.state_path / "gitlab" / "releases"
    assert not list(releases.rglob("release.json"))  # not kept either
