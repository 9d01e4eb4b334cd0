"""What a finished pipeline left behind, read back through the GitLab API.

The shared CI template (``ci-templates/templates/function/template.yml``) writes ``build.json`` in
``faaspub:build`` (or ``faaspub:kaniko``), ``junit.xml`` in ``faaspub:test`` and ``release.json``
in ``faaspub:release`` (tags). The source tree comes from the repository archive at the
pipeline's commit, so the function folder is exactly what was built.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from publisher.config import Settings
from publisher.core.types import FunctionSource, ImageRef
from publisher.errors import FaaspubError
from publisher.gitlab.client import GitLab, TransientError
from publisher.manifest.load import find_functions, load_function
from publisher.oci.registry import RegistryClient

BUILD_JOBS = ("faaspub:build", "faaspub:kaniko")
TEST_JOB = "faaspub:test"
RELEASE_JOB = "faaspub:release"


@dataclass(frozen=True)
class Fetched:
    """Files of one pipeline on local disk."""

    workdir: Path
    tree: Path
    files: dict[str, Path]


def find_job(jobs: list[dict[str, Any]], names: tuple[str, ...]) -> dict[str, Any] | None:
    """The newest successful job with one of ``names`` (retried jobs appear several times)."""
    matching = [j for j in jobs if j.get("name") in names and j.get("status") == "success"]
    return max(matching, key=lambda j: j["id"]) if matching else None


def artifact(
    gl: GitLab, project_id: int, jobs: list[dict[str, Any]], names: tuple[str, ...], path: str, dest: Path
) -> None:
    """Save ``path`` of the newest successful job named one of ``names`` to ``dest``."""
    job = find_job(jobs, names)
    if job is None:
        raise FaaspubError(
            f"the pipeline has no successful job {' or '.join(names)}",
            hint="include the faaspub CI template so the pipeline builds, tests and releases the function",
        )
    if not gl.job_artifact(project_id, job["id"], path, dest):
        raise FaaspubError(f"job {job['name']} (#{job['id']}) has no artifact {path}")


def fetch(
    gl: GitLab, project_id: int, pipeline_id: int, sha: str, workdir: Path, *, release: bool
) -> Fetched:
    """Download ``build.json`` (or ``release.json`` and ``junit.xml`` for a release) and the source tree.

    Idempotent: a complete ``workdir`` from an earlier attempt is reused; a partial one is redone.
    """
    done = workdir / ".complete"
    names = ("release.json", "junit.xml") if release else ("build.json",)
    if not done.is_file():
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        jobs = gl.pipeline_jobs(project_id, pipeline_id)
        if release:
            artifact(gl, project_id, jobs, (RELEASE_JOB,), "release.json", workdir / "release.json")
            artifact(gl, project_id, jobs, (TEST_JOB,), "junit.xml", workdir / "junit.xml")
        else:
            artifact(gl, project_id, jobs, BUILD_JOBS, "build.json", workdir / "build.json")
        gl.source_archive(project_id, sha, workdir / "source.tar.gz")
        gl.unpack(workdir / "source.tar.gz", workdir / "src")
        done.touch()
    src = workdir / "src"
    tops = [p for p in src.iterdir() if p.is_dir()]
    tree = tops[0] if len(tops) == 1 else src  # GitLab wraps the tree in "<project>-<sha>/"
    files = {name: workdir / name for name in names}
    files["source.tar.gz"] = workdir / "source.tar.gz"
    return Fetched(workdir, tree, files)


def read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FaaspubError(f"{path.name} from the pipeline is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise FaaspubError(f"{path.name} from the pipeline is not a JSON object")
    return doc


def function_source(
    tree: Path, settings: Settings, project: str, project_id: int, sha: str
) -> FunctionSource:
    """The function of the repository at ``tree`` with its GitLab provenance."""
    folders = find_functions(tree)
    if len(folders) != 1:
        raise FaaspubError(
            f"project {project} has {len(folders)} function.yaml files at {sha[:12]}",
            hint="faaspub serves one function per repository",
        )
    fn = load_function(folders[0], namespace=namespace_of(project, settings.gitlab.groups))
    source_url = f"{settings.gitlab.url.rstrip('/')}/{project}" if settings.gitlab.url else None
    return replace(fn, repo_root=tree, commit=sha, source_url=source_url, project_id=project_id)


def namespace_of(project: str, groups: list[str]) -> str:
    """The served group a project belongs to (the longest match): functions are named within it."""
    matches = [g.strip("/") for g in groups if project.startswith(g.strip("/") + "/")]
    return max(matches, key=len) if matches else project.rsplit("/", 1)[0]


def image_ref(doc: dict[str, Any], settings: Settings, project: str) -> ImageRef:
    """The pinned image of ``build.json``/``release.json``: in the configured registry, under the project.

    GitLab lets a project's CI push only below its own registry path (``HOST/GROUP/PROJECT[/…]``,
    lower case), so an image anywhere else may belong to another project and is refused.
    """
    image = doc.get("image")
    if not isinstance(image, str) or "@sha256:" not in image:
        raise FaaspubError(
            "the pipeline's image reference is missing or not pinned by digest (REPO:TAG@sha256:…)"
        )
    name, digest = image.split("@", 1)
    host = name.split("/", 1)[0]
    registry = (settings.registry.url or "").split("://", 1)[-1].rstrip("/")
    if not registry or host != registry:
        raise FaaspubError(
            f"image {name} is not in the configured registry {registry or '(none)'}",
            hint="set registry.url to the registry the CI pushes to",
        )
    repository, _, tag = name.rpartition(":") if ":" in name.split("/", 1)[-1] else (name, "", "latest")
    path, own = repository.split("/", 1)[-1], project.lower()
    if path != own and not path.startswith(own + "/"):
        raise FaaspubError(
            f"image {repository} is not under the registry path of project {project} ({host}/{own})",
            hint="push the function image to $CI_REGISTRY_IMAGE (the faaspub CI template's default)",
        )
    return ImageRef(repository=repository, tag=tag, digest=digest)


def check_image(image: ImageRef, settings: Settings) -> None:
    """Fail unless the registry holds the manifest ``image.digest`` (transient on registry outages)."""
    host, repository = image.repository.split("/", 1)
    client = RegistryClient(
        f"{'http' if settings.registry.insecure else 'https'}://{host}",
        credentials_file=Path(settings.registry.credentials_file).expanduser(),
        insecure=settings.registry.insecure,
    )
    try:
        found = client.resolve(repository, image.digest)
    except FaaspubError as exc:
        if "not found" in exc.message:
            raise FaaspubError(
                f"image {image.repository}@{image.digest} is not in the registry",
                hint="the build job's push failed or the image was deleted; re-run the pipeline",
            ) from None
        raise TransientError(exc.message) from None
    if found != image.digest:
        raise FaaspubError(f"registry answered digest {found} for {image.repository}@{image.digest}")
