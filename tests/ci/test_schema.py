"""Every faaspub CI file validates against GitLab's own CI schema (ci.json, draft-07)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

from tests.ci.pipeline import CI_TEMPLATES, COMPONENT

SCHEMA = Path("/work/shared/specs/gitlab-ci-schema.json")
CI_FILES = sorted(p for p in CI_TEMPLATES.rglob("*.yml"))


def _validator() -> Draft7Validator:
    return Draft7Validator(json.loads(SCHEMA.read_text()))


def _documents(path: Path) -> list[Any]:
    # A `spec:` header is its own YAML document before `---`; GitLab validates each separately.
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _errors(doc: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator().iter_errors(doc)]


def test_the_ci_files_are_the_ones_we_ship() -> None:
    names = {p.relative_to(CI_TEMPLATES).as_posix() for p in CI_FILES}
    assert {"function.gitlab-ci.yml", "templates/function/template.yml"} <= names


@pytest.mark.parametrize("path", CI_FILES, ids=lambda p: p.relative_to(CI_TEMPLATES).as_posix())
def test_ci_file_validates_against_gitlab_schema(path: Path) -> None:
    docs = _documents(path)
    assert docs, f"{path} is empty"
    for doc in docs:
        assert _errors(doc) == []


def test_component_declares_its_inputs_in_a_header_document() -> None:
    header, body = _documents(COMPONENT)
    inputs = header["spec"]["inputs"]
    assert set(inputs) >= {
        "runtime",
        "builder",
        "image_repository",
        "validate_stage",
        "build_stage",
        "test_stage",
        "release_stage",
        "test_command",
        "release_on_tags",
        "service_url",
        "tools_image",
    }
    assert inputs["builder"]["options"] == ["native", "kaniko", "buildah"]
    assert inputs["builder"]["default"] == "native"
    # Every input is used, and every interpolation names a declared input.
    text = COMPONENT.read_text().split("\n---\n", 1)[1]
    for name in inputs:
        assert f"$[[ inputs.{name} ]]" in text, f"input {name} is declared but never used"
    assert "spec" not in body


def test_the_schema_rejects_what_gitlab_rejects() -> None:
    # Guards the test itself: a broken job must produce schema errors.
    bad = {"faaspub:build": {"script": "x", "interruptible": "yes", "artifacts": {"reports": {"junit": 3}}}}
    assert _errors(bad)


def test_every_job_is_interruptible_and_uses_no_other_secret() -> None:
    _, body = _documents(COMPONENT)
    jobs = {k: v for k, v in body.items() if k.startswith("faaspub:")}
    assert set(jobs) == {
        "faaspub:validate",
        "faaspub:build",
        "faaspub:kaniko",
        "faaspub:test",
        "faaspub:release",
    }
    hidden = body[".faaspub:job"]
    for name, job in jobs.items():
        assert job.get("interruptible", hidden.get("interruptible")) is True, name
    text = COMPONENT.read_text()
    # The only credentials a user's project provides: the job token and the registry variables.
    import re

    used = set(re.findall(r"\$\{?(CI_[A-Z_]*(?:TOKEN|PASSWORD|USER)[A-Z_]*)", text))
    assert used <= {"CI_JOB_TOKEN", "CI_REGISTRY_USER", "CI_REGISTRY_PASSWORD"}, used
