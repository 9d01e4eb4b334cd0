"""``faaspub publish``: the whole pipeline on this machine."""

from __future__ import annotations

from pathlib import Path

import click

from publisher.cli.common import config_option, err, json_option, print_json, progress_status
from publisher.core.context import Context
from publisher.core.pipeline import Pipeline


@click.command()
@click.argument("directory", default=".", type=click.Path(exists=True, file_okay=False))
@click.option("--version", "version", default=None, help="X.Y.Z (default: the vX.Y.Z tag at HEAD, else dev).")
@click.option("--builder", type=click.Choice(["native", "buildah", "kaniko"]), default=None)
@click.option("--junit", type=click.Path(dir_okay=False), default=None, help="Write the test report here.")
@click.option(
    "--prune/--no-prune",
    default=True,
    help="Remove functions this repository published before and no longer holds (default: prune).",
)
@config_option
@json_option
def publish(
    directory: str,
    version: str | None,
    builder: str | None,
    junit: str | None,
    prune: bool,
    config: str | None,
    as_json: bool,
) -> None:
    """Validate, build, test, archive (if configured), deploy and bind triggers."""
    context = Context.from_config(config)
    with progress_status("publishing") as progress:
        results = Pipeline(context, progress).publish(
            Path(directory),
            version=version,
            builder=builder,
            junit=Path(junit) if junit else None,
            prune=prune,
        )
    if as_json:
        print_json(results[0].as_dict() if len(results) == 1 else [r.as_dict() for r in results])
        return
    for r in results:
        doi = f", DOI {r.doi}" if r.doi else ""
        err.print(f"live: {r.function} {r.version} ({r.image}{doi}) on the {r.backend} backend", markup=False)
