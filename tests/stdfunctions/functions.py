"""The standard functions of ``functions/``, imported from their folders as their images import them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2] / "functions"
MODULES = {
    "nexus-metadata": "nexus_metadata",
    "scicat-ingest": "scicat_ingest",
    "rucio-rule": "rucio_rule",
    "dcache-qos": "dcache_qos",
}


def load(function: str) -> ModuleType:
    """The handler module of ``functions/<function>`` (loaded once per test process)."""
    name = MODULES[function]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / function / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def storage_event(path: str, url: str, size: int | None, storage: str = "dcache") -> dict[str, Any]:
    """The CloudEvent faaspub sends for a file that landed."""
    from faaspub_runtime.events import make_cloudevent

    return make_cloudevent(
        source=f"faaspub/{storage}",
        kind="created",
        path=path,
        size=size,
        checksum=None,
        url=url,
        event_id=f"test:{path}",
        time="2026-11-23T10:00:00Z",
        storage=storage,
    )
