"""``faaspub gitlab hook install|reconcile`` and ``faaspub worker`` (scale-out worker processes)."""

from __future__ import annotations

import base64
import os
import secrets
import signal
import threading
from pathlib import Path

import click

from publisher.cli.common import config_option, err, json_option, print_json
from publisher.core.context import Context
from publisher.errors import FaaspubError

HOOK_EVENTS = ("pipeline_events", "merge_requests_events", "push_events")


@click.group()
def gitlab() -> None:
    """Connect GitLab projects to this faaspub service."""


@gitlab.group()
def hook() -> None:
    """Project webhooks."""


@hook.command("install")
@config_option
@click.argument("project")
@click.option(
    "--secret-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the new webhook secret here (mode 600) instead of printing it once.",
)
@click.option(
    "--no-signing", is_flag=True, help="Do not set a signing token (GitLab before 19.0 ignores it)."
)
@json_option
def install(
    config: str | None, project: str, secret_file: str | None, no_signing: bool, as_json: bool
) -> None:
    """Create the webhook of PROJECT (id or group/name) pointing at server.public_url/hooks/gitlab."""
    from publisher.gitlab.client import GitLab

    context = Context.from_config(config)
    settings = context.settings
    if not settings.server.public_url:
        raise FaaspubError(
            "server.public_url is not set", hint="GitLab must reach the service at a public URL"
        )
    gl = GitLab(settings.gitlab)
    target = gl.call(f"project {project}", gl.api.projects.get, project)
    if not any(target.path_with_namespace.startswith(g.strip("/") + "/") for g in settings.gitlab.groups):
        raise FaaspubError(
            f"project {target.path_with_namespace} is not in a served group",
            hint="add its group to gitlab.groups",
        )
    token = secrets.token_urlsafe(32)
    data: dict[str, object] = {
        "url": f"{settings.server.base_url}/hooks/gitlab",
        "token": token,
        "name": "faaspub",
        "description": "faaspub: releases, previews and staging",
        "enable_ssl_verification": settings.server.base_url.startswith("https://"),
        "tag_push_events": False,
        **{event: True for event in HOOK_EVENTS},
    }
    signing = None if no_signing else "whsec_" + base64.b64encode(os.urandom(32)).decode()
    if signing:
        data["signing_token"] = signing
    created = gl.call(f"hook on {target.path_with_namespace}", target.hooks.create, data)
    result = {"project": target.path_with_namespace, "hook_id": created.id, "url": data["url"]}
    if secret_file:
        _write_secret(Path(secret_file), token)
        if signing:
            _write_secret(Path(secret_file).with_suffix(".signing"), signing)
        result["secret_file"] = secret_file
        err.print(f"webhook secret written to {secret_file}; add it to gitlab.webhook_secret_file(s)")
    else:
        # Shown once, on the terminal only: GitLab never returns it again.
        err.print(f"webhook secret (shown once): {token}")
        if signing:
            err.print(f"signing secret (shown once): {signing}")
    if as_json:
        print_json(result)
    else:
        err.print(f"hook {created.id} installed on {target.path_with_namespace} -> {data['url']}")


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")


@gitlab.command("reconcile")
@config_option
@json_option
def reconcile_command(config: str | None, as_json: bool) -> None:
    """Enqueue finished pipelines and closed merge requests that no webhook delivered."""
    from publisher.gitlab.client import GitLab
    from publisher.gitlab.reconcile import reconcile

    context = Context.from_config(config)
    summary = reconcile(context, GitLab(context.settings.gitlab))
    if as_json:
        print_json(summary.as_dict())
    else:
        err.print(
            f"{summary.projects} projects, {summary.pipelines} pipelines considered, "
            f"{summary.enqueued} jobs enqueued"
        )


@click.command()
@config_option
@click.option("--kind", "kinds", multiple=True, help="Only run jobs of this kind (repeatable).")
@click.option(
    "--listen", default=None, help="host:port for /healthz, /readyz and /metrics (default: no HTTP)."
)
def worker(config: str | None, kinds: tuple[str, ...], listen: str | None) -> None:
    """Run a GitLab worker process (several can share a PostgreSQL database)."""
    from publisher.gitlab.worker import run_worker
    from publisher.logs import configure_logging

    context = Context.from_config(config)
    configure_logging(context.settings.server.log_format)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    http = None
    if listen:
        from webhooks.worker_app import serve_in_thread

        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise FaaspubError(f"--listen {listen!r} is not host:port", hint="for example 0.0.0.0:8081")
        http = serve_in_thread(context, host, int(port))
    err.print("faaspub worker running (Ctrl-C to stop)")
    try:
        run_worker(context, stop, kinds or None)
    finally:
        if http is not None:
            http.should_exit = True
