"""Values of function secrets (``secrets:`` names in function.yaml), looked up at deploy or run time.

A value comes from ``settings.secrets.dir`` (one file per name) or from the environment variable
``FAASPUB_SECRET_<NAME>``. Values are never written to images, annotations, records or logs; errors
name the secret and where it was looked for, never a value.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from publisher.config import Settings
from publisher.errors import FaaspubError

ENV_PREFIX = "FAASPUB_SECRET_"


def resolve_secrets(settings: Settings, names: Iterable[str], function: str) -> dict[str, str]:
    """``{NAME: value}`` for every name; a missing one is an error naming the function and the secret."""
    values: dict[str, str] = {}
    folder = Path(settings.secrets.dir).expanduser() if settings.secrets.dir else None
    for name in names:
        value = _from_dir(folder, name) if folder else None
        if value is None:
            value = os.environ.get(ENV_PREFIX + name)
        if value is None:
            where = f"{folder / name} or " if folder else ""
            raise FaaspubError(
                f"function {function}: secret {name} has no value",
                hint=f"put it in {where}the environment variable {ENV_PREFIX}{name} "
                "(set secrets.dir in the configuration for a folder with one file per secret)",
            )
        values[name] = value
    return values


def _from_dir(folder: Path, name: str) -> str | None:
    path = folder / name
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise FaaspubError(f"cannot read secret {name} from {path}: {exc.strerror}") from None


def redact(text: str, secrets: dict[str, str]) -> str:
    """``text`` with every secret value replaced by ``***`` (for function logs and error messages)."""
    for value in secrets.values():
        if len(value) >= 4:
            text = text.replace(value, "***")
    return text
