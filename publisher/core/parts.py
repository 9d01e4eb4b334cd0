"""The pluggable parts of the pipeline, as small interfaces (in the spirit of knative/func's client).

Implementations live in their own packages (``publisher.build``, ``publisher.backends``, …) and are
chosen by configuration in :mod:`publisher.core.factory`. The pipeline in
:mod:`publisher.core.pipeline` only talks to these interfaces.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from publisher.core.types import (
    Activation,
    BuiltImage,
    FunctionSource,
    Release,
    Reservation,
    StorageEvent,
    TestReport,
)
from publisher.manifest.model import StorageTrigger

if TYPE_CHECKING:
    from publisher.backends.catalogue import FunctionInfo

Progress = Callable[[str], None]


@runtime_checkable
class Source(Protocol):
    """Where function repositories come from: a local directory or GitLab."""

    def fetch(self, ref: str, dest: Path) -> Path:
        """Materialise the repository at ``ref`` under ``dest`` and return its root."""
        ...


@runtime_checkable
class Builder(Protocol):
    """Builds the function image (and a test image that is never shipped) and pushes both."""

    name: str

    def build(
        self, fn: FunctionSource, version: str, labels: Mapping[str, str], progress: Progress | None = None
    ) -> BuiltImage: ...


@runtime_checkable
class Tester(Protocol):
    """Runs the function's tests and the runtime-protocol smoke test inside the built image."""

    def test(self, fn: FunctionSource, image: BuiltImage, junit: Path | None = None) -> TestReport: ...


@runtime_checkable
class Archive(Protocol):
    """Archives a release and registers its DOI (Zenodo, InvenioRDM) or does nothing."""

    def reserve(self, fn: FunctionSource, version: str) -> Reservation:
        """Open a draft and reserve the DOI; idempotent for the same function and version."""
        ...

    def publish(self, release: Release, files: Mapping[str, Path]) -> Reservation:
        """Upload ``files`` (name -> path), publish the draft and return the registered DOI."""
        ...

    def discard(self, fn: FunctionSource, version: str) -> None:
        """Remove the open draft of that version, if any. Never touches published records."""
        ...

    def released_digest(self, namespace: str, doi: str) -> str | None:
        """The image digest the published record with ``doi`` lists in its ``release.json``
        (``None`` when this archive has no such record)."""
        ...


@runtime_checkable
class Backend(Protocol):
    """A FaaS backend: immutable versioned actions plus a moving alias per function."""

    name: str

    def deploy(self, release: Release, alias: bool = True) -> None:
        """Create ``NAME@VERSION`` (refusing a different digest for an existing version) and move ``NAME``
        (with ``alias=False`` the version is only staged: it runs as ``NAME@VERSION``, ``NAME`` stays)."""
        ...

    def undeploy(self, namespace: str, function: str, version: str | None = None) -> None: ...

    def rollback(self, namespace: str, function: str, version: str) -> None: ...

    def prune(self, namespace: str, project: str, keep: Iterable[str]) -> list[str]:
        """Remove functions of ``project`` not in ``keep``; return the names removed."""
        ...

    def invoke(
        self,
        namespace: str,
        function: str,
        payload: Mapping[str, Any],
        version: str | None = None,
        blocking: bool = True,
        cause: str | None = None,
    ) -> Activation: ...

    def activations(
        self, namespace: str, function: str | None = None, limit: int = 50
    ) -> list[Activation]: ...

    def activation(self, namespace: str, activation_id: str) -> Activation: ...

    def bind(self, release: Release, triggers: list[StorageTrigger]) -> None:
        """Make storage events for ``triggers`` reach the release (OpenWhisk: trigger + rule)."""
        ...

    def unbind(self, namespace: str, function: str) -> None: ...

    def fire(self, namespace: str, function: str, event: Mapping[str, Any]) -> str | None:
        """Deliver a storage event to ``function`` (OpenWhisk: fire its trigger; local: invoke the
        alias without waiting); the activation id, or ``None`` when no rule was active."""
        ...

    def functions(self, namespace: str | None = None) -> list[FunctionInfo]:
        """Published functions (with a live version) for ``faaspub ls``."""
        ...

    def close(self) -> None:
        """Stop what this process started (warm instances, connections)."""
        ...


EventSink = Callable[[StorageEvent], None]


@runtime_checkable
class TriggerSource(Protocol):
    """A stream of storage events (local inotify, dCache SSE, S3 listings; S3 notifications arrive
    through the webhook app)."""

    name: str

    def run(self, sink: EventSink, stop: Callable[[], bool]) -> None:
        """Deliver events to ``sink`` until ``stop()`` is true. ``sink`` stores durably before returning."""
        ...
