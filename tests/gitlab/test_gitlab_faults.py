"""Faults: a worker process killed with SIGKILL at each release step, and GitLab 5xx/429 answers.

The worker runs as a subprocess; the fake GitLab holds the request of the step under test, the
test kills the worker while GitLab is processing it, lets GitLab complete it anyway (the hardest
case: done remotely, not recorded locally), starts a new worker, and checks the release completes
exactly once: one DOI, one deployment, one release-notes entry, one citation MR.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from publisher.gitlab.client import GitLab
from tests.gitlab.conftest import PROJECT_ID, Env, Project, make_env, pipeline_hook
from tests.gitlab.parts import read_log, use_recording_parts
from tests.gitlab.test_gitlab_flows import release_row, wait_for

ROOT = Path(__file__).parents[2]

# (step, method and path of the GitLab call to interrupt)
KILL_POINTS = [
    ("fetch", "GET", r"/repository/archive"),
    ("go_live", None, None),
    ("deployment", "POST", r"/deployments$"),
    ("status", "POST", r"/statuses/"),
    ("notes", "POST", r"/releases$"),
    ("citation_mr", "POST", r"/merge_requests$"),
]


def start_worker(env: Env) -> subprocess.Popen[bytes]:
    # The worker's lease is short so a killed worker's job is picked up again quickly.
    env_vars = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.gitlab.worker_main", str(env.config), "2"],
        cwd=ROOT,
        env=env_vars,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def kill(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            kill(proc)


@pytest.mark.slow
@pytest.mark.parametrize(("step", "method", "path"), KILL_POINTS, ids=[k[0] for k in KILL_POINTS])
def test_release_survives_kill_9_at_each_step(
    tmp_path: Path,
    db_url: str,
    project: Project,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
    method: str | None,
    path: str | None,
) -> None:
    use_recording_parts(monkeypatch)
    env = make_env(tmp_path, db_url, project.fake.url, project.registry)
    pipeline = project.tag_pipeline("v1.0.0")
    env.post(pipeline_hook(pipeline))
    state = env.context.settings.state_path
    hold = project.fake.hold(method, path) if method and path else None
    worker = start_worker(env)
    try:
        if hold is not None:
            assert hold.arrived.wait(60), "the worker never reached " + step
        else:  # kill right after the backend deployed, before the step is recorded
            wait_for(lambda: any(e["op"] == "deploy" for e in read_log(state, "backend")), 60)
        kill(worker)
        if hold is not None:
            hold.release.set()  # GitLab completes the request the dead worker sent
        worker = start_worker(env)
        wait_for(lambda: (r := release_row(env)) is not None and r.step in ("done", "failed"), 90)
    finally:
        stop(worker)
    record = release_row(env)
    assert record is not None and record.step == "done", record.error if record else None
    archive = read_log(state, "archive")
    assert [e["op"] for e in archive] == ["reserve", "publish"]  # one DOI, published once
    assert [e["op"] for e in read_log(state, "backend")] in (["deploy", "bind"], ["deploy", "bind", "bind"])
    gl = project.fake.projects[PROJECT_ID]
    assert len(gl.deployments) == 1
    assert (
        gl.releases["v1.0.0"]["description"].count(f"(https://doi.org/{record.data['reservation']['doi']})")
        == 1
    )
    assert len(gl.merge_requests) == 1
    assert gl.statuses[pipeline["sha"]][-1]["status"] == "success"
    env.context.engine.dispose()


def test_gitlab_5xx_and_429_are_retried_with_backoff(tmp_path: Path, project: Project) -> None:
    env = make_env(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", project.fake.url, project.registry)
    gl = GitLab(env.context.settings.gitlab)
    pipeline = project.tag_pipeline("v1.0.0")
    project.fake.fail("GET", rf"/pipelines/{pipeline['id']}$", status=503, times=2)
    project.fake.fail("GET", rf"/pipelines/{pipeline['id']}/jobs", status=429, times=1, retry_after=1)
    started = time.monotonic()
    assert gl.pipeline(PROJECT_ID, pipeline["id"])["sha"] == pipeline["sha"]
    assert [j["name"] for j in gl.pipeline_jobs(PROJECT_ID, pipeline["id"])]
    assert time.monotonic() - started >= 1.0  # Retry-After was honoured
    assert project.fake.count("GET", rf"/pipelines/{pipeline['id']}$") == 3
    assert project.fake.count("GET", rf"/pipelines/{pipeline['id']}/jobs") == 2


def test_commit_status_transition_error_is_not_a_failure(tmp_path: Path, project: Project) -> None:
    env = make_env(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", project.fake.url, project.registry)
    gl = GitLab(env.context.settings.gitlab)
    gl.set_status(PROJECT_ID, "c" * 40, "running", "one")
    gl.set_status(PROJECT_ID, "c" * 40, "running", "again")  # GitLab answers 400 "Cannot transition"
    assert [s["status"] for s in project.fake.projects[PROJECT_ID].statuses["c" * 40]] == ["running"]


def test_bad_api_token_is_a_clear_error_without_the_token(tmp_path: Path, project: Project) -> None:
    from publisher.errors import FaaspubError

    env = make_env(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", project.fake.url, project.registry)
    project.fake.tokens.clear()
    with pytest.raises(FaaspubError) as caught:
        GitLab(env.context.settings.gitlab).pipeline(PROJECT_ID, 1)
    assert "401" in str(caught.value) and "glpat" not in str(caught.value)
