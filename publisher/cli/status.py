"""``faaspub status``: where the configuration and state are, and whether the service answers.

It only looks: no state, database or container engine is created or started by asking.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
import httpx
from sqlalchemy.engine import make_url

from publisher.cli.common import config_option, json_option, out, print_json
from publisher.config import Settings, faaspub_home, find_config_file, load_settings
from publisher.errors import FaaspubError


def _service(settings: Settings) -> dict[str, Any]:
    url = settings.server.base_url
    try:
        answer = httpx.get(f"{url}/healthz", timeout=2.0)
        version = answer.json().get("version") if answer.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return {"url": url, "answers": False}
    return {"url": url, "answers": answer.status_code == 200, "version": version}


def _engine(settings: Settings) -> dict[str, Any]:
    from publisher.podman import private_root, socket_alive

    local = settings.backend.local
    configured = os.environ.get("DOCKER_HOST") or local.docker_host
    if local.engine == "process":
        return {"kind": "process", "detail": "functions run as plain processes (not isolated)"}
    if configured:
        return {"kind": "docker", "url": configured}
    sock = private_root(settings) / "podman.sock"
    return {"kind": "private podman", "url": f"unix://{sock}", "running": socket_alive(sock)}


def _bases(settings: Settings) -> list[str] | None:
    from publisher.oci.store import open_store
    from publisher.runtime.base import BASE_REPOSITORY

    if settings.registry.base_image:
        return [settings.registry.base_image]
    try:
        return [f"python:{tag}" for tag in open_store(settings).tags(BASE_REPOSITORY)]
    except FaaspubError:
        return None


def _functions(settings: Settings) -> list[str] | None:
    """Published functions, when the database exists already (looking never creates it)."""
    url = make_url(settings.database.url)
    if url.get_backend_name() == "sqlite" and not (url.database and Path(url.database).is_file()):
        return []
    from publisher.backends.catalogue import Catalogue
    from publisher.core.context import Context

    try:
        return [f"{f.namespace}/{f.name}" for f in Catalogue(Context(settings).sessions).functions()]
    except Exception:  # an unreachable or foreign database: status still reports the rest
        return None


def gather(config: str | None) -> dict[str, Any]:
    """Everything ``faaspub status`` shows, as a dict (``--json``)."""
    settings = load_settings(config)
    config_file = find_config_file(config)
    backend = settings.backend
    return {
        "configuration": str(config_file.resolve()) if config_file else None,
        "home": str(faaspub_home()),
        "state": str(Path(settings.state_dir).resolve()),
        "database": make_url(settings.database.url).render_as_string(hide_password=True),
        "images": settings.registry.url or f"oci:{Path(settings.registry.oci_layout).resolve()}",
        "runtime_bases": _bases(settings),
        "storage": str(Path(settings.storage.local.root).resolve()),
        "cache": str(Path(settings.build.cache_dir).expanduser().resolve()),
        "service": _service(settings),
        "engine": _engine(settings),
        "backend": {
            "kind": backend.kind,
            "url": backend.openwhisk.api_host if backend.kind == "openwhisk" else None,
        },
        "archive": {
            "kind": settings.archive.kind,
            "url": settings.archive.url if settings.archive.kind != "none" else None,
        },
        "functions": _functions(settings),
    }


def _line(label: str, value: str) -> None:
    out.print(f"{label:<14}{value}", markup=False)


@click.command()
@config_option
@json_option
def status(config: str | None, as_json: bool) -> None:
    """Where the configuration and state are; whether the service, engine and backends answer."""
    info = gather(config)
    if as_json:
        print_json(info)
        return
    _line("configuration", info["configuration"] or "none (embedded defaults)")
    _line("state", info["state"])
    _line("database", info["database"])
    bases = info["runtime_bases"]
    built = ", ".join(bases) if bases else "none yet (built on first publish)"
    _line("images", f"{info['images']} (runtime bases: {built if bases is not None else 'unknown'})")
    _line("storage", f"{info['storage']} (local storage triggers watch here)")
    _line("cache", info["cache"])
    service = info["service"]
    answers = f"answers (faaspub {service.get('version')})" if service["answers"] else "does not answer"
    _line("service", f"{service['url']} {answers}")
    engine = info["engine"]
    running = {True: " (running)", False: " (not running; started on first use)"}.get(
        engine.get("running"), ""
    )
    _line("engine", f"{engine['kind']} {engine.get('url') or engine.get('detail', '')}{running}")
    backend, archive = info["backend"], info["archive"]
    _line("backend", backend["kind"] + (f" at {backend['url']}" if backend["url"] else ""))
    _line("archive", archive["kind"] + (f" at {archive['url']}" if archive["url"] else ""))
    functions = info["functions"]
    shown = "unknown (database not reachable)" if functions is None else ", ".join(functions) or "none"
    _line("functions", shown)
