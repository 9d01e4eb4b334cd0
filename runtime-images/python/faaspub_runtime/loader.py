"""Finding and loading the function handler for ``POST /init``.

Two sources, as in OpenWhisk's ``blackbox`` kind:

* the image itself: ``/action/.faaspub/handler.json`` written by the faaspub builder
  (``{"handler": "module:function", "env": {...}}``), or the ``FAASPUB_HANDLER`` variable;
* code sent with the init request: plain Python source, or a base64 zip (``binary: true``)
  unpacked into a temporary directory.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

Handler = Callable[[dict[str, Any]], Any]

HANDLER_FILE = Path(".faaspub") / "handler.json"
# OpenWhisk's python runtime looks for these entry files when ``main`` is only a function name.
ENTRY_FILES = ("__main__.py", "main.py")
# The entry file is imported under this name, never ``__main__`` (that is the proxy itself).
ENTRY_MODULE = "action_main"


class InitError(Exception):
    """The handler could not be loaded; the message is sent back in the init response."""


def action_dir() -> Path:
    """Where the builder put the function's files (``/action`` in every faaspub image)."""
    return Path(os.environ.get("FAASPUB_ACTION_DIR", "/action"))


def load(init: Mapping[str, Any]) -> Handler:
    """Return the handler for the ``value`` object of an init request, applying its ``env``."""
    code = init.get("code")
    main = init.get("main") or "main"
    if not isinstance(main, str):
        raise InitError("init 'main' must be a string")
    baked: dict[str, Any] = {}
    spec: str | None
    if code:
        folder, spec = _materialise(code, bool(init.get("binary"))), main
    else:
        folder = action_dir()
        baked = _read_handler_file(folder)
        spec = os.environ.get("FAASPUB_HANDLER") or baked.get("handler")
        if not spec:
            raise InitError(
                f"no handler configured: neither FAASPUB_HANDLER nor {folder / HANDLER_FILE} names one, "
                "and the init request carries no code"
            )
    # Exported before the import: module-level code may read its settings. Init's env wins.
    _apply_env(baked.get("env") or {}, "handler.json 'env'")
    _apply_env(init.get("env") or {}, "init 'env'")
    return _load_from(folder, spec)


def _materialise(code: Any, binary: bool) -> Path:
    """Write init code into a fresh folder under the temp dir (``/tmp``, writable in the container)."""
    if not isinstance(code, str):
        raise InitError("init 'code' must be a string (plain source, or base64 zip with binary: true)")
    import tempfile  # code arrives with init only outside faaspub images: keep it off the cold start

    folder = Path(tempfile.mkdtemp(prefix="faaspub-action-"))
    if binary:
        _unzip(code, folder)
    else:
        (folder / ENTRY_FILES[0]).write_text(code, encoding="utf-8")
    return folder


def _read_handler_file(folder: Path) -> dict[str, Any]:
    path = folder / HANDLER_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise InitError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise InitError(f"{path} must hold a JSON object")
    return data


def _unzip(code: str, folder: Path) -> None:
    import base64
    import binascii
    import io
    import zipfile

    try:
        blob = base64.b64decode(code, validate=True)
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            # ZipFile.extractall drops absolute paths and '..' parts, so entries stay inside folder.
            archive.extractall(folder)
    except (binascii.Error, ValueError) as exc:
        raise InitError(f"init 'code' is not valid base64: {exc}") from None
    except zipfile.BadZipFile as exc:
        raise InitError(f"init 'code' is not a zip archive: {exc}") from None


def _load_from(folder: Path, main: str) -> Handler:
    """``main`` is ``module:function`` (imported with ``folder`` on sys.path) or a function name."""
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    if ":" in main:
        module_name, _, function = main.partition(":")
        what = f"cannot import module {module_name!r}"
        module = _guarded(lambda: importlib.import_module(module_name), what)
    else:
        function = main
        entry = next((folder / name for name in ENTRY_FILES if (folder / name).is_file()), None)
        if entry is None:
            raise InitError(
                f"the action has neither {' nor '.join(ENTRY_FILES)}; set main to 'module:function'"
            )
        module = _guarded(lambda: _import_file(entry), f"cannot load {entry.name}")
    handler = getattr(module, function, None)
    if handler is None:
        raise InitError(f"module {module.__name__!r} has no function {function!r}")
    if not callable(handler):
        raise InitError(f"{module.__name__}.{function} is not callable")
    return handler


def _import_file(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(ENTRY_MODULE, path)
    assert spec is not None and spec.loader is not None  # always set for a .py file path
    module = importlib.util.module_from_spec(spec)
    sys.modules[ENTRY_MODULE] = module
    spec.loader.exec_module(module)
    return module


def _guarded(action: Callable[[], Any], what: str) -> Any:
    # User code runs at import time: anything it raises, even SystemExit, is an init error.
    try:
        return action()
    except BaseException as exc:
        raise InitError(f"{what}: {type(exc).__name__}: {exc}") from exc


def _apply_env(env: Any, where: str) -> None:
    if not isinstance(env, Mapping):
        raise InitError(f"{where} must be an object")
    for key, value in env.items():
        os.environ[str(key)] = value if isinstance(value, str) else json.dumps(value)
