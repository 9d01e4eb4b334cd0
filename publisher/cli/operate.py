"""Operating published functions: ``faaspub invoke``, ``ls``, ``logs`` and ``rollback``.

Each verb builds a :class:`~publisher.core.context.Context` from ``--config`` and talks to the
configured backend (local or OpenWhisk) through the same interface the pipeline uses.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from publisher.backends import naming
from publisher.cli.common import config_option, err, json_option, out, print_json
from publisher.core.context import Context
from publisher.core.parts import Backend
from publisher.core.types import Activation
from publisher.errors import FaaspubError

FOLLOW_INTERVAL_S = 1.0


def namespace_option(func: Any) -> Any:
    return click.option(
        "--namespace", "-n", default=None, help="Namespace (GitLab group); default: the configured one."
    )(func)


@contextmanager
def _backend(context: Context) -> Iterator[Backend]:
    """The configured backend, closed afterwards (a CLI invoke must not leave containers behind)."""
    backend = context.backend
    try:
        yield backend
    finally:
        backend.close()


def _activation_dict(act: Activation) -> dict[str, Any]:
    return {
        "id": act.id,
        "function": act.function,
        "version": act.version,
        "digest": act.digest,
        "start": act.start.isoformat(),
        "duration_ms": round(act.duration_ms, 3),
        "status": act.status,
        "result": act.result,
        "logs": act.logs,
        "cause": act.cause,
    }


@click.command()
@click.argument("target", metavar="NAME[@VERSION]")
@click.option("--data", "-d", default="{}", help="Input as a JSON object.")
@click.option("--async", "no_wait", is_flag=True, help="Do not wait: print the activation id.")
@namespace_option
@config_option
@json_option
def invoke(
    target: str, data: str, no_wait: bool, namespace: str | None, config: str | None, as_json: bool
) -> None:
    """Invoke a function (its live version, or NAME@VERSION) and print the result."""
    name, version = naming.split_ref(target)
    try:
        payload = json.loads(data)
    except ValueError as exc:
        raise FaaspubError(f"--data is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise FaaspubError('--data must be a JSON object, e.g. \'{"path": "/data/x.h5"}\'')
    context = Context.from_config(config)
    ns = namespace or context.settings.namespace
    with _backend(context) as backend:
        act = backend.invoke(ns, name, payload, version=version, blocking=not no_wait, cause="cli")
    if as_json:
        print_json(_activation_dict(act))
    elif no_wait:
        out.print(act.id)
    else:
        out.print(json.dumps(act.result, indent=2, sort_keys=True), markup=False, soft_wrap=True)
    if act.status not in ("success", "pending"):
        raise FaaspubError(
            f"{name}@{act.version} ended with {act.status} (activation {act.id})",
            hint=f"see its logs: faaspub logs {name}",
        )


@click.command("ls")
@namespace_option
@config_option
@json_option
def ls(namespace: str | None, config: str | None, as_json: bool) -> None:
    """List published functions with their live version, versions and triggers."""
    with _backend(Context.from_config(config)) as backend:
        functions = backend.functions(namespace)
    if as_json:
        print_json([f.to_dict() for f in functions])
        return
    if not functions:
        err.print("no functions published")
        return
    for f in functions:
        triggers = "; ".join(describe_trigger(t) for t in f.triggers) or "-"
        out.print(
            f"{f.namespace}/{f.name}  live {f.alias or '-'}  "
            f"versions {', '.join(f.versions)}  triggers {triggers}",
            markup=False,
            soft_wrap=True,
        )


def describe_trigger(trigger: dict[str, Any]) -> str:
    """A trigger in words: ``files created matching *.txt in local:/incoming``, ``http (public)``."""
    kind = trigger.get("kind")
    if kind == "storage":
        events = " or ".join(trigger.get("events") or ["created"])
        below = " and below" if trigger.get("recursive") else ""
        where = f"{trigger.get('source')}:{trigger.get('path')}"
        return f"files {events} matching {trigger.get('match') or '*'} in {where}{below}"
    if kind == "http":
        return "http (public)" if trigger.get("public") else "http (with a token)"
    return str(kind)


def _print_activation(act: Activation) -> None:
    out.print(
        f"{act.start.isoformat()} {act.id} {act.function}@{act.version} "
        f"{act.status} {act.duration_ms:.1f} ms",
        markup=False,
        soft_wrap=True,
    )
    for line in act.logs:
        out.print(f"  {line}", markup=False, soft_wrap=True)


@click.command()
@click.argument("name")
@click.option("--limit", "-l", default=10, show_default=True, type=click.IntRange(1, 1000))
@click.option("--follow", "-f", is_flag=True, help="Keep printing new activations until interrupted.")
@namespace_option
@config_option
@json_option
def logs(
    name: str, limit: int, follow: bool, namespace: str | None, config: str | None, as_json: bool
) -> None:
    """Show the latest activations of a function with their logs (oldest first)."""
    context = Context.from_config(config)
    ns = namespace or context.settings.namespace
    with _backend(context) as backend:
        _show_logs(backend, ns, name, limit, follow, as_json)


def _show_logs(backend: Backend, ns: str, name: str, limit: int, follow: bool, as_json: bool) -> None:
    seen: set[str] = set()
    while True:
        fresh = [a for a in reversed(backend.activations(ns, name, limit)) if a.id not in seen]
        # A pending activation is shown once it has finished.
        fresh = [a for a in fresh if a.status != "pending"]
        for act in fresh:
            seen.add(act.id)
            if as_json:
                print(json.dumps(_activation_dict(act), sort_keys=True, default=str), flush=True)
            else:
                _print_activation(act)
        if not follow:
            return
        try:
            time.sleep(FOLLOW_INTERVAL_S)
        except KeyboardInterrupt:
            return


@click.command()
@click.argument("name")
@click.argument("version")
@namespace_option
@config_option
@json_option
def rollback(name: str, version: str, namespace: str | None, config: str | None, as_json: bool) -> None:
    """Point NAME at an earlier VERSION (versions stay; the alias moves)."""
    context = Context.from_config(config)
    ns = namespace or context.settings.namespace
    with _backend(context) as backend:
        backend.rollback(ns, name, version)
    if as_json:
        print_json({"function": name, "namespace": ns, "version": version})
    else:
        err.print(f"{ns}/{name} now runs {version}")
