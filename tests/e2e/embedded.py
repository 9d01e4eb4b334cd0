"""The embedded-defaults story (journey 7), shared by ``test_embedded.py`` and ``bench/e2e.py``.

No configuration at all on a fresh machine whose ``FAASPUB_HOME`` is ``./.faaspub`` of its folder:
SQLite, the local OCI layout as registry, the local backend on faaspub's own podman service, and
``data/`` as watched storage, all under it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.functions import CXI_METADATA, commit_and_tag, copy_function
from tests.e2e.stack import Service, faaspub, publish_result, start_service, stop_private_podman

INCOMING = Path(".faaspub") / "data" / "incoming"


def home(workdir: Path) -> dict[str, str]:
    """The environment of every process of the machine in ``workdir``: its own ``FAASPUB_HOME``."""
    return {"FAASPUB_HOME": str(workdir / ".faaspub")}


@dataclass
class Machine:
    """One scientist's machine: a folder where ``faaspub serve`` runs on the embedded defaults."""

    workdir: Path
    service: Service

    @property
    def incoming(self) -> Path:
        return self.workdir / INCOMING

    def faaspub(self, *args: str, timeout: float = 300) -> str:
        return faaspub(*args, cwd=self.workdir, env=home(self.workdir), timeout=timeout).stdout

    def publish(self, folder: Path) -> dict[str, Any]:
        return publish_result(self.faaspub("publish", str(folder), "--json"))

    def invoke(self, name: str, data: dict[str, Any]) -> dict[str, Any]:
        return dict(json.loads(self.faaspub("invoke", name, "--data", json.dumps(data), "--json")))

    def logs(self, name: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.faaspub("logs", name, "--json").splitlines() if line]

    def stop(self) -> None:
        """Stop the service, then the private podman service it started (and its containers)."""
        try:
            self.service.stop()
        finally:
            stop_private_podman(self.workdir / ".faaspub")


def prepare(workdir: Path) -> None:
    """What ``make run`` does before serving: the watched folder and the runtime base (offline, cached)."""
    (workdir / INCOMING).mkdir(parents=True, exist_ok=True)
    faaspub("runtime", "build-base", "--python", "3.11", cwd=workdir, env=home(workdir), timeout=300)


def start(workdir: Path) -> Machine:
    return Machine(workdir, start_service(workdir, env=home(workdir)))


def function_checkout(workdir: Path, tag: str = "v1.0.0") -> Path:
    """The scientist's checkout of examples/cxi-metadata, tagged (``faaspub publish`` reads the tag)."""
    folder = copy_function(CXI_METADATA, workdir / "src" / "cxi-metadata")
    commit_and_tag(folder, tag)
    return folder
