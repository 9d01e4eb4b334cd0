"""The archive used when none is configured: releases get no DOI and nothing leaves the machine."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from publisher.core.types import FunctionSource, Release, Reservation


class NoArchive:
    """Satisfies :class:`~publisher.core.parts.Archive` without archiving anything."""

    def reserve(self, fn: FunctionSource, version: str) -> Reservation:
        return Reservation()

    def publish(self, release: Release, files: Mapping[str, Path]) -> Reservation:
        return release.reservation

    def discard(self, fn: FunctionSource, version: str) -> None:
        return None

    def released_digest(self, namespace: str, doi: str) -> str | None:
        return None
