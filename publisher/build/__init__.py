"""Builders turn a function folder into an OCI image: native (default), buildah, kaniko.

:func:`get_builder` picks one by name; the registry of names is the core's, so the CLI, the CI
jobs and the service all build the same way.
"""

from __future__ import annotations

from publisher.config import Settings
from publisher.core.context import Context
from publisher.core.parts import Builder


def get_builder(kind: str, settings: Settings, *, push: bool = True) -> Builder:
    """The builder called ``kind`` (``native``, ``buildah`` or ``kaniko``) for ``settings``."""
    return Context(settings).builder(kind, push=push)
