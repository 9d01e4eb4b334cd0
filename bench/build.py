"""Build benchmarks: native build+push, cold and warm, against ``buildah bud`` of the equivalent Dockerfile.

For each example (``examples/hello``, ``examples/cxi-metadata``), in a copy committed to a scratch git
repository:

* native cold: an empty faaspub dependency cache (pip's own HTTP cache is left alone, as on any
  build host), build and push the function image and its test image;
* native warm: a code-only change (one line appended to the handler), build and push again;
* buildah: ``buildah bud --isolation chroot`` of the equivalent Dockerfile (pip runs inside the image),
  pushed the same way (``faaspub build --builder buildah``);
* attestation: what the SBOM and the signed provenance add to a warm build, side by side with the
  build without them: making the CycloneDX SBOM (reading the base's SBOM from the registry), then
  signing the statement and attaching both as referrers (``faaspub build --push``).

``run(quick)`` starts its own ``docker-registry`` and a private buildah configuration, and stops
and removes both at the end. Quick mode measures hello once; the full run takes the median of three.
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

from publisher.build import inputs
from publisher.build.buildah import BuildahBuilder
from publisher.build.native import NativeBuilder
from publisher.config import BuildSettings, ProvenanceSettings, RegistrySettings, Settings
from publisher.manifest.load import load_function
from publisher.oci.registry import RegistryClient
from publisher.podman import write_config
from publisher.provenance.attest import attest
from publisher.provenance.keys import load_signer
from publisher.provenance.statement import BuildFacts
from publisher.runtime.base import build_base
from tests.infra.containers import cache_root, start_registry

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.org"]


def _median(step: Callable[[int], object], reps: int) -> float:
    times = []
    for i in range(reps):
        start = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _repo(example: str, dest: Path) -> Path:
    root = dest / example
    shutil.copytree(EXAMPLES / example, root, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    subprocess.run([*GIT, "init", "-q", str(root)], check=True)
    _commit(root)
    return root


def _commit(root: Path) -> None:
    subprocess.run([*GIT, "-C", str(root), "add", "-A"], check=True)
    subprocess.run([*GIT, "-C", str(root), "commit", "-q", "-m", "bench"], check=True)


def _touch_code(root: Path, i: int) -> None:
    handler = root / f"{load_function(root).manifest.module}.py"
    handler.write_text(handler.read_text() + f"\n# code-only change {i} {time.time_ns()}\n")
    _commit(root)


def _settings(registry_url: str, cache: Path) -> Settings:
    return Settings(
        registry=RegistrySettings(url=registry_url, insecure=True), build=BuildSettings(cache_dir=str(cache))
    )


def _bench_example(example: str, registry_url: str, work: Path, reps: int) -> list[dict[str, Any]]:
    root = _repo(example, work)

    def cold(i: int) -> None:
        cache = work / f"cache-{example}-{i}"
        NativeBuilder(_settings(registry_url, cache)).build(load_function(root), f"0.0.{i}", {})

    warm_cache = work / f"cache-{example}-warm"
    NativeBuilder(_settings(registry_url, warm_cache)).build(load_function(root), "1.0.0", {})

    def warm(i: int) -> None:
        _touch_code(root, i)
        NativeBuilder(_settings(registry_url, warm_cache)).build(load_function(root), "1.0.0", {})

    def buildah(i: int) -> None:
        _touch_code(root, 100 + i)
        BuildahBuilder(_settings(registry_url, warm_cache)).build(load_function(root), "1.0.0", {})

    native_cold = _median(cold, reps)
    native_warm = _median(warm, reps)
    peer = _median(buildah, reps) if shutil.which("buildah") else None
    command = f"faaspub build examples/{example} --builder native"
    peer_name = f"buildah bud (equivalent Dockerfile) examples/{example}"
    return [
        {
            "metric": f"build.{example}.native_cold_s",
            "value": round(native_cold, 3),
            "unit": "s",
            "command": command + " (empty dependency cache)",
            "goal": "not slower than buildah",
            "peer": peer_name,
            "peer_value": round(peer, 3) if peer else None,
            "ratio": round(peer / native_cold, 2) if peer else None,
        },
        {
            "metric": f"build.{example}.native_warm_s",
            "value": round(native_warm, 3),
            "unit": "s",
            "command": command + " (code-only change)",
            "goal": ">= 10x faster than buildah",
            "peer": peer_name,
            "peer_value": round(peer, 3) if peer else None,
            "ratio": round(peer / native_warm, 2) if peer else None,
        },
    ]


def _bench_attestation(example: str, registry_url: str, work: Path, reps: int) -> list[dict[str, Any]]:
    root = _repo(example, work / "attest")
    settings = _settings(registry_url, work / f"cache-{example}-attest").model_copy(
        update={"state_dir": str(work / "attest-state"), "provenance": ProvenanceSettings()}
    )
    builder = NativeBuilder(settings)
    signer = load_signer(settings)  # a generated Ed25519 key, as on an embedded installation
    builder.build(load_function(root), "1.0.0", {})  # the dependency cache is warm from here on
    builds, sboms, attaches = [], [], []
    for i in range(reps):
        _touch_code(root, 200 + i)
        fn = load_function(root)
        start = time.perf_counter()
        built = builder.build(fn, "1.0.0", {})
        builds.append(time.perf_counter() - start)
        plan = builder.plan(fn, "1.0.0", {})
        start = time.perf_counter()
        document = builder.sbom(fn, "1.0.0", plan, built.ref.repository)
        sboms.append(time.perf_counter() - start)
        facts = BuildFacts(built.ref.repository, built.ref.digest, fn.name, "local", "1.0.0", "native")
        start = time.perf_counter()
        attest(builder.store, inputs.repository_path(settings, fn), facts, document, signer)
        attaches.append(time.perf_counter() - start)
    sbom_s, attach_s = statistics.median(sboms), statistics.median(attaches)
    without = statistics.median(builds) - sbom_s
    peer = f"the same warm build without SBOM and provenance (examples/{example})"
    record = {"unit": "s", "peer": peer, "peer_value": round(without, 3)}
    return [
        {
            **record,
            "metric": f"build.{example}.sbom_s",
            "value": round(sbom_s, 3),
            "command": "CycloneDX 1.6 SBOM of the native build, schema-checked (base SBOM from the registry)",
        },
        {
            **record,
            "metric": f"build.{example}.sign_attach_s",
            "value": round(attach_s, 3),
            "command": "sign the in-toto statement (Ed25519, DSSE) and attach SBOM + provenance as referrers",
        },
        {
            **record,
            "metric": f"build.{example}.attestation_overhead",
            "value": round((sbom_s + attach_s) / without, 3),
            "unit": "fraction of the warm build",
            "command": "(SBOM + sign + attach) / warm build without them",
            "goal": "well under a second added per image",
        },
    ]


def run(quick: bool) -> list[dict[str, Any]]:
    examples = ["hello"] if quick else ["hello", "cxi-metadata"]
    reps = 1 if quick else 3
    work = Path(tempfile.mkdtemp(prefix="faaspub-bench-build-"))
    saved = {
        k: os.environ.get(k)
        for k in ("CONTAINERS_STORAGE_CONF", "CONTAINERS_CONF", "CONTAINERS_REGISTRIES_CONF", "TMPDIR")
    }
    registry = start_registry(work / "registry")
    try:
        os.environ.update(write_config(work / "podman", [registry.host]))
        build_base("3.11", RegistryClient(registry.url, insecure=True), cache_dir=cache_root())
        results: list[dict[str, Any]] = []
        for example in examples:
            results += _bench_example(example, registry.url, work, reps)
            results += _bench_attestation(example, registry.url, work, max(reps, 3))
        return results
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        registry.stop()
        if shutil.which("buildah"):
            subprocess.run(
                ["buildah", "rm", "--all"],
                capture_output=True,
                check=False,
                env={**os.environ, **write_config(work / "podman", [])},
            )
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    import json

    print(json.dumps(run("--quick" in sys.argv), indent=2))
