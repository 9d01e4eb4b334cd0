"""``faaspub build`` and ``faaspub test``: a function folder to a tested OCI image."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from publisher.cli.common import config_option, err, json_option, print_json, progress_status
from publisher.core.context import Context
from publisher.core.pipeline import Pipeline, development_version
from publisher.core.types import BuiltImage, FunctionSource, Release, Reservation
from publisher.manifest.load import git_tag_version

BUILDER_CHOICE = click.Choice(["native", "buildah", "kaniko"])


def _version(fn: FunctionSource, version: str | None) -> str:
    return version or git_tag_version(fn.root) or development_version(fn)


def _build(
    pipeline: Pipeline, fn: FunctionSource, builder: str | None, push: bool, version: str | None
) -> BuiltImage:
    version = _version(fn, version)
    kind = builder or pipeline.context.settings.build.builder
    err.print(f"building {fn.name} {version} ({kind})", markup=False)
    return pipeline.build(fn, version, Reservation(), builder, push=push)


def _image_json(image: BuiltImage) -> dict[str, object]:
    return {
        "image": image.ref.pinned,
        "digest": image.ref.digest,
        "size": image.size,
        "layers": image.layers,
        "layers_reused": image.layers_reused,
        "test_image": image.test_ref.tagged if image.test_ref else None,
    }


@click.command()
@click.argument("directory", default=".", type=click.Path(exists=True, file_okay=False))
@click.option("--builder", type=BUILDER_CHOICE, default=None, help="Default: build.builder (native).")
@click.option("--push/--no-push", default=True, help="Push to the image store (default) or only build.")
@click.option("--version", "version", default=None, help="X.Y.Z (default: the vX.Y.Z tag at HEAD, else dev).")
@config_option
@json_option
def build(
    directory: str, builder: str | None, push: bool, version: str | None, config: str | None, as_json: bool
) -> None:
    """Build the function image (and its test image), push them and attach the SBOM and provenance."""
    with progress_status("building") as progress:
        pipeline = Pipeline(Context.from_config(config), progress)
        fn = pipeline.load(Path(directory))
        image = _build(pipeline, fn, builder, push, version)
        attestation = None
        if push:
            # In CI, the job that built the image is its provenance's invocation (GitLab sets CI_JOB_URL).
            release = Release(fn, _version(fn, version), image.ref, ci_job_url=os.environ.get("CI_JOB_URL"))
            attestation = pipeline.attest(release, image)
    if as_json:
        print_json(
            {
                **_image_json(image),
                "sbom": attestation is not None,
                "signed_by": attestation.key_id if attestation else None,
                "ci_job_url": os.environ.get("CI_JOB_URL"),
            }
        )
        return
    state = "pushed" if push else "built (not pushed)"
    err.print(
        f"{state}: {image.ref.pinned} ({image.size / 1e6:.1f} MB, {image.layers} layers, "
        f"{image.layers_reused} reused)",
        markup=False,
    )
    if image.test_ref:
        err.print(f"test image: {image.test_ref.tagged}", markup=False)
    if attestation is not None:
        signed = (
            f"signed provenance (key {attestation.key_id[:16]})" if attestation.key_id else "no signing key"
        )
        err.print(f"attached: SBOM, {signed}", markup=False)


@click.command()
@click.argument("directory", default=".", type=click.Path(exists=True, file_okay=False))
@click.option("--image", "image_ref", default=None, help="Test this image instead of building one.")
@click.option("--builder", type=BUILDER_CHOICE, default=None, help="Builder used when no --image is given.")
@click.option("--junit", type=click.Path(dir_okay=False), default=None, help="Write a JUnit XML report here.")
@click.option("--version", "version", default=None, help="Version to build when no --image is given.")
@config_option
@json_option
def test(
    directory: str,
    image_ref: str | None,
    builder: str | None,
    junit: str | None,
    version: str | None,
    config: str | None,
    as_json: bool,
) -> None:
    """Run the function's tests and the runtime-protocol smoke test inside its image."""
    with progress_status("testing") as progress:
        pipeline = Pipeline(Context.from_config(config), progress)
        fn = pipeline.load(Path(directory))
        if image_ref:
            image = pipeline.given_image(fn, image_ref)
        else:
            image = _build(pipeline, fn, builder, True, version)
        progress(f"testing {image.ref.pinned}")
        report = pipeline.run_tests(fn, image, Path(junit) if junit else None)
    if as_json:
        print_json(
            {"image": image.ref.pinned, **report.summary(), "ok": report.ok, "failures": report.failures}
        )
    else:
        s = report.summary()
        err.print(
            f"{s['passed']} passed, {s['failed']} failed, {s['errors']} errors, {s['skipped']} skipped",
            markup=False,
        )
        for failure in report.failures:
            err.print(f"FAILED {failure}\n", markup=False)
    if not report.ok:
        # SystemExit, not ctx.exit: click in non-standalone mode turns Exit into a return value.
        sys.exit(1)
