"""OCI foundation benchmarks: base image build, small-layer build, push and append (vs buildah).

``run(quick)`` starts its own ``docker-registry`` on a random loopback port and stops it at the end.
The buildah peer builds the same function image (``FROM base`` + ``COPY``) with a private
configuration in a temporary directory and pushes it to the same registry.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from publisher.oci.layer import build_layer
from publisher.oci.layout import OciLayout
from publisher.oci.registry import RegistryClient
from publisher.oci.transfer import append_layers, fetch_image
from publisher.podman import write_config
from publisher.runtime.base import BASE_REPOSITORY, build_base
from tests.infra.containers import cache_root, start_registry


def _median(fn: Callable[[int], object], reps: int) -> float:
    times = []
    for i in range(reps):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _function_dir(root: Path) -> Path:
    """A typical small function: 20 modules of ~4 KB plus a tests folder."""
    src = root / "fn"
    (src / "tests").mkdir(parents=True)
    for i in range(20):
        (src / f"mod{i}.py").write_text(f"# module {i}\n" + "x = 1\n" * 700)
    (src / "tests" / "test_fn.py").write_text("def test_ok():\n    assert True\n")
    return src


def _buildah_append(work: Path, base_ref: str, dest_ref: str, src: Path, host: str) -> float | None:
    buildah = shutil.which("buildah")
    if not buildah:
        return None
    env = {**os.environ, **write_config(work / "podman", [host])}
    (work / "ctx").mkdir()
    shutil.copytree(src, work / "ctx" / "fn")
    (work / "ctx" / "Dockerfile").write_text(f"FROM {base_ref}\nCOPY fn/ /action/\n")
    start = time.perf_counter()
    for cmd in (
        [buildah, "bud", "--isolation", "chroot", "--layers=false", "-t", dest_ref, str(work / "ctx")],
        [buildah, "push", "--tls-verify=false", dest_ref],
    ):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            return None
    elapsed = time.perf_counter() - start
    subprocess.run([buildah, "rmi", "--all", "--force"], env=env, capture_output=True, check=False)
    return elapsed


def run(quick: bool) -> list[dict[str, Any]]:
    reps = 5 if quick else 20
    results: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="faaspub-bench-oci-"))
    registry = start_registry(work / "registry")
    try:
        cache = cache_root()
        # Warm the .deb cache so the figure is the build itself, not the mirror.
        build_base("3.11", OciLayout(work / "warm"), cache)
        start = time.perf_counter()
        build_base("3.11", OciLayout(work / "cold"), cache, use_layer_cache=False)
        results.append(
            {
                "metric": "base image build (debx, layer not cached, debs cached)",
                "value": round(time.perf_counter() - start, 2),
                "unit": "s",
                "command": "faaspub runtime build-base --no-cache",
            }
        )
        client = RegistryClient(registry.url)
        start = time.perf_counter()
        build_base("3.11", client, cache)
        results.append(
            {
                "metric": "base image push to registry (layer cached)",
                "value": round(time.perf_counter() - start, 2),
                "unit": "s",
                "command": "faaspub runtime build-base (registry.url set)",
            }
        )
        src = _function_dir(work)
        layer_s = _median(lambda _i: build_layer(src, "/action"), reps)
        results.append(
            {
                "metric": "function layer build (20 files, 84 KB)",
                "value": round(layer_s * 1000, 2),
                "unit": "ms",
                "command": "publisher.oci.layer.build_layer(dir, '/action')",
            }
        )
        base = fetch_image(client, BASE_REPOSITORY, "3.11")

        def append(i: int) -> None:
            layer = build_layer(src, "/action")
            append_layers(client, base, f"bench/fn{i}", "1.0.0", [(layer, "COPY . /action")])

        append_s = _median(append, reps)
        record: dict[str, Any] = {
            "metric": "function image build + push to a new repository (append on base, mounts base layer)",
            "value": round(append_s * 1000, 1),
            "unit": "ms",
            "command": "build_layer + publisher.oci.transfer.append_layers",
            "goal": "< 100 ms",
        }
        peer = _buildah_append(
            work / "buildah",
            f"{registry.host}/{BASE_REPOSITORY}:3.11",
            f"{registry.host}/bench/peer:1",
            src,
            registry.host,
        )
        if peer is not None:
            record.update(
                {
                    "peer": "buildah bud --isolation chroot (FROM base + COPY) + buildah push",
                    "peer_value": round(peer * 1000, 1),
                    "ratio": round(peer / append_s, 1),
                }
            )
        results.append(record)
    finally:
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)
    return results


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick="--full" not in sys.argv), indent=2))
