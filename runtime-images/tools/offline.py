"""Build the faaspub tools image offline: faaspub's wheel and dependencies on the offline python base.

The same contents as ``runtime-images/tools/Dockerfile`` (faaspub, pip, bash, rsync), made without
a container engine or an outside registry: the wheel and its dependencies become one layer through
the native builder's dependency-layer code (pip for the image's Python and platform, cached), bash
and rsync come from pinned Debian packages like the base image itself.

    .venv/bin/python runtime-images/tools/offline.py --registry 127.0.0.1:5000 \
        --base 127.0.0.1:5000/faaspub/python-base:TAG [--image faaspub/ci-templates/tools:0.1.0]
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from publisher.build.deps import Target, install_layer
from publisher.core.parts import Progress
from publisher.errors import FaaspubError
from publisher.oci.image import ImageConfig
from publisher.oci.layer import build_layer
from publisher.oci.registry import RegistryClient
from publisher.oci.store import ImageStore, parse_reference
from publisher.oci.transfer import append_layers, fetch_image
from publisher.runtime.debian import fetch_debs, resolve_packages

REPO_ROOT = Path(__file__).resolve().parents[2]
LIB_DIR = "/opt/faaspub/lib"
# bash and rsync are what gitlab-ci-local's artifact and cache steps need; the rest are their libraries
# that the python base does not already carry.
EXTRA_PACKAGES = ("bash", "rsync", "libacl1", "libpopt0", "libxxhash0", "liblz4-1", "libzstd1")
LAUNCHER = b"#!/usr/bin/python3\nimport sys\nfrom publisher.cli.main import main\nsys.exit(main())\n"


@dataclass(frozen=True)
class ToolsImage:
    """The pushed tools image."""

    reference: str  # HOST/REPOSITORY:TAG
    digest: str


def build_wheel(dest: Path) -> Path:
    """faaspub's wheel, built from this checkout (pip's isolated build)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--wheel-dir",
            str(dest),
            str(REPO_ROOT),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    wheels = sorted(dest.glob("faaspub-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise FaaspubError(f"building the faaspub wheel failed: {proc.stderr.strip()[-800:]}")
    return wheels[-1]


def debian_layer_entries(cache_dir: Path, workdir: Path) -> Path:
    """A root filesystem tree with bash, rsync and their libraries unpacked from pinned .debs."""
    root = workdir / "debian"
    root.mkdir()
    for deb in fetch_debs(resolve_packages(list(EXTRA_PACKAGES)), cache_dir / "debs"):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, capture_output=True)
    # Only the programs and their libraries: documentation and base-files' /etc stay out of the layer.
    for sub in ("usr/share", "etc", "var"):
        subprocess.run(["rm", "-rf", str(root / sub)], check=True)
    (root / "usr/local/bin").mkdir(parents=True)
    launcher = root / "usr/local/bin/faaspub"
    launcher.write_bytes(LAUNCHER)
    launcher.chmod(0o755)
    return root


def build_tools_image(
    store: ImageStore,
    base: str,
    repository: str = "faaspub/ci-templates/tools",
    tag: str = "0.1.0",
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> ToolsImage:
    """Append the faaspub layer and the bash/rsync layer to ``base`` and push ``repository:tag``.

    ``base`` is a reference in ``store`` (``HOST/faaspub/python-base:3.11``): its layers are mounted.
    """
    say = progress or (lambda _msg: None)
    cache = (cache_dir or Path.home() / ".cache" / "faaspub").expanduser()
    ref = parse_reference(base)
    base_image = fetch_image(store, ref.repository, ref.ref)
    with tempfile.TemporaryDirectory(prefix="faaspub-tools-") as tmp:
        work = Path(tmp)
        say("building the faaspub wheel")
        wheel = build_wheel(work / "wheel")
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        target = Target(prefix=LIB_DIR, python_version="3.11", platform="manylinux2014_x86_64")
        # The cache key is the wheel's content: a code change re-runs pip, an unchanged tree does not.
        deps, cached = install_layer(
            [f"faaspub @ sha256:{digest}", "pip"], [str(wheel), "pip"], target, cache, "faaspub tools", say
        )
        say("reused the cached faaspub layer" if cached else "installed faaspub and its dependencies")
        debian = build_layer(debian_layer_entries(cache, work), "/", symlinks="keep", workdir=work)

        def configure(config: ImageConfig) -> None:
            current = [p for p in config.env.get("PYTHONPATH", "").split(":") if p and p != LIB_DIR]
            config.set_env({"PYTHONPATH": ":".join([LIB_DIR, *current])})
            config.set_cmd(["faaspub", "--help"])
            # CI jobs write the project directory and talk to the job's container engine socket.
            config.set_user("0")

        layers = [
            (deps, f"pip install --target {LIB_DIR} faaspub pip"),
            (debian, "bash, rsync (Debian packages) and /usr/local/bin/faaspub"),
        ]
        pushed = append_layers(store, base_image, repository, tag, layers, configure)
    return ToolsImage(f"{store.name}/{repository}:{tag}", pushed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", required=True, help="HOST:PORT of the registry to push to")
    parser.add_argument(
        "--base", required=True, help="the offline python base image (faaspub runtime build-base)"
    )
    parser.add_argument("--image", default="faaspub/ci-templates/tools:0.1.0", help="REPOSITORY:TAG to push")
    parser.add_argument("--insecure", action="store_true", help="plain HTTP registry")
    args = parser.parse_args(argv)
    repository, _, tag = args.image.rpartition(":")
    store = RegistryClient(args.registry, insecure=args.insecure)
    try:
        built = build_tools_image(
            store, args.base, repository, tag, progress=lambda m: print(m, file=sys.stderr)
        )
    except FaaspubError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{built.reference}@{built.digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
