"""Journey 6: functions removed from a repository are pruned (tag releases and ``faaspub publish``)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from publisher.backends.catalogue import Catalogue
from publisher.core.pipeline import Pipeline, PublishResult
from publisher.core.types import FunctionSource, ImageRef, Release
from publisher.gitlab.client import GitLab
from publisher.gitlab.release import ReleaseWorker
from publisher.gitlab.store import RELEASE_STEPS, ReleaseRecord
from publisher.manifest.load import load_function
from tests.gitlab.conftest import EXAMPLE, GROUP, PROJECT_ID, Env, Project, make_env, pipeline_hook
from tests.gitlab.parts import read_log, use_recording_parts
from tests.gitlab.test_gitlab_flows import release_row, wait_for, workers

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def served(tmp_path: Path, db_url: str, project: Project, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    use_recording_parts(monkeypatch)
    made = make_env(tmp_path, db_url, project.fake.url, project.registry)
    yield made
    made.context.engine.dispose()


def deployed(env: Env, fn: FunctionSource, name: str, version: str = "1.0.0") -> None:
    """``name`` live on the (recording) backend as a function of ``fn``'s project."""
    source = replace(fn, manifest=fn.manifest.model_copy(update={"name": name, "triggers": []}))
    env.context.backend.deploy(Release(source, version, ImageRef("registry/functions/x", version, DIGEST)))


def undeployed(env: Env) -> list[str]:
    return [e["key"] for e in read_log(env.context.settings.state_path, "backend") if e["op"] == "undeploy"]


def live(env: Env, namespace: str, project: str) -> list[str]:
    return Catalogue(env.context.sessions).project_functions(namespace, project)


def test_tag_release_prunes_functions_gone_from_the_repository(served: Env, project: Project) -> None:
    assert RELEASE_STEPS.index("prune") == RELEASE_STEPS.index("go_live") + 1
    ours = replace(load_function(EXAMPLE, namespace=GROUP), project_id=PROJECT_ID)
    deployed(served, ours, "retired")  # published from this repository before, gone at the new tag
    deployed(served, ours, "hello--staging", "0.0.0-staging.abc")  # the default branch's staging
    deployed(served, ours, "hello--mr-7", "0.0.0-mr-7.abc")  # an open merge request's preview
    deployed(served, replace(ours, project_id=99), "neighbour")  # another project of the group

    served.post(pipeline_hook(project.tag_pipeline("v1.2.0")))
    with workers(served, 1):
        wait_for(lambda: (r := release_row(served)) is not None and r.step in ("done", "failed"))
    record = release_row(served)
    assert record is not None and record.step == "done", record.error if record else None
    assert record.data["pruned"] == ["retired"]
    assert undeployed(served) == [f"{GROUP}/retired"]
    assert live(served, GROUP, str(PROJECT_ID)) == ["hello", "hello--mr-7", "hello--staging"]
    assert live(served, GROUP, "99") == ["neighbour"]

    # The step is idempotent: run again (a worker died before recording it), it removes nothing more.
    with served.context.sessions.begin() as session:
        row = session.scalars(select(ReleaseRecord)).one()
        row.step = "prune"
    ReleaseWorker(served.context, GitLab(served.context.settings.gitlab))._advance(record.id)
    record = release_row(served)
    assert record is not None and record.step == "done" and record.data["pruned"] == []
    assert undeployed(served) == [f"{GROUP}/retired"]


def function_folder(dest: Path, name: str) -> None:
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("__pycache__"))
    manifest = dest / "function.yaml"
    manifest.write_text(manifest.read_text().replace("name: hello", f"name: {name}", 1))


def git_repo(root: Path, names: list[str]) -> Path:
    root.mkdir()
    for name in names:
        function_folder(root / name, name)
    for args in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "functions"]):
        subprocess.run(
            ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.org", *args], check=True
        )
    return root.resolve()


@pytest.fixture
def local_publish(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``Pipeline.publish_function`` without build and test (covered elsewhere): records the names."""
    published: list[str] = []

    def publish_function(
        self: Pipeline, fn: FunctionSource, version: str | None = None, *_: object
    ) -> PublishResult:
        published.append(fn.name)
        return PublishResult(fn.name, version or "0.0.0", "image", DIGEST, None, "recording")

    monkeypatch.setattr(Pipeline, "publish_function", publish_function)
    return published


def test_publish_prunes_what_the_repository_no_longer_holds(
    env: Env, tmp_path: Path, local_publish: list[str]
) -> None:
    repo = git_repo(tmp_path / "repo", ["alpha", "beta"])
    namespace = env.context.settings.namespace
    alpha = load_function(repo / "alpha", namespace=namespace)
    project = str(repo)  # no GitLab project id and no remote: the repository folder is the key
    for name in ("alpha", "beta", "gamma"):
        deployed(env, alpha, name)
    deployed(env, replace(alpha, repo_root=tmp_path / "elsewhere"), "delta")
    pipeline = Pipeline(env.context)

    pipeline.publish(repo, version="1.1.0", prune=False)
    assert undeployed(env) == []
    pipeline.publish(repo / "alpha", version="1.1.0")  # one folder of the repository: prunes nothing
    assert undeployed(env) == []

    results = pipeline.publish(repo, version="1.1.0")
    assert [r.function for r in results] == ["alpha", "beta"]
    assert undeployed(env) == [f"{namespace}/gamma"]
    assert live(env, namespace, project) == ["alpha", "beta"]
    assert live(env, namespace, str(tmp_path / "elsewhere")) == ["delta"]
    assert local_publish == ["alpha", "beta", "alpha", "alpha", "beta"]


def test_publish_cli_prunes_unless_told_not_to(
    env: Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from publisher.cli.main import cli

    calls: list[bool] = []

    def publish(self: Pipeline, repo: Path, **kwargs: object) -> list[PublishResult]:
        calls.append(bool(kwargs["prune"]))
        return []

    monkeypatch.setattr(Pipeline, "publish", publish)
    folder = tmp_path / "fn"
    function_folder(folder, "hello")
    for extra in ([], ["--no-prune"]):
        result = CliRunner().invoke(cli, ["publish", str(folder), "--config", str(env.config), *extra])
        assert result.exit_code == 0, result.output
    assert calls == [True, False]
