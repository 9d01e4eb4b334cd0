"""Load ``function.yaml`` into a :class:`Manifest`, and a function folder into a :class:`FunctionSource`."""

from __future__ import annotations

import difflib
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from publisher.core.types import FunctionSource
from publisher.manifest.model import (
    Example,
    HttpTrigger,
    Limits,
    Manifest,
    StorageTrigger,
    Tests,
    TriggerEntry,
)
from publisher.manifest.problems import Problem, ProblemsError
from publisher.manifest.yamlfile import line_of, plain, read_yaml

MANIFEST = "function.yaml"

# Which model describes the mapping at a field path ("*" = any list index): for did-you-mean hints.
_MODEL_AT: dict[str, type[BaseModel]] = {
    "": Manifest,
    "limits": Limits,
    "tests": Tests,
    "triggers.*": TriggerEntry,
    "triggers.*.storage": StorageTrigger,
    "triggers.*.http": HttpTrigger,
    "examples.*": Example,
}

_HINTS = {
    "name": "use 1-63 lowercase letters, digits and dashes, starting and ending with a letter or digit",
    "runtime": "one of python:3.11, python:3.12, python:3.13, docker",
    "handler": "write module:function, for example 'handler:main'",
    "limits.memory": "memory is in MB between 128 and 512",
    "limits.timeout": "write a duration like '90s', '500ms' or '2m' (at most 5m)",
    "limits.concurrency": "a whole number from 1 to 500",
    "env": "env is a mapping of NAME: value; put secret values in the platform, list names under secrets",
}


def _dotted(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _pattern(loc: tuple[int | str, ...]) -> str:
    return ".".join("*" if isinstance(p, int) else str(p) for p in loc)


def _problem(file: str, data: Any, error: dict[str, Any]) -> Problem:
    loc = tuple(error["loc"])
    line = line_of(data, loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        parent, key = loc[:-1], str(loc[-1])
        model = _MODEL_AT.get(_pattern(parent))
        known = sorted(model.model_fields) if model else []
        close = difflib.get_close_matches(key, known, n=1)
        hint = (
            f"did you mean '{close[0]}'?" if close else (f"known keys: {', '.join(known)}" if known else None)
        )
        return Problem(file, _dotted(loc), f"unknown key '{key}'", line, hint)
    if kind == "missing":
        return Problem(file, _dotted(loc), "is required", line, _HINTS.get(_pattern(loc)))
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind in ("string_pattern_mismatch", "literal_error", "greater_than_equal", "less_than_equal"):
        message = f"{message} (got {error.get('input')!r})"
    return Problem(file, _dotted(loc), message, line, _HINTS.get(_pattern(loc)))


def parse_manifest(data: Any, file: str = MANIFEST) -> Manifest:
    """Validate parsed YAML (with line info) into a Manifest, or raise with every problem."""
    try:
        return Manifest.model_validate(plain(data))
    except ValidationError as exc:
        raise ProblemsError([_problem(file, data, dict(e)) for e in exc.errors()]) from None


def load_manifest(folder: Path) -> Manifest:
    path = Path(folder) / MANIFEST
    return parse_manifest(read_yaml(path, what="function manifest"), path.name)


def find_functions(repo_root: Path) -> list[Path]:
    """Function folders of a repository: the root itself, or each subfolder with a function.yaml."""
    root = Path(repo_root)
    if (root / MANIFEST).is_file():
        return [root]
    found = sorted(p.parent for p in root.glob(f"*/{MANIFEST}"))
    found += sorted(p.parent for p in root.glob(f"*/*/{MANIFEST}") if ".git" not in p.parts)
    return found


def _git(repo: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def git_tag_version(repo: Path) -> str | None:
    """``v1.2.0`` tagged at HEAD -> ``1.2.0``."""
    tags = _git(repo, "tag", "--points-at", "HEAD") or ""
    for tag in sorted(tags.split(), reverse=True):
        if tag.startswith("v") and tag[1:2].isdigit():
            return tag[1:]
    return None


def load_function(folder: Path, namespace: str = "local", manifest: Manifest | None = None) -> FunctionSource:
    """The manifest (read unless given) and the git provenance (commit, time, remote) of a function folder."""
    folder = Path(folder).resolve()
    manifest = manifest or load_manifest(folder)
    repo_root = Path(_git(folder, "rev-parse", "--show-toplevel") or folder)
    commit = _git(folder, "rev-parse", "HEAD")
    stamp = _git(folder, "log", "-1", "--format=%ct")
    remote = _git(folder, "remote", "get-url", "origin")
    if remote and "@" in remote.split("//", 1)[-1].split("/", 1)[0]:
        remote = None  # never carry credentials from a remote URL into labels or records
    return FunctionSource(
        root=folder,
        manifest=manifest,
        repo_root=repo_root,
        namespace=namespace,
        commit=commit,
        commit_time=datetime.fromtimestamp(int(stamp), UTC) if stamp else None,
        source_url=remote,
    )
