"""``faaspub runtime``: images built from this source tree: the python base (``build-base``, assembled
offline from Debian packages) and faaspub's own service image (``build-service``)."""

from __future__ import annotations

from pathlib import Path

import click

from publisher.cli.common import config_option, err, json_option, out, print_json
from publisher.config import load_settings


@click.group()
def runtime() -> None:
    """Runtime base images that function images are built on."""


@runtime.command("build-base")
@click.option(
    "--python",
    "python",
    type=click.Choice(["3.11", "3.12", "3.13"]),
    default="3.11",
    show_default=True,
    help="Python version of the base image.",
)
@click.option("--tag", default=None, help="Tag to push (default: the python version).")
@click.option("--no-cache", is_flag=True, help="Rebuild the layer even if an identical one is cached.")
@config_option
@json_option
def build_base_cmd(python: str, tag: str | None, no_cache: bool, config: str | None, as_json: bool) -> None:
    """Build the python runtime base from Debian packages and push it to the configured store."""
    from publisher.oci.store import open_store
    from publisher.runtime.base import build_base

    settings = load_settings(config)
    store = open_store(settings)
    result = build_base(
        python,
        store,
        Path(settings.build.cache_dir),
        tag=tag,
        use_layer_cache=not no_cache,
        progress=None if as_json else (lambda msg: err.print(f"[dim]{msg}[/dim]")),
    )
    if as_json:
        print_json(result.to_json())
        return
    out.print(f"{result.reference}:{result.tag}@{result.digest}", markup=False)
    err.print(
        f"{len(result.packages)} packages, {result.size / 1e6:.1f} MB, "
        f"{'cached layer, ' if result.cached else ''}{result.seconds:.1f} s"
    )


@runtime.command("build-service")
@click.option("--tag", default=None, help="Tag to push (default: the faaspub version).")
@config_option
@json_option
def build_service_cmd(tag: str | None, config: str | None, as_json: bool) -> None:
    """Build faaspub's own service image from this source tree and push it to the configured store."""
    from publisher.oci.store import open_store
    from publisher.runtime.service import build_service

    settings = load_settings(config)
    result = build_service(
        open_store(settings),
        Path(settings.build.cache_dir),
        tag=tag,
        progress=None if as_json else (lambda msg: err.print(f"[dim]{msg}[/dim]")),
    )
    if as_json:
        print_json(result.to_json())
        return
    out.print(f"{result.reference}:{result.tag}@{result.digest}", markup=False)
    err.print(f"{result.size / 1e6:.1f} MB, {result.seconds:.1f} s")
