"""The equivalent Dockerfile of a native build, and its build context (for buildah and kaniko).

The context holds ``action/`` (the same files as the native code layer, ``handler.json`` included),
and the dependencies either as ``requirements.txt`` plus the host's ``pip/`` (installed by a
``RUN --mount`` step inside the image: buildah) or already installed in ``deps/`` (kaniko, whose
executor cannot bind-mount).
"""

from __future__ import annotations

import os
import shutil
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jinja2
import pip

from publisher.build import inputs
from publisher.build.deps import requirement_lines
from publisher.core.types import FunctionSource

TEMPLATES = Path(__file__).resolve().parents[2] / "runtime-images" / "templates"
DepsMode = Literal["none", "pip", "context"]


def docker_quote(value: object) -> str:
    """A Dockerfile double-quoted string: backslashes and quotes escaped, newlines flattened."""
    text = " ".join(str(value).splitlines())
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def host_ca_bundle() -> Path:
    """The CA bundle the build host's pip trusts (a facility proxy's CA included), for pip in the image."""
    for name in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        value = os.environ.get(name)
        if value and Path(value).is_file():
            return Path(value)
    return Path(pip.__file__).parent / "_vendor" / "certifi" / "cacert.pem"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # a Dockerfile, not HTML; values are quoted by docker_quote
    )
    env.filters["dockerquote"] = docker_quote
    return env


@dataclass(frozen=True)
class Context:
    """A prepared build context directory with its rendered Dockerfile."""

    root: Path
    dockerfile: Path


def render(
    fn: FunctionSource,
    version: str,
    base: str,
    user: str,
    pythonpath: str,
    labels: Mapping[str, str],
    deps: DepsMode,
) -> str:
    """The Dockerfile text for ``fn`` on ``base``."""
    return (
        _environment()
        .get_template("function.Dockerfile.j2")
        .render(
            name=fn.name,
            version=version,
            base=base,
            user=user,
            deps=deps,
            deps_dir=inputs.DEPS_DIR,
            action_dir=inputs.ACTION_DIR,
            pythonpath=pythonpath,
            labels=labels,
        )
    )


def prepare(
    fn: FunctionSource,
    version: str,
    dest: Path,
    *,
    base: str,
    user: str,
    pythonpath: str,
    labels: Mapping[str, str],
    deps: DepsMode,
    deps_layer: Path | None = None,
) -> Context:
    """Write the context for ``fn`` into ``dest`` (empty) and render its Dockerfile there.

    ``deps="context"`` needs ``deps_layer``: the cached dependencies layer blob, unpacked into deps/.
    """
    action = dest / "action"
    for rel, path in inputs.code_files(fn).items():
        (action / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, action / rel)
    handler = action / inputs.HANDLER_CONFIG
    handler.parent.mkdir(parents=True, exist_ok=True)
    handler.write_bytes(inputs.handler_config_bytes(fn, version))
    requirements = inputs.requirements_file(fn)
    lines = requirement_lines(requirements, fn.root) if requirements else []
    if not lines:
        deps = "none"
    elif deps == "pip":
        # Includes are already expanded in place by requirement_lines.
        kept = [line for line in lines if not line.startswith(("-r ", "-c "))]
        (dest / "requirements.txt").write_text("\n".join(kept) + "\n")
        shutil.copytree(
            Path(pip.__file__).parent, dest / "pip" / "pip", ignore=shutil.ignore_patterns("__pycache__")
        )
        shutil.copy(host_ca_bundle(), dest / "pip" / "ca.pem")
    elif deps == "context":
        assert deps_layer is not None, "deps='context' needs the dependencies layer"
        _unpack_deps(deps_layer, dest / "deps")
    dockerfile = dest / "Dockerfile"
    dockerfile.write_text(render(fn, version, base, user, pythonpath, labels, deps))
    return Context(dest, dockerfile)


def _unpack_deps(blob: Path, dest: Path) -> None:
    prefix = inputs.DEPS_DIR.strip("/") + "/"
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(blob, "r:*") as tar:
        for member in tar.getmembers():
            if member.name.startswith(prefix) and (member.isfile() or member.isdir()):
                member.name = member.name[len(prefix) :]
                tar.extract(member, dest, filter="data")
