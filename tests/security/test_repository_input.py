"""What a member of a served group pushes is read inside the service: bounded, in time and size."""

from __future__ import annotations

from pathlib import Path

import pytest

from publisher.manifest.load import load_manifest
from publisher.manifest.problems import ProblemsError
from tests.gitlab.conftest import PROJECT, PROJECT_ID, Env, Project, example_tree
from tests.gitlab.parts import read_log
from tests.security.conftest import VICTIM_SECRET, attempt_release


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
    record = attempt_release(
        two_groups, project, release, project_id=PROJECT_ID, path=PROJECT, token=VICTIM_SECRET, tree=tree
    )
    assert record.step == "failed"
    assert "anchors and aliases" in (record.error or "")
    assert read_log(two_groups.context.settings.state_path, "backend") == []


def test_an_oversized_pipeline_artifact_is_not_read(two_groups: Env, project: Project) -> None:
    padding = "x" * (17 << 20)
    release = {"function": "hello", "version": "1.3.0", "image": project.image("v1.3.0"), "padding": padding}
    record = attempt_release(
        two_groups, project, release, project_id=PROJECT_ID, path=PROJECT, token=VICTIM_SECRET
    )
    assert record.step == "failed"
    assert "release.json of job" in (record.error or "") and "larger than 16 MiB" in (record.error or "")
    assert read_log(two_groups.context.settings.state_path, "backend") == []
    releases = two_groups.context.settings.state_path / "gitlab" / "releases"
    assert not list(releases.rglob("release.json"))  # not kept either
