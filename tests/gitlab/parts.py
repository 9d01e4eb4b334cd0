"""Recording stand-ins for the backend and the archive, usable from worker subprocesses.

Both append to JSON-lines files under the state directory (so the test process can count what a
killed and restarted worker did) and behave like the real parts where the release relies on it:
the archive reserves one draft per function and version and publishes it once; the backend
refuses a second digest for an existing version and, like the real backends, records what it
deploys in the catalogue under its project key, which is what :meth:`RecordingBackend.prune` reads.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from publisher.backends.catalogue import Catalogue
from publisher.backends.naming import project_of
from publisher.core.context import Context
from publisher.core.types import FunctionSource, Release, Reservation
from publisher.errors import FaaspubError
from publisher.manifest.model import StorageTrigger


@contextmanager
def _locked_state(path: Path) -> Iterator[dict[str, Any]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = json.loads(path.read_text()) if path.exists() else {}
        yield state
        path.write_text(json.dumps(state))


def read_log(state_dir: Path, name: str) -> list[dict[str, Any]]:
    path = state_dir / "recording" / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _append(state_dir: Path, name: str, entry: dict[str, Any]) -> None:
    path = state_dir / "recording" / f"{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as out:
        out.write(json.dumps(entry) + "\n")


class RecordingArchive:
    """Mints ``10.5072/faaspub.<n>`` DOIs; reserve is idempotent per function and version."""

    def __init__(self, context: Context) -> None:
        self.state_dir = context.settings.state_path

    def _state(self) -> Any:
        return _locked_state(self.state_dir / "recording" / "archive.json")

    def reserve(self, fn: FunctionSource, version: str) -> Reservation:
        key = f"{fn.namespace}/{fn.name}/{version}"
        with self._state() as state:
            drafts = state.setdefault("drafts", {})
            if key not in drafts:
                drafts[key] = f"10.5072/faaspub.{len(drafts) + 1}"
                _append(self.state_dir, "archive", {"op": "reserve", "key": key, "doi": drafts[key]})
            return Reservation(doi=drafts[key], record_id=key)

    def publish(self, release: Release, files: Mapping[str, Path]) -> Reservation:
        key = f"{release.namespace}/{release.name}/{release.version}"
        with self._state() as state:
            published = state.setdefault("published", {})
            if key not in published:
                published[key] = release.reservation.doi
                _append(
                    self.state_dir,
                    "archive",
                    {"op": "publish", "key": key, "doi": published[key], "files": sorted(files)},
                )
        return release.reservation

    def discard(self, fn: FunctionSource, version: str) -> None:
        key = f"{fn.namespace}/{fn.name}/{version}"
        with self._state() as state:
            if key in state.get("drafts", {}) and key not in state.get("published", {}):
                del state["drafts"][key]
                _append(self.state_dir, "archive", {"op": "discard", "key": key})


class RecordingBackend:
    """Records deploy/bind/undeploy calls; ``NAME@VERSION`` is immutable like on OpenWhisk."""

    name = "recording"

    def __init__(self, context: Context) -> None:
        self.state_dir = context.settings.state_path
        self.catalogue = Catalogue(context.sessions)

    def deploy(self, release: Release, alias: bool = True) -> None:
        key = f"{release.namespace}/{release.name}@{release.version}"
        with _locked_state(self.state_dir / "recording" / "backend.json") as state:
            deployed = state.setdefault("versions", {})
            if deployed.get(key) not in (None, release.image.digest):
                raise FaaspubError(f"{key} exists with another digest")
            if key not in deployed:
                deployed[key] = release.image.digest
                _append(
                    self.state_dir, "backend", {"op": "deploy", "key": key, "digest": release.image.digest}
                )
        self.catalogue.record(release, project_of(release.source))
        self.catalogue.set_alias(release.namespace, release.name, release.version)

    def bind(self, release: Release, triggers: list[StorageTrigger]) -> None:
        _append(
            self.state_dir,
            "backend",
            {"op": "bind", "key": f"{release.namespace}/{release.name}", "paths": [t.path for t in triggers]},
        )

    def undeploy(self, namespace: str, function: str, version: str | None = None) -> None:
        self.catalogue.remove(namespace, function, version)
        _append(self.state_dir, "backend", {"op": "undeploy", "key": f"{namespace}/{function}"})

    def unbind(self, namespace: str, function: str) -> None:
        _append(self.state_dir, "backend", {"op": "unbind", "key": f"{namespace}/{function}"})

    def rollback(self, namespace: str, function: str, version: str) -> None:
        raise NotImplementedError

    def prune(self, namespace: str, project: str, keep: Iterable[str]) -> list[str]:
        keep_set = set(keep)
        removed = [f for f in self.catalogue.project_functions(namespace, project) if f not in keep_set]
        for function in removed:
            self.undeploy(namespace, function)
        return removed


def use_recording_parts(monkeypatch: Any = None) -> None:
    """Make ``Context.backend``/``Context.archive`` build the recording parts (test process or worker)."""
    from publisher.core import context

    backends = {**context.BACKENDS, "local": "tests.gitlab.parts:RecordingBackend"}
    archives = {**context.ARCHIVES, "none": "tests.gitlab.parts:RecordingArchive"}
    if monkeypatch is not None:
        monkeypatch.setattr(context, "BACKENDS", backends)
        monkeypatch.setattr(context, "ARCHIVES", archives)
    else:
        context.BACKENDS, context.ARCHIVES = backends, archives
