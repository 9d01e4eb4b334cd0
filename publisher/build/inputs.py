"""What goes into a function image, derived from a :class:`FunctionSource` alone.

Every builder (native, buildah, kaniko) takes the same inputs from here: the files of the code
layer, the baked-in handler configuration, the OCI labels and the image name. Keeping them in one
place is what makes the three builders produce equivalent images.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from publisher.config import Settings
from publisher.core.types import FunctionSource
from publisher.errors import FaaspubError
from publisher.manifest.yamlfile import unsafe
from publisher.oci.image import canonical_json

ACTION_DIR = "/action"
HANDLER_CONFIG = ".faaspub/handler.json"  # relative to ACTION_DIR; read by the runtime proxy
DEPS_DIR = "/opt/faaspub/deps"  # pip --target of the function's requirements
TEST_DEPS_DIR = "/opt/faaspub/test-deps"  # pytest and test requirements, test image only

# Never part of an image: VCS data, caches, local state, virtualenvs.
EXCLUDED_DIRS = frozenset(
    {
        ".git",
        ".faaspub",
        "__pycache__",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".venv",
        "venv",
        ".gitlab-ci-local",
        "node_modules",
        ".hypothesis",
        ".tox",
    }
)
EXCLUDED_SUFFIXES = (".pyc", ".pyo")
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def inside(root: Path, relative: str, what: str) -> Path:
    """``root / relative``, refusing a path that leaves ``root`` (``..``, absolute, or via a symlink)."""
    candidate = root / relative
    resolved = candidate.resolve()
    if Path(relative).is_absolute() or not resolved.is_relative_to(root.resolve()):
        raise FaaspubError(
            f"{what} {relative!r} points outside the function folder {root}",
            hint="keep every file the function needs inside its folder",
        )
    if candidate.is_symlink():
        raise FaaspubError(f"{what} {relative!r} is a symbolic link", hint="replace it with the file itself")
    return candidate


def collect_files(root: Path, skip: frozenset[str] = frozenset()) -> dict[str, Path]:
    """Regular files under ``root`` as ``{relative posix path: path}``, sorted.

    Symbolic links and special files are refused (a link could smuggle host files into the image);
    ``skip`` holds relative folder paths left out (the tests folder of the shipped image).
    """
    files: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        rel_base = base.relative_to(root)
        kept = []
        for name in sorted(dirnames):
            rel = (rel_base / name).as_posix()
            if name in EXCLUDED_DIRS or rel in skip:
                continue
            if (base / name).is_symlink():
                raise FaaspubError(
                    f"{rel} in {root} is a symbolic link; function folders must hold regular files only",
                    hint="replace the link with the folder it points to",
                )
            kept.append(name)
        dirnames[:] = kept
        for name in sorted(filenames):
            if name.endswith(EXCLUDED_SUFFIXES):
                continue
            path = base / name
            rel = (rel_base / name).as_posix()
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise FaaspubError(
                    f"{rel} in {root} is a symbolic link; function folders must hold regular files only",
                    hint="replace the link with the file it points to",
                )
            if not stat.S_ISREG(mode):
                raise FaaspubError(f"{rel} in {root} is not a regular file and cannot go in an image")
            files[rel] = path
    return dict(sorted(files.items()))


def tests_folder(fn: FunctionSource) -> str | None:
    """The tests folder relative to the function root, or None when it does not exist."""
    rel = fn.manifest.tests.path.strip("/")
    path = inside(fn.root, rel, "tests.path")
    return Path(rel).as_posix() if path.is_dir() else None


def code_files(fn: FunctionSource) -> dict[str, Path]:
    """The files of the shipped code layer: the function folder without its tests."""
    tests = tests_folder(fn)
    return collect_files(fn.root, frozenset({tests}) if tests else frozenset())


def test_files(fn: FunctionSource) -> dict[str, Path]:
    """The files of the test layer (the tests folder), keyed relative to the function root."""
    tests = tests_folder(fn)
    if tests is None:
        return {}
    return {f"{tests}/{rel}": path for rel, path in collect_files(fn.root / tests).items()}


def requirements_file(fn: FunctionSource) -> Path | None:
    """The runtime requirements file: the manifest's, else ``requirements.txt`` when present."""
    if fn.manifest.requirements:
        path = inside(fn.root, fn.manifest.requirements, "requirements")
        if not path.is_file():
            raise FaaspubError(f"requirements file {fn.manifest.requirements} does not exist in {fn.root}")
        return path
    default = fn.root / "requirements.txt"
    return default if default.is_file() and not default.is_symlink() else None


def test_requirements_file(fn: FunctionSource) -> Path | None:
    """The test-only requirements file named in ``tests.requirements``, if any."""
    name = fn.manifest.tests.requirements
    if not name:
        return None
    path = inside(fn.root, name, "tests.requirements")
    if not path.is_file():
        raise FaaspubError(f"tests.requirements file {name} does not exist in {fn.root}")
    return path


def handler_config(fn: FunctionSource, version: str) -> dict[str, Any]:
    """``/action/.faaspub/handler.json``: what the runtime proxy needs to load and run the handler."""
    manifest = fn.manifest
    return {
        "handler": manifest.handler,
        "env": dict(sorted(manifest.env.items())),
        "name": manifest.name,
        "version": version,
        "concurrency": manifest.limits.concurrency,
        "timeout_ms": manifest.limits.timeout_ms,
    }


def handler_config_bytes(fn: FunctionSource, version: str) -> bytes:
    return canonical_json(handler_config(fn, version)) + b"\n"


def manifest_hash(fn: FunctionSource) -> str:
    """Digest of the validated manifest (not of its YAML text, so formatting changes do not count)."""
    return "sha256:" + hashlib.sha256(canonical_json(fn.manifest.model_dump(mode="json"))).hexdigest()


def created(fn: FunctionSource) -> datetime:
    """The image creation time: the commit time, so rebuilding a commit gives the same image.

    Without a commit, ``SOURCE_DATE_EPOCH`` (reproducible-builds.org) or the epoch.
    """
    if fn.commit_time is not None:
        when = fn.commit_time
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "0")
    try:
        return datetime.fromtimestamp(int(epoch), UTC)
    except ValueError:
        raise FaaspubError(f"SOURCE_DATE_EPOCH={epoch!r} is not a number of seconds") from None


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def citation_license(fn: FunctionSource) -> str | None:
    """The SPDX licence of ``CITATION.cff`` (a list becomes an ``OR`` expression), if stated."""
    try:
        path = inside(fn.root, fn.manifest.citation, "citation")
    except FaaspubError:
        return None
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
        data = None if unsafe(text) else YAML(typ="safe").load(text)
    except (YAMLError, UnicodeDecodeError):
        return None  # `faaspub validate` reports a broken CITATION.cff; the image just lacks the label
    value = data.get("license") if isinstance(data, dict) else None
    if isinstance(value, list):
        return " OR ".join(str(v) for v in value) or None
    return str(value) if value else None


def oci_labels(fn: FunctionSource, version: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The image labels: org.opencontainers.image.* annotations plus faaspub's own.

    ``extra`` comes from the pipeline (``org.faaspub.doi`` once a DOI is reserved) and wins.
    """
    manifest = fn.manifest
    labels = {
        "org.opencontainers.image.title": manifest.name,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.created": rfc3339(created(fn)),
        "org.opencontainers.image.source": fn.source_url or "",
        "org.opencontainers.image.revision": fn.commit or "",
        "org.opencontainers.image.description": manifest.description or "",
        "org.opencontainers.image.licenses": citation_license(fn) or "",
        "org.faaspub.function": manifest.name,
        "org.faaspub.namespace": fn.namespace,
        "org.faaspub.manifest-hash": manifest_hash(fn),
        "org.faaspub.runtime": manifest.runtime,
    }
    labels.update(extra or {})
    return {k: v for k, v in sorted(labels.items()) if v}


def registry_host(settings: Settings) -> str | None:
    """``host:port`` of the configured registry, or None when images go to the local OCI layout."""
    if not settings.registry.url:
        return None
    url = settings.registry.url if "://" in settings.registry.url else f"https://{settings.registry.url}"
    return urlsplit(url).netloc


def repository_path(settings: Settings, fn: FunctionSource) -> str:
    """``<repository_prefix>/<namespace>/<name>`` inside the registry."""
    parts = [settings.registry.repository_prefix.strip("/"), fn.namespace, fn.manifest.name]
    return "/".join(p for p in parts if p)


def content_tag(version: str, digest: str) -> str:
    """``<version>-<first 12 hex digits of the manifest digest>``: a tag is never reused for other content.

    OpenWhisk pulls by tag and ignores digests, so the tag itself must pin the content.
    """
    safe = _TAG_UNSAFE.sub("_", version).lstrip(".-") or "dev"
    short = digest.split(":", 1)[-1][:12]
    return f"{safe[:110]}-{short}"


def test_tag(tag: str) -> str:
    """The tag of the test image that belongs to the function image tagged ``tag``."""
    return f"{tag}-test"
