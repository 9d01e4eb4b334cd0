"""The OpenWhisk entities faaspub creates: action, trigger and rule bodies, and the local limits check.

Annotations carry provenance (description, DOI, commit, image digest, source URL, version) and a
``faaspub-managed`` marker naming the project, in the spirit of wskdeploy's ``whisk-managed``
annotation: prune lists what a project owns by it. Secret values travel only as action
parameters marked ``init`` (OpenWhisk passes those to ``/init`` as environment variables), never
in annotations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from faaspub_runtime.identity import environment as identity_environment

from publisher.config import OpenWhiskSettings
from publisher.core.types import Release
from publisher.errors import FaaspubError
from publisher.manifest.model import StorageTrigger

MANAGED = "faaspub-managed"
VERSION = "faaspub-version"
DIGEST = "faaspub-digest"
ALIAS_OF = "faaspub-alias-of"
BINDINGS = "faaspub-bindings"
LOG_LIMIT_MB = 10


def check_limits(release: Release, bounds: OpenWhiskSettings) -> dict[str, int]:
    """The action limits of ``release``, or an error naming the limit and the platform's bound."""
    limits = release.source.manifest.limits
    checks = [
        ("memory", limits.memory, bounds.min_memory_mb, bounds.max_memory_mb, "MB", "memory_mb"),
        ("timeout", limits.timeout_ms, bounds.min_timeout_ms, bounds.max_timeout_ms, "ms", "timeout_ms"),
        ("concurrency", limits.concurrency, 1, bounds.max_concurrency, "", "concurrency"),
    ]
    for what, value, low, high, unit, key in checks:
        shown = f"{value} {unit}".strip()
        if value > high:
            raise FaaspubError(
                f"function {release.name}: limits.{what} {shown} exceeds the OpenWhisk platform's "
                f"allowed threshold of {f'{high} {unit}'.strip()}",
                hint=f"lower limits.{what} in function.yaml (the platform bound is "
                f"backend.openwhisk.max_{key})",
            )
        if value < low:
            raise FaaspubError(
                f"function {release.name}: limits.{what} {shown} is below the OpenWhisk platform's "
                f"minimum of {f'{low} {unit}'.strip()}",
                hint=f"raise limits.{what} in function.yaml",
            )
    return {
        "memory": limits.memory,
        "timeout": limits.timeout_ms,
        "concurrency": limits.concurrency,
        "logs": LOG_LIMIT_MB,
    }


def managed(release: Release, project: str) -> dict[str, str]:
    """The ``faaspub-managed`` value: who owns the entity, so prune can find it."""
    return {"project": project, "namespace": release.namespace, "function": release.name}


def provenance_annotations(release: Release, project: str) -> list[dict[str, Any]]:
    manifest = release.source.manifest
    values: list[tuple[str, Any]] = [
        ("description", manifest.description or f"{release.name} {release.version} (faaspub)"),
        (MANAGED, managed(release, project)),
        (VERSION, release.version),
        (DIGEST, release.image.digest),
        ("faaspub-image", release.image.pinned),
        ("faaspub-commit", release.source.commit),
        ("faaspub-source", release.source.source_url),
        ("faaspub-doi", release.reservation.doi),
        ("faaspub-runtime", manifest.runtime),
        ("provide-api-key", False),
    ]
    return [{"key": k, "value": v} for k, v in values if v is not None]


def action_body(
    name: str, release: Release, project: str, limits: Mapping[str, int], secrets: Mapping[str, str]
) -> dict[str, Any]:
    """The ``ActionPut`` body of a versioned action.

    The version's identity (:mod:`faaspub_runtime.identity`) travels as ``init`` parameters, which
    OpenWhisk exports as environment variables, as the local backend does.
    """
    manifest = release.source.manifest
    identity = identity_environment(
        namespace=release.namespace,
        name=release.name,
        version=release.version,
        digest=release.image.digest,
        image=release.image.pinned,
        doi=release.reservation.doi,
    )
    settings = sorted({**manifest.env, **identity}.items())
    parameters = [{"key": k, "value": v, "init": True} for k, v in settings]
    parameters += [{"key": k, "value": v, "init": True} for k, v in sorted(secrets.items())]
    return {
        "name": name,
        "exec": {"kind": "blackbox", "image": release.image.pinned},
        "limits": dict(limits),
        "parameters": parameters,
        "annotations": provenance_annotations(release, project),
    }


def alias_body(name: str, versioned: Mapping[str, Any], version: str) -> dict[str, Any]:
    """The alias ``NAME``: a copy of the versioned action (OpenWhisk has no alias entity)."""
    annotations = [a for a in versioned.get("annotations", []) if a.get("key") not in (ALIAS_OF, "exec")]
    annotations.append({"key": ALIAS_OF, "value": version})
    exec_ = {k: v for k, v in versioned["exec"].items() if k in ("kind", "image", "main", "code")}
    return {
        "name": name,
        "exec": exec_,
        "limits": dict(versioned.get("limits", {})),
        "parameters": list(versioned.get("parameters", [])),
        "annotations": annotations,
    }


def annotation(entity: Mapping[str, Any], key: str) -> Any:
    for item in entity.get("annotations", []) or []:
        if item.get("key") == key:
            return item.get("value")
    return None


def trigger_body(name: str, release: Release, project: str, triggers: list[StorageTrigger]) -> dict[str, Any]:
    return {
        "name": name,
        "parameters": [],
        "annotations": [
            {"key": "description", "value": f"storage events for {release.namespace}/{release.name}"},
            {"key": MANAGED, "value": managed(release, project)},
            {"key": BINDINGS, "value": [t.model_dump(mode="json") for t in triggers]},
        ],
    }


def rule_body(name: str, namespace: str, trigger: str, action_path: str) -> dict[str, Any]:
    return {"name": name, "trigger": f"/{namespace}/{trigger}", "action": f"/{namespace}/{action_path}"}
