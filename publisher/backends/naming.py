"""Names shared by the backends: versioned actions, packages, triggers and project keys."""

from __future__ import annotations

import re

from publisher.core.types import FunctionSource
from publisher.errors import FaaspubError

# OpenWhisk entity names (contracts.md B.1): word characters, then word, '@', ' ', '.', '-'.
_ENTITY = re.compile(r"\A([\w]|[\w][\w@ .-]*[\w@.-]+)\Z")
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$")

STORAGE_SUFFIX = "--storage"


def versioned(function: str, version: str) -> str:
    """``NAME@X.Y.Z``: the immutable action of one release."""
    return f"{function}@{version}"


def split_ref(text: str) -> tuple[str, str | None]:
    """``"name@1.2.0"`` -> ``("name", "1.2.0")``; ``"name"`` -> ``("name", None)``."""
    name, sep, version = text.partition("@")
    if not name or (sep and not version):
        raise FaaspubError(f"{text!r} is not NAME or NAME@VERSION")
    return name, version or None


def check_version(version: str) -> str:
    if not _VERSION.match(version):
        raise FaaspubError(
            f"version {version!r} is not a valid version", hint="use X.Y.Z (letters, digits, . + _ -)"
        )
    return version


def package_name(namespace: str) -> str:
    """The OpenWhisk package of a faaspub namespace (a GitLab group path; '/' becomes '--')."""
    name = namespace.strip("/").replace("/", "--")
    if not _ENTITY.match(name):
        raise FaaspubError(f"namespace {namespace!r} cannot be an OpenWhisk package name")
    return name


def trigger_name(namespace: str, function: str) -> str:
    """The storage trigger (and its rule) of a function.

    OpenWhisk triggers and rules live at namespace level, not in packages, so the package is part of
    the name: two groups may both publish a function called ``thumbnail``.
    """
    return f"{package_name(namespace)}--{function}{STORAGE_SUFFIX}"


def project_of(source: FunctionSource) -> str:
    """The key :meth:`Backend.prune` groups functions by: GitLab project id, else source URL or folder."""
    if source.project_id is not None:
        return str(source.project_id)
    return source.source_url or str(source.repo_root)
