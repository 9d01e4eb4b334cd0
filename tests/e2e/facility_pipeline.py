"""The facility's worked pipeline (issue 20), shared by its test and its example's documentation:
a NeXus file lands in dCache → nexus-metadata → scicat-ingest → rucio-rule → dcache-qos.

The four standard functions of ``functions/`` are published with ``faaspub publish`` into the
namespace ``facility`` of a ``faaspub serve`` on the local backend, with their ``env`` pointed at the
test servers (dCache frontend and WebDAV door, SciCat) and the real Rucio server. Each step writes its
step record next to the file, and the next step triggers on that record through dCache's storage
events: chained triggers, each run an activation of the exact published version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.functions import commit_and_tag, copy_function
from tests.e2e.stack import REPO_ROOT

FUNCTIONS = REPO_ROOT / "functions"
STEPS = ("nexus-metadata", "scicat-ingest", "rucio-rule", "dcache-qos")
NAMESPACE = "facility"
RAW = "/pnfs/facility/raw"
RUN = f"{RAW}/p002042/r0042"


def facility_config(
    workdir: Path, *, dcache_url: str, door_url: str, secrets: dict[str, str], cache_dir: Path
) -> Path:
    """``faaspub.toml`` of the facility: local backend (on the host network: the functions talk to
    dCache, SciCat and Rucio), dCache events, one folder of function secrets."""
    folder = workdir / "secrets"
    (folder / "functions").mkdir(parents=True, exist_ok=True)
    for name, value in {
        "dcache": secrets["DCACHE_TOKEN"],
        **{f"functions/{k}": v for k, v in secrets.items()},
    }.items():
        (folder / name).write_text(value + "\n")
        (folder / name).chmod(0o600)
    config = workdir / "faaspub.toml"
    config.write_text(f'''
namespace = "{NAMESPACE}"
state_dir = "{workdir / ".faaspub"}"
[database]
url = "sqlite:///{workdir / "faaspub.db"}"
[storage.local]
root = "{workdir / "data"}"
[backend.local]
network = "host"  # the functions read dCache over WebDAV and talk to SciCat and Rucio
[storage.dcache]
url = "{dcache_url}"
token_file = "{folder / "dcache"}"
webdav_url = "{door_url}"
[secrets]
dir = "{folder / "functions"}"
[build]
cache_dir = "{cache_dir}"
''')
    return config


def facility_copy(name: str, workdir: Path, env: dict[str, str]) -> Path:
    """``functions/<name>`` as the facility's checkout, ``env`` merged into its settings, tagged v1.0.0."""
    manifest = yaml.safe_load((FUNCTIONS / name / "function.yaml").read_text())
    folder = copy_function(
        FUNCTIONS / name, workdir / "src" / name, env={**(manifest.get("env") or {}), **env}
    )
    commit_and_tag(folder, "v1.0.0")
    return folder


def record(door_read: Any, step: str, path: str) -> dict[str, Any] | None:
    """The step record ``<path>.<step>.json`` from dCache, once written."""
    raw = door_read(f"{path}.{step}.json")
    return json.loads(raw) if raw else None
