"""The faaspub service image: the python runtime base plus faaspub and its dependencies.

Built the way function images are (no Dockerfile, no daemon): the base from
:func:`publisher.runtime.base.build_base`, a dependencies layer (``pip install --target`` of the
project's dependencies for the image's Python and platform, cached like a function's requirements)
and a package layer (the wheel of this source tree, installed without dependencies), then the
``faaspub`` command. The entry point is ``faaspub``; the default command serves on all interfaces
of the container (``serve --listen 0.0.0.0:8080``), and ``worker`` or ``db upgrade`` run the other
processes of a deployment. Configuration comes from a mounted file (``--config``) and
``FAASPUB_<SECTION>__<KEY>`` variables; state lives under ``/var/lib/faaspub`` (the working
directory, and ``FAASPUB_HOME``).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from publisher import __version__
from publisher.build.deps import Target, install_layer
from publisher.errors import FaaspubError
from publisher.oci.image import ImageConfig
from publisher.oci.layer import Layer, build_layer
from publisher.oci.store import ImageStore
from publisher.oci.transfer import append_layers, fetch_image
from publisher.runtime.base import APP_UID, BASE_REPOSITORY, build_base

SERVICE_REPOSITORY = "faaspub/service"
PYTHON = "3.11"
# What function images use too (pip takes one platform tag literally, without the older ones).
PLATFORM = "manylinux2014_x86_64"
SITE = "/opt/faaspub/service"  # pip --target of faaspub and its dependencies
STATE = "/var/lib/faaspub"
CONFIG = "/etc/faaspub"
PORT = 8080
# The `faaspub` command: the console script pip would write, with the image's interpreter.
LAUNCHER = b"#!/usr/bin/python3\nfrom publisher.cli.main import main\n\nmain()\n"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ServiceBuild:
    """The result of :func:`build_service`."""

    reference: str  # "127.0.0.1:5000/faaspub/service" or "oci:DIR:faaspub/service"
    tag: str
    digest: str
    base_digest: str
    size: int
    seconds: float

    def to_json(self) -> dict[str, object]:
        return {
            "image": f"{self.reference}:{self.tag}",
            "digest": self.digest,
            "base": self.base_digest,
            "size": self.size,
            "seconds": round(self.seconds, 3),
        }


def source_root() -> Path:
    """The source tree this package runs from; the image is built from it, not from an install."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise FaaspubError(
            "the service image is built from a faaspub source checkout (pyproject.toml not found)",
            hint="run faaspub from a clone of the repository (pip install -e .)",
        )
    return root


def dependencies(root: Path) -> list[str]:
    """The ``[project] dependencies`` of ``pyproject.toml``: what the service needs at run time."""
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return list(project["dependencies"])


def source_files(root: Path) -> list[str]:
    """The files of the checkout (tracked, or new and not ignored): what the image is built from."""
    proc = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise FaaspubError(f"{root} is not a git checkout", hint="build the service image from a clone")
    return sorted(name for name in proc.stdout.decode().split("\0") if name and (root / name).is_file())


def build_wheel(root: Path, dest: Path) -> Path:
    """The wheel of ``root`` (``pip wheel --no-deps``, the project's own build backend).

    It is built from a copy of the checkout's files: setuptools builds in place and would otherwise
    pack whatever an earlier build left in ``build/`` (modules deleted since included).
    """
    tree = dest / "source"
    for name in source_files(root):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, tree / name)
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check"]
    proc = subprocess.run(
        [*pip, "--wheel-dir", str(dest), str(tree)],
        capture_output=True,
        text=True,
        check=False,
    )
    wheels = sorted(dest.glob("faaspub-*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise FaaspubError(f"building the faaspub wheel failed: {tail}")
    return wheels[0]


def package_layer(root: Path, cache_dir: Path, progress: Progress | None = None) -> Layer:
    """faaspub itself, installed from its wheel into :data:`SITE` (cached by the wheel's digest)."""
    target = Target(SITE, PYTHON, PLATFORM, bytecode=True)
    with tempfile.TemporaryDirectory(prefix="faaspub-wheel-") as tmp:
        wheel = build_wheel(root, Path(tmp))
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        # From a find-links folder, not a file path: pip then records no temporary path in the layer.
        args = ["--no-deps", "--no-index", "--find-links", tmp, f"faaspub=={__version__}"]
        requirement = f"faaspub=={__version__} sha256:{digest}"
        layer, _ = install_layer([requirement], args, target, cache_dir, "faaspub", progress)
    return layer


def files_layer() -> Layer:
    """The ``faaspub`` command, and the state directory owned by the service's user."""
    with tempfile.TemporaryDirectory(prefix="faaspub-launcher-") as tmp:
        launcher = Path(tmp) / "faaspub"
        launcher.write_bytes(LAUNCHER)
        launcher.chmod(0o755)
        return build_layer(
            {
                "usr/local/bin/faaspub": launcher,
                f"{STATE.strip('/')}/.keep": b"",
                f"{CONFIG.strip('/')}/.keep": b"",
            },
            owners={STATE.strip("/"): (APP_UID, APP_UID)},
        )


def service_config(config: ImageConfig, root: Path) -> None:
    """Entry point, command, environment, port, user and labels of the service image."""
    config.set_env(
        {
            "PYTHONPATH": f"{SITE}:/opt/faaspub",
            "FAASPUB_HOME": STATE,
        }
    )
    config.set_cmd(["serve", "--listen", f"0.0.0.0:{PORT}"], entrypoint=["faaspub"])
    config.set_workdir(STATE)
    config.set_user(str(APP_UID))
    config.expose(f"{PORT}/tcp")
    config.set_labels(
        {
            "org.opencontainers.image.title": "faaspub",
            "org.opencontainers.image.description": (
                "faaspub service: webhooks, catalogue, API, release workers and storage-event delivery"
            ),
            "org.opencontainers.image.version": __version__,
            "org.opencontainers.image.revision": _git_commit(root),
            "org.opencontainers.image.licenses": "Apache-2.0",
            "org.opencontainers.image.vendor": "faaspub",
        }
    )
    config.container["Labels"].pop("io.faaspub.runtime", None)  # not a function runtime


def _git_commit(root: Path) -> str:
    proc = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    return proc.stdout.strip() if proc.returncode == 0 else ""


def build_service(
    store: ImageStore,
    cache_dir: Path,
    *,
    tag: str | None = None,
    progress: Progress | None = None,
) -> ServiceBuild:
    """Build the service image from this source tree and push it as ``faaspub/service:TAG``."""
    say = progress or (lambda _msg: None)
    started = time.monotonic()
    root = source_root()
    cache_dir = Path(cache_dir).expanduser()
    base_build = build_base(PYTHON, store, cache_dir, progress=say)
    base = fetch_image(store, BASE_REPOSITORY, base_build.digest)
    target = Target(SITE, PYTHON, PLATFORM, bytecode=True)
    requirements = dependencies(root)
    say(f"installing {len(requirements)} dependencies for CPython {PYTHON} / {PLATFORM}")
    deps, _ = install_layer(requirements, requirements, target, cache_dir, "service dependencies", say)
    say("installing faaspub from its wheel")
    package = package_layer(root, cache_dir, say)
    files = files_layer()
    tag = tag or __version__
    say(f"pushing {store.reference(SERVICE_REPOSITORY)}:{tag}")
    digest = append_layers(
        store,
        base,
        SERVICE_REPOSITORY,
        tag,
        [
            (deps, f"pip install --target {SITE} (faaspub's dependencies)"),
            (package, f"pip install --target {SITE} --no-deps faaspub"),
            (files, "faaspub command, state and configuration directories"),
        ],
        edit=lambda config: service_config(config, root),
    )
    image = fetch_image(store, SERVICE_REPOSITORY, digest)
    return ServiceBuild(
        reference=store.reference(SERVICE_REPOSITORY),
        tag=tag,
        digest=digest,
        base_digest=base.digest,
        size=image.size,
        seconds=time.monotonic() - started,
    )
