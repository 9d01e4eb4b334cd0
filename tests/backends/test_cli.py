"""``faaspub invoke|ls|logs|rollback`` on the local backend with the process executor (no engine)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from publisher.cli import operate
from publisher.core.context import Context
from publisher.core.types import ImageRef
from tests.backends.images import make_release

pytestmark = pytest.mark.containers


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    path = tmp_path / "faaspub.toml"
    path.write_text(
        f'namespace = "grp"\nstate_dir = "{tmp_path / "state"}"\n'
        f'[database]\nurl = "sqlite:///{tmp_path / "db.sqlite"}"\n'
        "[registry]\ninsecure = true\n"
        '[backend]\nkind = "local"\n[backend.local]\nengine = "process"\n'
    )
    return path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(operate.__dict__[args[0]], list(args[1:]), catch_exceptions=False)
    return result.exit_code, result.output


def test_operate_verbs(config: Path, function_image: Callable[..., ImageRef]) -> None:
    context = Context.from_config(str(config))
    for v in ("1.0.0", "1.1.0"):
        code = f"def main(p):\n    print('running {v}')\n    return {{'v': '{v}', 'echo': p}}\n"
        context.backend.deploy(make_release("echo", v, function_image("echo", v, code)))
    context.backend.close()

    status, output = run("invoke", "echo", "--data", '{"a": 1}', "--config", str(config))
    assert status == 0, output
    assert json.loads(output) == {"v": "1.1.0", "echo": {"a": 1}}

    status, output = run("invoke", "echo@1.0.0", "--config", str(config), "--json")
    assert status == 0, output
    doc = json.loads(output)
    assert doc["status"] == "success" and doc["version"] == "1.0.0"
    assert any("stdout: running 1.0.0" in line for line in doc["logs"])

    status, output = run("ls", "--config", str(config), "--json")
    assert json.loads(output) == [
        {
            "namespace": "grp",
            "name": "echo",
            "alias": "1.1.0",
            "versions": ["1.0.0", "1.1.0"],
            "project": "7",
            "triggers": [],
        }
    ]

    status, output = run("rollback", "echo", "1.0.0", "--config", str(config))
    assert status == 0
    status, output = run("invoke", "echo", "--config", str(config))
    assert json.loads(output)["v"] == "1.0.0"

    status, output = run("logs", "echo", "--limit", "2", "--config", str(config))
    assert status == 0
    assert output.count("echo@1.0.0 success") == 2 and "running 1.0.0" in output


def test_bad_input_gives_one_line_reasons(config: Path) -> None:
    from publisher.errors import FaaspubError

    with pytest.raises(FaaspubError, match="--data must be a JSON object"):
        run("invoke", "echo", "--data", "[1]", "--config", str(config))
    with pytest.raises(FaaspubError, match="function missing does not exist"):
        run("rollback", "missing", "1.0.0", "--config", str(config))
