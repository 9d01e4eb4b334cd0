"""``faaspub release-info``: the CI jobs' glue between build.json, junit.xml and release.json.

The shared GitLab CI templates call it (ci-templates/templates/function/template.yml):

* ``faaspub:validate``: ``release-info . --expect-runtime RUNTIME`` checks the runtime input;
* ``faaspub:build``: ``--build build.json --dotenv build.env`` hands the image to later jobs;
* ``faaspub:release``: ``--build build.json --junit junit.xml --output release.json --notify URL``
  writes the release record (:meth:`publisher.core.types.Release.provenance`) and, when a service
  URL is given, POSTs it there with the job token in the ``JOB-TOKEN`` header.

Facts come from the files and GitLab's predefined variables (``CI_COMMIT_TAG``, ``CI_COMMIT_SHA``,
``CI_PROJECT_URL``, ``CI_PROJECT_ID``, ``CI_JOB_TOKEN``); nothing is built or run here.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import httpx

from publisher.core.types import FunctionSource, ImageRef, Release
from publisher.errors import FaaspubError
from publisher.manifest.load import load_function
from publisher.tester.junit import read_report

RELEASES_PATH = "/api/v1/releases"


def read_build(path: Path) -> ImageRef:
    """The pushed image of ``faaspub build --json`` output (``{"image": REF, "digest": "sha256:…"}``)."""
    doc = _read_json(path)
    image, digest = doc.get("image"), doc.get("digest")
    if not isinstance(image, str) or not isinstance(digest, str) or not digest.startswith("sha256:"):
        raise FaaspubError(f"{path}: needs string fields 'image' and 'digest' (sha256:…)")
    name = image.split("@", 1)[0]
    repository, tag = name, ""
    if ":" in name.rsplit("/", 1)[-1]:
        repository, tag = name.rsplit(":", 1)
    return ImageRef(repository, tag or digest.split(":", 1)[1][:12], digest)


def ci_version(env: dict[str, str]) -> str:
    """``v1.2.0`` -> ``1.2.0`` on tag pipelines; otherwise a development version naming the commit."""
    tag = env.get("CI_COMMIT_TAG", "")
    if tag:
        return tag[1:] if tag[:1] == "v" and tag[1:2].isdigit() else tag
    return f"0.0.0.dev0+{env.get('CI_COMMIT_SHORT_SHA') or 'local'}"


def with_ci_provenance(fn: FunctionSource, env: dict[str, str]) -> FunctionSource:
    """The CI variables win over the work tree: a job's checkout may have no .git directory."""
    project_id = env.get("CI_PROJECT_ID", "")
    return replace(
        fn,
        namespace=env.get("FAASPUB_NAMESPACE") or fn.namespace,
        commit=env.get("CI_COMMIT_SHA") or fn.commit,
        source_url=env.get("CI_PROJECT_URL") or fn.source_url,
        project_id=int(project_id) if project_id.isdigit() else fn.project_id,
    )


def notify(url: str, record: dict[str, Any], token: str | None) -> None:
    """POST ``record`` to the faaspub service; the job token travels only in the JOB-TOKEN header."""
    target = url.rstrip("/") + RELEASES_PATH
    headers = {"JOB-TOKEN": token} if token else {}
    try:
        response = httpx.post(target, json=record, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise FaaspubError(f"cannot notify the faaspub service at {target}: {type(exc).__name__}") from None
    if response.status_code >= 300:
        raise FaaspubError(
            f"the faaspub service at {target} answered {response.status_code}: {response.text[:200]}",
            hint="check the service_url input and that the service accepts this project's job token",
        )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FaaspubError(f"cannot read {path}: {exc}") from None
    if not isinstance(doc, dict):
        raise FaaspubError(f"{path}: expected a JSON object")
    return doc


@click.command("release-info")
@click.argument("directory", default=".", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--build",
    "build_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="build.json written by 'faaspub build --json'.",
)
@click.option(
    "--junit", type=click.Path(dir_okay=False, path_type=Path), help="JUnit report of 'faaspub test'."
)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write release.json here."
)
@click.option(
    "--dotenv",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write FAASPUB_IMAGE/FAASPUB_DIGEST/FAASPUB_FUNCTION for later CI jobs.",
)
@click.option("--notify", "service_url", default="", help="faaspub service base URL to POST release.json to.")
@click.option("--expect-runtime", default="auto", help="Fail unless function.yaml declares this runtime.")
def release_info(
    directory: Path,
    build_file: Path | None,
    junit: Path | None,
    output: Path | None,
    dotenv: Path | None,
    service_url: str,
    expect_runtime: str,
) -> None:
    """Summarise a CI build (and its tests) for later jobs, release.json and the faaspub service."""
    env = dict(os.environ)
    fn = with_ci_provenance(load_function(directory, namespace=env.get("FAASPUB_NAMESPACE") or "local"), env)
    if expect_runtime not in ("", "auto") and fn.manifest.runtime != expect_runtime:
        raise FaaspubError(
            f"function.yaml declares runtime {fn.manifest.runtime}, the pipeline expects {expect_runtime}",
            hint="change runtime in function.yaml or the runtime input of the faaspub component",
        )
    if build_file is None:
        if output or dotenv or service_url:
            raise FaaspubError("--output, --dotenv and --notify need --build build.json")
        return
    image = read_build(build_file)
    if dotenv:
        dotenv.write_text(
            f"FAASPUB_IMAGE={image.pinned}\nFAASPUB_DIGEST={image.digest}\nFAASPUB_FUNCTION={fn.name}\n"
        )
    if not (output or service_url):
        return
    report = read_report(junit) if junit else None
    if report is not None and not report.ok:
        raise FaaspubError(
            f"not releasing {fn.name}: {report.failed} failed and {report.errors} errored tests in {junit}"
        )
    built_by = _read_json(build_file).get("ci_job_url")  # the build job, for the signed provenance
    job_url = built_by if isinstance(built_by, str) else None
    record = Release(fn, ci_version(env), image, test=report, ci_job_url=job_url).provenance()
    if output:
        output.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    if service_url:
        notify(service_url, record, env.get("CI_JOB_TOKEN"))
