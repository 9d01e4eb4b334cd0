"""The authoring verbs as a user runs them: real processes, exit codes, one-line reasons."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FAASPUB = [sys.executable, "-m", "publisher.cli"]
ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run([*FAASPUB, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=120)


def test_init_then_validate_then_its_own_tests_pass(tmp_path: Path) -> None:
    created = run("init", "cxi-peaks", "--dir", str(tmp_path / "fn"), "--runtime", "python:3.11")
    assert created.returncode == 0, created.stderr
    assert run("validate", str(tmp_path / "fn")).returncode == 0
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path / "fn",
        capture_output=True,
        text=True,
    )
    assert tests.returncode == 0, tests.stdout
    ci = (tmp_path / "fn" / ".gitlab-ci.yml").read_text()
    assert "function.gitlab-ci.yml" in ci


def test_init_refuses_a_bad_name_with_one_line(tmp_path: Path) -> None:
    result = run("init", "Bad_Name", "--dir", str(tmp_path / "x"))
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: invalid function name 'Bad_Name'")
    assert "Traceback" not in result.stderr


def test_init_never_overwrites(tmp_path: Path) -> None:
    assert run("init", "fn", "--dir", str(tmp_path)).returncode == 0
    again = run("init", "fn", "--dir", str(tmp_path))
    assert again.returncode == 1 and "already exists" in again.stderr


def test_validate_reports_every_problem_with_file_line_and_hint(tmp_path: Path) -> None:
    assert run("init", "fn", "--dir", str(tmp_path)).returncode == 0
    manifest = tmp_path / "function.yaml"
    manifest.write_text(
        manifest.read_text()
        .replace("handler: fn:main", "handler: fn:run")
        .replace("memory: 256", "memroy: 256")
    )
    (tmp_path / "CITATION.cff").write_text(
        (tmp_path / "CITATION.cff").read_text().replace("Apache-2.0", "Apache")
    )
    result = run("validate", str(tmp_path), "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    problems = report["functions"][0]["problems"]
    fields = {p["field"] for p in problems}
    assert "limits.memroy" in fields, problems
    memroy = next(p for p in problems if p["field"] == "limits.memroy")
    assert memroy["line"] == 7 and memroy["hint"] == "did you mean 'memory'?"
    # The manifest is invalid, so the handler is not checked yet; fix it and the handler shows up.
    manifest.write_text(manifest.read_text().replace("memroy", "memory"))
    report = json.loads(run("validate", str(tmp_path), "--json").stdout)
    messages = [p["message"] for p in report["functions"][0]["problems"]]
    assert any("function 'run' is not defined in fn.py" in m for m in messages), messages
    assert any("'Apache' is not an allowed value" in m for m in messages), messages


def test_validate_a_repository_with_several_functions(tmp_path: Path) -> None:
    for name in ("alpha", "beta"):
        assert run("init", name, "--dir", str(tmp_path / name)).returncode == 0
    (tmp_path / "beta" / "tests" / "test_beta.py").unlink()
    result = run("validate", str(tmp_path), "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 1
    assert {f["function"]: f["ok"] for f in report["functions"]} == {"alpha": True, "beta": False}


def test_validate_without_manifest(tmp_path: Path) -> None:
    result = run("validate", str(tmp_path))
    assert result.returncode == 1 and "function manifest not found" in result.stderr


def test_schema_is_json_schema_for_function_yaml() -> None:
    result = run("schema")
    schema = json.loads(result.stdout)
    assert schema["title"] == "faaspub function.yaml"
    assert set(schema["required"]) == {"name", "runtime", "handler"}


@pytest.mark.parametrize(
    "verb",
    [
        "init",
        "validate",
        "build",
        "test",
        "publish",
        "serve",
        "invoke",
        "ls",
        "logs",
        "rollback",
        "events",
        "schema",
    ],
)
def test_every_verb_has_help(verb: str) -> None:
    result = run(verb, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_examples_validate() -> None:
    result = run("validate", str(ROOT / "examples"), "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 0, report
    assert {"hello", "cxi-metadata"} <= {f["function"] for f in report["functions"]}
