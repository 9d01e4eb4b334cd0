"""Apache OpenWhisk backend: docker actions pinned by a digest-unique tag, an alias, triggers and rules.

Per release: the versioned action ``PKG/NAME@X.Y.Z`` (created once, never overwritten) and the alias
``PKG/NAME`` (a copy, overwritten on every deploy and rollback) in one package per faaspub
namespace. OpenWhisk pulls images by tag and drops the digest (contracts.md B.5), so deploy first
checks in the registry that the tag still resolves to the release's digest. Storage bindings are a
trigger ``PKG--NAME--storage`` plus a rule of the same name pointing at the alias.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from publisher.backends import naming
from publisher.backends import openwhisk_entities as ent
from publisher.backends.catalogue import (
    Catalogue,
    FunctionInfo,
    unknown_version,
    version_key,
)
from publisher.backends.errors import BackendUnavailable
from publisher.backends.openwhisk_client import OpenWhiskClient, load_auth
from publisher.backends.secrets import resolve_secrets
from publisher.catalogue.record import check_same_digest
from publisher.config import Settings
from publisher.core.types import Activation, ActivationStatus, Release
from publisher.errors import ConfigError, FaaspubError
from publisher.manifest.model import StorageTrigger

if TYPE_CHECKING:
    from publisher.core.context import Context

log = logging.getLogger(__name__)

# OpenWhisk's cap on a blocking invoke's wait (query parameter ``timeout``).
BLOCKING_WAIT_MS = 60_000
ACTIVATION_PAGES = 10
STATUS = {
    "success": "success",
    "application error": "application_error",
    "action developer error": "developer_error",
    "whisk internal error": "system_error",
}
BY_CODE = {0: "success", 1: "application_error", 2: "developer_error", 3: "system_error"}


def verify_tag(settings: Settings, image: str, digest: str) -> None:
    """Check that ``image``'s tag resolves to ``digest`` in its registry (OpenWhisk pulls by tag)."""
    from publisher.oci.registry import RegistryClient
    from publisher.oci.store import parse_reference

    ref = parse_reference(image)
    if ref.registry.startswith("oci:") or not ref.registry:
        raise FaaspubError(
            f"image {image} is not in a registry: OpenWhisk invokers can only pull from a registry",
            hint="set registry.url so the build pushes there (see docs/backends-openwhisk.md)",
        )
    if not ref.tag:
        raise FaaspubError(f"image {image} has no tag: OpenWhisk pulls by tag and ignores digests")
    reg = settings.registry
    client = RegistryClient(ref.registry, insecure=reg.insecure, credentials_file=reg.credentials_file)
    try:
        found = client.resolve(ref.repository, ref.tag)
    except FaaspubError as exc:
        if "unreachable" not in exc.message:
            raise
        # A registry outage says nothing about the release: deploy can run again once it is back.
        raise BackendUnavailable(exc.message, hint="the step resumes once the registry answers") from None
    if found != digest:
        raise FaaspubError(
            f"image tag {ref.registry}/{ref.repository}:{ref.tag} now points to {found}, not {digest}",
            hint="OpenWhisk would run other content than was tested: tags of releases must never be reused",
        )


class OpenWhiskBackend:
    """:class:`publisher.core.parts.Backend` on an OpenWhisk deployment (REST API, basic auth)."""

    name = "openwhisk"

    def __init__(self, context: Context, client: OpenWhiskClient | None = None) -> None:
        self.settings = context.settings
        ow = self.settings.backend.openwhisk
        if client is None:
            if not ow.api_host:
                raise ConfigError(
                    "backend.openwhisk.api_host is not set", hint="e.g. https://openwhisk.example.org"
                )
            client = OpenWhiskClient(ow.api_host, load_auth(ow), ow.namespace, insecure=ow.insecure)
        self.client = client
        self.catalogue = Catalogue(context.sessions)
        self.verify_image = verify_tag

    # -- deploy, alias, removal -----------------------------------------------------------------

    def deploy(self, release: Release, alias: bool = True) -> None:
        naming.check_version(release.version)
        project = naming.project_of(release.source)
        limits = ent.check_limits(release, self.settings.backend.openwhisk)
        known = self.catalogue.existing_digest(release.namespace, release.name, release.version)
        if known:
            check_same_digest(release.name, release.version, known, release.image.digest)
        secrets = resolve_secrets(
            self.settings, release.namespace, release.source.manifest.secrets, release.name
        )
        self.verify_image(self.settings, release.image.pinned, release.image.digest)
        pkg = naming.package_name(release.namespace)
        self._ensure_package(pkg, release.namespace)
        vname = naming.versioned(release.name, release.version)
        body = ent.action_body(vname, release, project, limits, secrets)
        created = self._put_versioned(pkg, vname, body, release)
        if alias:
            self._put(("actions", pkg, release.name), ent.alias_body(release.name, created, release.version))
        self.catalogue.record(release, project)
        if alias:
            self.catalogue.set_alias(release.namespace, release.name, release.version)
        log.info(
            "deployed %s/%s@%s on OpenWhisk %s",
            release.namespace,
            release.name,
            release.version,
            self.client.host,
        )

    def _put_versioned(self, pkg: str, vname: str, body: dict[str, Any], release: Release) -> dict[str, Any]:
        existing = self._get(("actions", pkg, vname))
        if existing is None:
            resp = self.client.request(
                "PUT",
                self.client.path("actions", pkg, vname),
                entity=f"action {pkg}/{vname}",
                body=body,
                ok=(200, 409),
            )
            if resp.status_code == 200:
                return dict(resp.json())
            # 409: someone created it between our GET and PUT; it must hold the same image.
            existing = self._get(("actions", pkg, vname))
            if existing is None:
                raise FaaspubError(f"OpenWhisk action {pkg}/{vname} conflicts but cannot be read")
        stored = str(ent.annotation(existing, ent.DIGEST) or "")
        check_same_digest(release.name, release.version, stored, release.image.digest)
        return existing

    def _ensure_package(self, pkg: str, namespace: str) -> None:
        body = {"publish": False, "annotations": [{"key": "faaspub-namespace", "value": namespace}]}
        self._put(("packages", pkg), body)

    def rollback(self, namespace: str, function: str, version: str) -> None:
        pkg = naming.package_name(namespace)
        target = self._get(("actions", pkg, naming.versioned(function, version)))
        if target is None:
            raise unknown_version(function, version, self._versions(pkg, function))
        self._put(("actions", pkg, function), ent.alias_body(function, target, version))
        try:
            self.catalogue.set_alias(namespace, function, version)
        except FaaspubError as exc:
            log.warning("rolled back %s on OpenWhisk but the catalogue disagrees: %s", function, exc)

    def undeploy(self, namespace: str, function: str, version: str | None = None) -> None:
        pkg = naming.package_name(namespace)
        if version is not None:
            current = self.catalogue.alias(namespace, function)
            if current == version and len(self._versions(pkg, function)) > 1:
                raise FaaspubError(
                    f"function {function}: version {version} is what {function} runs now",
                    hint=f"roll back to another version first, or undeploy {function} entirely",
                )
            self._delete(("actions", pkg, naming.versioned(function, version)))
            self.catalogue.remove(namespace, function, version)
            return
        self.unbind(namespace, function)
        for ver in self._versions(pkg, function):
            self._delete(("actions", pkg, naming.versioned(function, ver)))
        self._delete(("actions", pkg, function))
        self.catalogue.remove(namespace, function)

    def prune(self, namespace: str, project: str, keep: Iterable[str]) -> list[str]:
        keep_set = set(keep)
        pkg = naming.package_name(namespace)
        owned = set(self.catalogue.project_functions(namespace, project))
        for action in self._package_actions(pkg):
            name = action.get("name", "")
            if "@" in name or name in keep_set:
                continue
            full = self._get(("actions", pkg, name))
            managed = ent.annotation(full or {}, ent.MANAGED)
            if isinstance(managed, dict) and managed.get("project") == project:
                owned.add(name)
        removed = sorted(owned - keep_set)
        for name in removed:
            self.undeploy(namespace, name)
        return removed

    def functions(self, namespace: str | None = None) -> list[FunctionInfo]:
        return self.catalogue.functions(namespace)

    # -- invoke and activations -----------------------------------------------------------------

    def invoke(
        self,
        namespace: str,
        function: str,
        payload: Mapping[str, Any],
        version: str | None = None,
        blocking: bool = True,
        cause: str | None = None,
    ) -> Activation:
        pkg = naming.package_name(namespace)
        # The alias as the catalogue knows it names the exact version and digest that ran.
        version = version or self.catalogue.alias(namespace, function)
        action = naming.versioned(function, version) if version else function
        entity = f"action {pkg}/{action}"
        started = datetime.now(UTC)
        params = {"blocking": "true" if blocking else "false", "result": "false"}
        if blocking:
            params["timeout"] = str(BLOCKING_WAIT_MS)
        resp = self.client.request(
            "POST",
            self.client.path("actions", pkg, action),
            entity=entity,
            params=params,
            body=dict(payload),
            ok=(200, 202, 502),
            timeout=BLOCKING_WAIT_MS / 1000 + 15,
        )
        doc = resp.json()
        activation_id = doc.get("activationId") or resp.headers.get("x-openwhisk-activation-id", "")
        if resp.status_code != 202:
            return self._activation(doc, function, namespace)
        if not blocking:
            return Activation(
                id=activation_id,
                function=function,
                version=version or "",
                digest=self.catalogue.digest_of(namespace, function, version) if version else "",
                start=started,
                duration_ms=0.0,
                status="pending",
                cause=cause,
            )
        return self._poll(namespace, function, activation_id)

    def _poll(self, namespace: str, function: str, activation_id: str) -> Activation:
        """Wait for a blocking invoke OpenWhisk answered with 202 (still running after its wait)."""
        deadline = time.monotonic() + self.settings.backend.openwhisk.max_timeout_ms / 1000 + 60
        delay = 0.1
        while time.monotonic() < deadline:
            doc = self._get(("activations", activation_id))
            if doc is not None:
                return self._activation(doc, function, namespace)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        raise FaaspubError(
            f"activation {activation_id} of {function} has not finished",
            hint=f"see it later with: faaspub logs {function}",
        )

    def activations(self, namespace: str, function: str | None = None, limit: int = 50) -> list[Activation]:
        pkg = naming.package_name(namespace)
        found: list[Activation] = []
        skip = 0
        page = 200
        # OpenWhisk filters by action name only; a busy namespace is scanned a bounded number of pages.
        for _ in range(ACTIVATION_PAGES):
            if len(found) >= limit:
                break
            resp = self.client.request(
                "GET",
                self.client.path("activations"),
                entity="activations",
                params={"docs": "true", "limit": page, "skip": skip},
            )
            docs = resp.json()
            for doc in docs:
                name = _action_of(doc, pkg)
                if name is None:
                    continue
                fn, _ = naming.split_ref(name)
                if function is None or fn == function:
                    found.append(self._activation(doc, fn, namespace))
            if len(docs) < page:
                break
            skip += page
        return found[:limit]

    def activation(self, namespace: str, activation_id: str) -> Activation:
        doc = self._get(("activations", activation_id))
        if doc is None:
            raise FaaspubError(f"activation {activation_id} does not exist on OpenWhisk {self.client.host}")
        name = _action_of(doc, naming.package_name(namespace)) or str(doc.get("name", ""))
        return self._activation(doc, naming.split_ref(name)[0], namespace)

    def _activation(self, doc: Mapping[str, Any], function: str, namespace: str) -> Activation:
        name = str(doc.get("name", function))
        _, version = naming.split_ref(name) if name else (function, None)
        if version is None:
            version = self.catalogue.alias(namespace, function) or ""
        response = doc.get("response") or {}
        status = _status(response)
        start_ms = doc.get("start") or 0
        return Activation(
            id=str(doc.get("activationId", "")),
            function=function,
            version=version,
            digest=self.catalogue.digest_of(namespace, function, version) if version else "",
            start=datetime.fromtimestamp(start_ms / 1000, UTC),
            duration_ms=float(doc.get("duration") or 0),
            status=status,
            result=response.get("result"),
            logs=list(doc.get("logs") or []),
            cause=doc.get("cause"),
        )

    # -- triggers -------------------------------------------------------------------------------

    def bind(self, release: Release, triggers: list[StorageTrigger]) -> None:
        if not triggers:
            self.unbind(release.namespace, release.name)
            return
        pkg = naming.package_name(release.namespace)
        name = naming.trigger_name(release.namespace, release.name)
        project = naming.project_of(release.source)
        self._put(("triggers", name), ent.trigger_body(name, release, project, triggers))
        rule = ent.rule_body(name, self.client.namespace, name, f"{pkg}/{release.name}")
        self._put(("rules", name), rule)
        self.catalogue.set_triggers(release.namespace, release.name, triggers)

    def unbind(self, namespace: str, function: str) -> None:
        name = naming.trigger_name(namespace, function)
        self._delete(("rules", name))
        self._delete(("triggers", name))
        self.catalogue.clear_triggers(namespace, function)

    def fire(self, namespace: str, function: str, event: Mapping[str, Any]) -> str | None:
        """Fire the function's storage trigger; the trigger activation id, or ``None`` (no active rule)."""
        name = naming.trigger_name(namespace, function)
        resp = self.client.post_json(
            self.client.path("triggers", name),
            entity=f"trigger {name}",
            body=dict(event),
            ok=(202, 204, 404),
        )
        if resp.status_code == 404:
            raise FaaspubError(
                f"function {function} in {namespace} has no storage trigger {name} on OpenWhisk",
                hint="its release declares no storage triggers, or they were unbound",
            )
        return str(resp.json()["activationId"]) if resp.status_code == 202 else None

    def close(self) -> None:
        """Release the HTTP connections."""
        self.client.close()

    # -- REST helpers ---------------------------------------------------------------------------

    def _get(self, parts: tuple[str, ...]) -> dict[str, Any] | None:
        collection, *names = parts
        resp = self.client.request(
            "GET", self.client.path(collection, *names), entity=_entity(parts), ok=(200, 404)
        )
        return dict(resp.json()) if resp.status_code == 200 else None

    def _put(self, parts: tuple[str, ...], body: Mapping[str, Any]) -> dict[str, Any]:
        collection, *names = parts
        resp = self.client.request(
            "PUT",
            self.client.path(collection, *names),
            entity=_entity(parts),
            params={"overwrite": "true"},
            body=dict(body),
        )
        return dict(resp.json())

    def _delete(self, parts: tuple[str, ...]) -> None:
        collection, *names = parts
        self.client.request(
            "DELETE", self.client.path(collection, *names), entity=_entity(parts), ok=(200, 404)
        )

    def _package_actions(self, pkg: str) -> list[dict[str, Any]]:
        doc = self._get(("packages", pkg))
        return list(doc.get("actions") or []) if doc else []

    def _versions(self, pkg: str, function: str) -> list[str]:
        prefix = f"{function}@"
        names = [str(a.get("name", "")) for a in self._package_actions(pkg)]
        versions = [n[len(prefix) :] for n in names if n.startswith(prefix)]
        return sorted(versions, key=version_key)


def _entity(parts: tuple[str, ...]) -> str:
    collection, *names = parts
    return f"{collection.rstrip('s')} {'/'.join(names)}"


def _action_of(doc: Mapping[str, Any], pkg: str) -> str | None:
    """The action name of an activation record when it ran in package ``pkg``."""
    for item in doc.get("annotations") or []:
        if item.get("key") == "path":
            parts = str(item.get("value", "")).split("/")
            if len(parts) == 3 and parts[1] == pkg:
                return parts[2]
            return None
    return None


def _status(response: Mapping[str, Any]) -> ActivationStatus:
    result = response.get("result")
    if isinstance(result, dict) and "exceeded its time limit" in str(result.get("error", "")):
        return "timeout"
    if response.get("status") in STATUS:
        return STATUS[response["status"]]  # type: ignore[return-value]
    return BY_CODE.get(int(response.get("statusCode", 3)), "system_error")  # type: ignore[return-value]
