"""``faaspub gitlab hook install`` and ``faaspub gitlab reconcile`` against the fake GitLab."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from publisher.cli.main import cli
from publisher.errors import FaaspubError
from tests.gitlab.conftest import PROJECT, PROJECT_ID, Project, write_config


def test_hook_install_creates_the_hook_and_writes_the_secret(tmp_path: Path, project: Project) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db'}", project.fake.url, project.registry)
    secret = tmp_path / "out" / "hook-secret"
    result = CliRunner().invoke(
        cli,
        [
            "gitlab",
            "hook",
            "install",
            PROJECT,
            "--config",
            str(config),
            "--secret-file",
            str(secret),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["url"] == "https://faaspub.example.org/hooks/gitlab"
    [hook] = project.fake.projects[PROJECT_ID].hooks.values()
    assert hook["token"] == secret.read_text().strip()
    assert hook["signing_token"].startswith("whsec_")
    assert hook["pipeline_events"] and hook["merge_requests_events"]
    assert secret.stat().st_mode & 0o777 == 0o600
    assert hook["token"] not in result.output


def test_hook_install_refuses_a_project_outside_the_served_groups(tmp_path: Path, project: Project) -> None:
    project.fake.add_project(99, "elsewhere/tool")
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db'}", project.fake.url, project.registry)
    result = CliRunner().invoke(cli, ["gitlab", "hook", "install", "99", "--config", str(config)])
    assert isinstance(result.exception, FaaspubError) and "not in a served group" in str(result.exception)
    assert not project.fake.projects[99].hooks


def test_reconcile_command_reports_what_it_enqueued(tmp_path: Path, project: Project) -> None:
    project.tag_pipeline("v1.0.0")
    project.branch_pipeline("main")
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db'}", project.fake.url, project.registry)
    result = CliRunner().invoke(cli, ["gitlab", "reconcile", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"projects": 1, "pipelines": 2, "enqueued": 2}
