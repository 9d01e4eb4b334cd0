"""Builders turn a function folder into an OCI image: native (default), buildah, kaniko.

:func:`get_builder` picks one by name; the registry of names is the core's, so the CLI, the CI
jobs and the service all build the same way.
"""

from __future__ import annotations

from publisher.config import Settings
from publisher.core.context import BUILDERS, load_object
from publisher.core.parts import Builder
from publisher.errors import FaaspubError


def get_builder(kind: str, settings: Settings, *, push: bool = True) -> Builder:
    """The builder called ``kind`` (``native``, ``buildah`` or ``kaniko``) for ``settings``."""
    if kind not in BUILDERS:
        raise FaaspubError(f"unknown builder {kind!r}", hint=f"one of {', '.join(sorted(BUILDERS))}")
    builder: Builder = load_object(BUILDERS[kind])(settings, push=push)
    return builder
