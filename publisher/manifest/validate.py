"""``faaspub validate``: every problem of a function folder, without importing or running its code."""

from __future__ import annotations

import ast
from pathlib import Path

from publisher.citation.cff import Citation, find_citation, load_citation
from publisher.manifest.load import MANIFEST, load_manifest
from publisher.manifest.model import Manifest
from publisher.manifest.problems import Problem, ProblemsError


def _handler_problems(folder: Path, manifest: Manifest) -> list[Problem]:
    module_path = folder.joinpath(*manifest.module.split("."))
    candidates = [module_path.with_suffix(".py"), module_path / "__init__.py"]
    source = next((c for c in candidates if c.is_file()), None)
    if source is None:
        rel = module_path.relative_to(folder)
        return [
            Problem(
                MANIFEST,
                "handler",
                f"module '{manifest.module}' not found (looked for {rel}.py and {rel}/__init__.py)",
                hint="the handler is module:function relative to the folder holding function.yaml",
            )
        ]
    try:
        tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
    except SyntaxError as exc:
        return [Problem(source.name, "", f"Python syntax error: {exc.msg}", exc.lineno)]
    defined = {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    } | {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    if manifest.function not in defined:
        close = sorted(n for n in defined if not n.startswith("_"))
        hint = f"functions defined there: {', '.join(close)}" if close else "define it at module level"
        return [
            Problem(
                MANIFEST,
                "handler",
                f"function '{manifest.function}' is not defined in {source.name}",
                hint=hint,
            )
        ]
    return []


def _files_problems(folder: Path, manifest: Manifest) -> list[Problem]:
    problems = []
    tests = folder / manifest.tests.path
    if not tests.is_dir() or not any(tests.rglob("test_*.py")):
        problems.append(
            Problem(
                MANIFEST,
                "tests.path",
                f"no tests found in {manifest.tests.path}/ (files named test_*.py)",
                hint="every published function has tests; faaspub init writes a first one",
            )
        )
    if manifest.requirements and not (folder / manifest.requirements).is_file():
        problems.append(Problem(MANIFEST, "requirements", f"file {manifest.requirements} does not exist"))
    if manifest.tests.requirements and not (folder / manifest.tests.requirements).is_file():
        problems.append(
            Problem(MANIFEST, "tests.requirements", f"file {manifest.tests.requirements} does not exist")
        )
    if manifest.runtime == "docker" and not (folder / "Dockerfile").is_file():
        problems.append(
            Problem(MANIFEST, "runtime", "runtime 'docker' needs a Dockerfile next to function.yaml")
        )
    return problems


def validate_folder(folder: Path) -> tuple[Manifest | None, Citation | None, list[Problem]]:
    """Check function.yaml, the handler, tests and CITATION.cff of one function folder."""
    folder = Path(folder)
    problems: list[Problem] = []
    try:
        manifest = load_manifest(folder)
    except ProblemsError as exc:
        return None, None, exc.problems
    if manifest.runtime != "docker":
        problems += _handler_problems(folder, manifest)
    problems += _files_problems(folder, manifest)
    citation: Citation | None = None
    cff = find_citation(folder, manifest.citation)
    try:
        citation = load_citation(cff)
    except ProblemsError as exc:
        problems += exc.problems
    return manifest, citation, problems
