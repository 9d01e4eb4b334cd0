"""Values of function secrets (``secrets:`` names in function.yaml), looked up at deploy or run time.

Secrets are granted per namespace, never by name alone: a function gets a value only from its own
namespace's folder, ``[secrets.namespaces.<ns>] dir`` (one file per name), and, where that section
lists ``functions``, only the names listed for it. The embedded single namespace (``namespace``,
``local`` by default) also reads ``[secrets] dir`` and the environment variables
``FAASPUB_SECRET_<NAME>``. Values are never written to images, annotations, records or logs;
errors name the secret and the namespace, never a value.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from publisher.config import Settings
from publisher.errors import FaaspubError

ENV_PREFIX = "FAASPUB_SECRET_"


def resolve_secrets(
    settings: Settings, namespace: str, names: Iterable[str], function: str
) -> dict[str, str]:
    """``{NAME: value}`` for every name ``function`` of ``namespace`` lists; a missing one is an error."""
    granted = settings.secrets.namespaces.get(namespace)
    embedded = namespace == settings.namespace
    if granted is not None:
        folder: Path | None = Path(granted.dir).expanduser()
    else:
        folder = Path(settings.secrets.dir).expanduser() if embedded and settings.secrets.dir else None
    allowed = (
        None if granted is None or granted.functions is None else set(granted.functions.get(function, ()))
    )
    values: dict[str, str] = {}
    for name in names:
        value = None
        if allowed is None or name in allowed:
            value = _from_dir(folder, name) if folder else None
            if value is None and embedded:
                value = os.environ.get(ENV_PREFIX + name)
        if value is None:
            raise FaaspubError(
                f"function {function}: secret {name} has no value for namespace {namespace}",
                hint=_hint(namespace, name, function, embedded, allowed),
            )
        values[name] = value
    return values


def _hint(namespace: str, name: str, function: str, embedded: bool, allowed: set[str] | None) -> str:
    if allowed is not None and name not in allowed:
        return f"the operator grants it in [secrets.namespaces.{namespace}] functions.{function}"
    if embedded:
        return f"put it in a file {name} in secrets.dir or the environment variable {ENV_PREFIX}{name}"
    return f"the operator grants it as a file {name} in [secrets.namespaces.{namespace}] dir"


def _from_dir(folder: Path, name: str) -> str | None:
    path = folder / name
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise FaaspubError(f"cannot read secret {name}: {exc.strerror}") from None


def redact(text: str, secrets: dict[str, str]) -> str:
    """``text`` with every secret value replaced by ``***`` (for function logs and error messages)."""
    for value in secrets.values():
        if len(value) >= 4:
            text = text.replace(value, "***")
    return text
