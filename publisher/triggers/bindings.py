"""Which function versions an event goes to, and which paths a namespace may bind at all.

Bindings are the ``triggers`` rows written at deploy time, resolved to the version the function's
alias points at (its image digest is what the idempotency ledger records).
"""

from __future__ import annotations

import posixpath
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session, sessionmaker

from publisher.config import Settings
from publisher.core.types import StorageEvent
from publisher.db.models import Function, TriggerBinding, Version
from publisher.errors import FaaspubError
from publisher.manifest.model import StorageTrigger


@dataclass(frozen=True)
class Binding:
    """A storage trigger of one function, with the version that currently receives its events."""

    namespace: str
    function: str
    version: str
    digest: str
    source: str
    path: str
    recursive: bool = False
    events: tuple[str, ...] = ("created",)
    match: str = "*"

    @property
    def target(self) -> tuple[str, str, str]:
        return (self.namespace, self.function, self.digest)


def normalise(path: str) -> str:
    """``/a/b/`` -> ``/a/b``; ``/`` stays ``/``; s3 ``bucket/p/`` -> ``bucket/p``."""
    stripped = path.rstrip("/")
    return stripped or "/"


def under(path: str, prefix: str, recursive: bool = True) -> bool:
    """Is ``path`` inside directory ``prefix`` (any depth, or only a direct child)?"""
    prefix = normalise(prefix)
    parent = posixpath.dirname(path)
    if not recursive:
        return normalise(parent) == prefix
    return prefix == "/" or path.startswith(prefix + "/")


def matches(event: StorageEvent, binding: Binding) -> bool:
    return (
        event.source == binding.source
        and event.kind in binding.events
        and under(event.path, binding.path, binding.recursive)
        and fnmatchcase(posixpath.basename(event.path), binding.match)
    )


def match(event: StorageEvent, bindings: Iterable[Binding]) -> list[Binding]:
    """The bindings ``event`` goes to: one per function version, in binding order."""
    seen: set[tuple[str, str, str]] = set()
    found = []
    for binding in bindings:
        if binding.target not in seen and matches(event, binding):
            seen.add(binding.target)
            found.append(binding)
    return found


def _within(path: str, prefix: str) -> bool:
    prefix = normalise(prefix)
    path = normalise(path)
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


def _granted(namespace: str, grants: dict[str, list[str]]) -> list[str]:
    return [*grants.get(namespace, []), *(grants.get("*", []) if namespace != "*" else [])]


def allowed_prefixes(namespace: str, settings: Settings) -> list[str]:
    """The path prefixes ``namespace`` may touch (its own entry plus ``"*"``).

    Without ``storage.allowed_paths`` nothing is allowed once GitLab serves groups (deny by default),
    and the embedded single namespace (``settings.namespace``) may use all of its own storage.
    """
    allowed = settings.storage.allowed_paths
    if allowed is None:
        return ["/"] if not settings.gitlab.url and namespace == settings.namespace else []
    return _granted(namespace, allowed)


def namespace_path(
    namespace: str, path: str, settings: Settings, what: str = "path", verb: str = "use"
) -> str:
    """``path`` normalised (``/a//b/./c/`` -> ``/a/b/c``), once it is inside ``namespace``'s prefixes.

    S3 paths (``bucket/prefix``) are compared as ``/bucket/prefix``. ``..`` and NUL are refused
    outright rather than resolved: a path that needs them is a mistake or an attack.
    """
    parts = path.split("/")
    if "\x00" in path or ".." in parts:
        raise FaaspubError(f"{what} {path!r} contains '..' or a NUL byte", hint="name the folder directly")
    clean = "/" + "/".join(p for p in parts if p not in ("", "."))
    prefixes = allowed_prefixes(namespace, settings)
    if not any(_within(clean, prefix) for prefix in prefixes):
        raise FaaspubError(
            f"{what} {path!r} is outside the paths namespace {namespace!r} may {verb}: "
            f"{', '.join(prefixes) or 'none'}",
            hint="use a path under one of those prefixes, or ask the operator to extend "
            "storage.allowed_paths in the configuration",
        )
    return clean


def check_allowed(namespace: str, triggers: Iterable[Any], settings: Settings) -> None:
    """Refuse a storage trigger outside the paths ``namespace`` may bind (:func:`allowed_prefixes`).

    ``triggers`` may hold :class:`StorageTrigger`, manifest trigger entries, or HTTP entries (ignored).
    When the service can read S3 itself (``storage.s3.credentials_file``: it lists buckets and hands
    out presigned URLs), or ``storage.s3.buckets`` is set, an S3 path must also lie in one of the
    namespace's buckets there, by the same prefix rule: no namespace reads another's bucket.
    """
    buckets = settings.storage.s3.buckets
    own_buckets_only = bool(buckets or settings.storage.s3.credentials_file)
    for trigger in triggers:
        storage = getattr(trigger, "storage", trigger)  # a manifest entry or the trigger itself
        if not isinstance(storage, StorageTrigger):
            continue
        what = f"storage trigger path ({storage.source})"
        path = namespace_path(namespace, storage.path, settings, what, verb="bind")
        own = _granted(namespace, buckets)
        if (
            storage.source == "s3"
            and own_buckets_only
            and not any(_within(path, "/" + b.lstrip("/")) for b in own)
        ):
            raise FaaspubError(
                f"s3 trigger path {storage.path!r} is outside the buckets namespace {namespace!r} may bind: "
                f"{', '.join(own) or 'none'}",
                hint="bind a bucket (or bucket/prefix) listed for the namespace in storage.s3.buckets, "
                "or ask the operator to add it there",
            )


def load_bindings(session: Session) -> list[Binding]:
    """Every storage binding of a function whose alias points at a known version."""
    query = (
        select(TriggerBinding, Function, Version)
        .join(Function, Function.id == TriggerBinding.function_id)
        .join(Version, and_(Version.function_id == Function.id, Version.version == Function.alias_version))
        .where(TriggerBinding.kind == "storage")
        .order_by(TriggerBinding.id)
    )
    return [
        Binding(
            namespace=fn.namespace,
            function=fn.name,
            version=version.version,
            digest=version.digest,
            source=trigger.source or "local",
            path=trigger.path or "/",
            recursive=trigger.recursive,
            events=tuple(trigger.events or ("created",)),
            match=trigger.match or "*",
        )
        for trigger, fn, version in session.execute(query).all()
    ]


class BindingCache:
    """The current bindings, reloaded at most every ``ttl_s`` so a deploy takes effect quickly."""

    def __init__(self, sessions: sessionmaker[Session], ttl_s: float = 1.0) -> None:
        self._sessions = sessions
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._loaded_at = float("-inf")
        self._bindings: list[Binding] = []

    def current(self) -> Sequence[Binding]:
        with self._lock:
            if time.monotonic() - self._loaded_at >= self._ttl_s:
                with self._sessions() as session:
                    self._bindings = load_bindings(session)
                self._loaded_at = time.monotonic()
            return self._bindings

    def refresh(self) -> None:
        with self._lock:
            self._loaded_at = float("-inf")

    def directories(self, source: str) -> list[tuple[str, bool]]:
        """The watched directories of ``source`` as (path, recursive), nested ones folded in."""
        wanted: dict[str, bool] = {}
        for binding in self.current():
            if binding.source == source:
                path = normalise(binding.path)
                wanted[path] = wanted.get(path, False) or binding.recursive
        return sorted(wanted.items())
