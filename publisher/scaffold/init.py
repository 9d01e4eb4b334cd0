"""Write a new function repository from the Jinja2 templates next to this module."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from publisher.errors import FaaspubError
from publisher.manifest.model import DEFAULT_RUNTIME, NAME_PATTERN, RUNTIMES

DEFAULT_CI_PROJECT = "faaspub/faaspub"

# template -> path in the new repository ("{module}" is the handler module name)
FILES = {
    "function.yaml.j2": "function.yaml",
    "handler.py.j2": "{module}.py",
    "tests/test_handler.py.j2": "tests/test_{module}.py",
    "conftest.py.j2": "conftest.py",
    "requirements.txt.j2": "requirements.txt",
    "CITATION.cff.j2": "CITATION.cff",
    "gitlab-ci.yml.j2": ".gitlab-ci.yml",
    "gitignore.j2": ".gitignore",
    "README.md.j2": "README.md",
}


def _author() -> tuple[str, str]:
    """Given and family names from ``git config user.name``, or placeholders to edit."""
    try:
        name = subprocess.run(
            ["git", "config", "user.name"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        name = ""
    given, _, family = name.rpartition(" ")
    return (given, family) if given and family else ("Jane", "Doe")


def scaffold(
    name: str,
    dest: Path,
    runtime: str = DEFAULT_RUNTIME,
    description: str | None = None,
    ci_project: str = DEFAULT_CI_PROJECT,
) -> list[Path]:
    """Create the repository for function ``name`` in ``dest``; refuses to overwrite existing files."""
    if not re.match(NAME_PATTERN, name):
        raise FaaspubError(
            f"invalid function name {name!r}",
            hint="use 1-63 lowercase letters, digits and dashes, e.g. 'cxi-metadata'",
        )
    if runtime not in RUNTIMES or runtime == "docker":
        pythons = ", ".join(r for r in RUNTIMES if r != "docker")
        raise FaaspubError(f"invalid runtime {runtime!r}", hint=f"choose one of {pythons}")
    module = name.replace("-", "_")
    given, family = _author()
    values = {
        "name": name,
        "module": module,
        "runtime": runtime,
        "description": description or f"The {name} function.",
        "given_names": given,
        "family_names": family,
        "ci_project": ci_project,
    }
    targets = {template: dest / path.format(module=module) for template, path in FILES.items()}
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing:
        raise FaaspubError(f"{existing[0]} already exists", hint="choose another --dir or remove it")
    env = Environment(
        loader=PackageLoader("publisher.scaffold", "templates"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    for template, target in targets.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(env.get_template(template).render(**values), encoding="utf-8")
    return list(targets.values())
