"""The dependencies layer: ``pip install --target`` for the image's Python and platform, cached.

pip runs on the build host, never inside the image: ``--only-binary=:all:`` with ``--platform``,
``--python-version`` and ``--implementation`` makes it pick the wheels the image can import. The
layer is cached under ``<cache_dir>/deps/<key>/`` where the key hashes the requirements (following
``-r``/``-c`` includes) and the target, so a code-only change reuses the layer without running pip.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from publisher.core.parts import Progress
from publisher.errors import FaaspubError
from publisher.oci.layer import Layer, build_layer
from publisher.provenance.sbom import Package

# Bumped when the way the layer is made changes, so old cache entries are not reused
# (2: entries list the installed distributions with licences and hashes, for the SBOM).
LAYOUT_VERSION = "2"
_LICENSE_CLASSIFIER = "License :: "
_INCLUDE = re.compile(r"^\s*(-r|--requirement|-c|--constraint)[\s=]+(\S+)")
_NO_MATCH = re.compile(r"No matching distribution found for ([^\s(]+)")
_NO_VERSION = re.compile(r"Could not find a version that satisfies the requirement ([^\s(]+)")


@dataclass(frozen=True)
class Target:
    """Where and for which interpreter the packages are installed."""

    prefix: str  # directory inside the image, e.g. /opt/faaspub/deps
    python_version: str  # "3.11"
    platform: str  # "manylinux2014_x86_64"
    implementation: str = "cp"
    # Ship byte-code (needs this interpreter's version): a read-only image cannot cache what it compiles.
    bytecode: bool = False


def requirement_lines(path: Path, root: Path, seen: frozenset[Path] = frozenset()) -> list[str]:
    """The meaningful lines of a requirements file, with ``-r``/``-c`` includes expanded in place.

    Includes must stay inside ``root`` (the function folder), like every other build input.
    """
    resolved = path.resolve()
    if resolved in seen:
        raise FaaspubError(f"requirements file {path.name} includes itself")
    lines: list[str] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        include = _INCLUDE.match(line)
        if include:
            child = (path.parent / include.group(2)).resolve()
            if not child.is_relative_to(root.resolve()) or not child.is_file():
                raise FaaspubError(
                    f"{path.name}: included file {include.group(2)!r} is missing or outside {root}"
                )
            lines.append(f"{include.group(1)} {child.relative_to(root.resolve()).as_posix()}")
            lines.extend(requirement_lines(child, root, seen | {resolved}))
        else:
            lines.append(line)
    return lines


def cache_key(requirements: Sequence[str], target: Target) -> str:
    """Hash of everything that decides the layer's content except the package index itself."""
    fields = asdict(target)
    if not target.bytecode:
        del fields["bytecode"]  # keys of layers without byte-code stay what they were before the option
    doc = {"layout": LAYOUT_VERSION, "target": fields, "requirements": list(requirements)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _pip_command(target: Target, dest: Path, report: Path, args: Sequence[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--target",
        str(dest),
        "--only-binary=:all:",
        "--platform",
        target.platform,
        "--python-version",
        target.python_version,
        "--implementation",
        target.implementation,
        # No .pyc: they embed timestamps (not reproducible) and the target Python may differ from ours.
        "--no-compile",
        "--no-warn-script-location",
        "--disable-pip-version-check",
        "--no-input",
        "--quiet",
        "--report",
        str(report),
        *args,
    ]


def _explain_pip_failure(stderr: str, what: str, target: Target) -> FaaspubError:
    match = _NO_MATCH.search(stderr) or _NO_VERSION.search(stderr)
    if match:
        return FaaspubError(
            f"{what}: no wheel of {match.group(1)!r} for {target.platform}, CPython {target.python_version}",
            hint="choose a version that publishes binary wheels for this platform, "
            "or use 'runtime: docker' with your own Dockerfile to build it from source",
        )
    tail = "\n".join(stderr.strip().splitlines()[-5:])
    return FaaspubError(f"{what}: pip install failed: {tail}")


def install_layer(
    requirements: Sequence[str],
    pip_args: Sequence[str],
    target: Target,
    cache_dir: Path,
    what: str,
    progress: Progress | None = None,
) -> tuple[Layer, bool]:
    """The dependencies layer for ``requirements`` (a file in the cache) and whether pip was skipped.

    ``pip_args`` are the arguments that install them (``-r FILE`` and/or package names);
    ``requirements`` is their normalised text, the cache key.
    """
    key = cache_key(requirements, target)
    entry = cache_dir / "deps" / key
    cached = _read_entry(entry)
    if cached is not None:
        return cached, True
    if progress:
        progress(f"installing {what} with pip for {target.platform} / CPython {target.python_version}")
    with tempfile.TemporaryDirectory(prefix="faaspub-deps-") as tmp:
        dest = Path(tmp) / "target"
        report = Path(tmp) / "report.json"
        proc = subprocess.run(
            _pip_command(target, dest, report, pip_args), capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise _explain_pip_failure(proc.stderr, what, target)
        # Console scripts carry the build host's interpreter path in their shebang: useless in the image.
        shutil.rmtree(dest / "bin", ignore_errors=True)
        dest.mkdir(exist_ok=True)
        if target.bytecode:
            compile_bytecode(dest, target)
        layer = build_layer(dest, target.prefix, workdir=Path(tmp))
        return _write_entry(entry, layer, _installed(report)), False


def compile_bytecode(dest: Path, target: Target) -> None:
    """Hash-based ``.pyc`` files (no timestamps) naming the paths inside the image, reproducibly."""
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if here != target.python_version:
        raise FaaspubError(f"byte-code for Python {target.python_version} needs that Python, not {here}")
    command = [sys.executable, "-m", "compileall", "-q", "-j", "1", "--invalidation-mode", "unchecked-hash"]
    proc = subprocess.run(
        [*command, "-d", target.prefix, str(dest)],
        env={**os.environ, "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise FaaspubError(f"compiling byte-code failed: {proc.stdout.strip()[-300:]}")


def installed(requirements: Sequence[str], target: Target, cache_dir: Path) -> tuple[Package, ...]:
    """The distributions in the layer :func:`install_layer` made for ``requirements`` (for the SBOM)."""
    try:
        meta = json.loads((cache_dir / "deps" / cache_key(requirements, target) / "layer.json").read_text())
        return tuple(Package.from_json(doc) for doc in meta["packages"])
    except (OSError, ValueError, KeyError, TypeError):
        return ()


def _installed(report: Path) -> tuple[Package, ...]:
    """What pip's installation report says it installed: name, version, licence, wheel and hash."""
    try:
        doc = json.loads(report.read_text(encoding="utf-8"))
        items = list(doc.get("install", []))
    except (OSError, ValueError, AttributeError):
        return ()
    found = []
    for item in items:
        meta, download = item.get("metadata") or {}, item.get("download_info") or {}
        hashes = (download.get("archive_info") or {}).get("hashes") or {}
        found.append(
            Package(
                "pypi",
                str(meta.get("name", "")),
                str(meta.get("version", "")),
                licenses=_licenses(meta),
                sha256=hashes.get("sha256"),
                url=download.get("url"),
            )
        )
    return tuple(sorted(found, key=lambda p: p.name.lower()))


def _licenses(meta: dict[str, Any]) -> tuple[str, ...]:
    """PEP 639 ``License-Expression``, else a one-line ``License``, else the licence classifiers."""
    expression = meta.get("license_expression")
    if isinstance(expression, str) and expression.strip():
        return (expression.strip(),)
    text = meta.get("license")
    if isinstance(text, str) and text.strip() and "\n" not in text.strip() and len(text) <= 100:
        return (text.strip(),)
    classifiers = meta.get("classifier") or meta.get("classifiers") or []
    names = [
        c.rsplit(" :: ", 1)[-1]
        for c in classifiers
        if isinstance(c, str) and c.startswith(_LICENSE_CLASSIFIER)
    ]
    return tuple(n for n in names if n not in ("OSI Approved", "Other/Proprietary License"))


def _write_entry(entry: Path, layer: Layer, packages: tuple[Package, ...]) -> Layer:
    entry.mkdir(parents=True, exist_ok=True)
    blob = entry / "layer.blob"
    layer.save(blob)
    layer.discard()
    meta = {
        "digest": layer.digest,
        "diff_id": layer.diff_id,
        "size": layer.size,
        "media_type": layer.media_type,
        "packages": [p.to_json() for p in packages],
    }
    # The installed distributions go into the image's SBOM.
    tmp = entry / "layer.json.part"
    tmp.write_text(json.dumps(meta, indent=1))
    # The metadata is written last and atomically: an interrupted build leaves no usable half entry.
    tmp.replace(entry / "layer.json")
    return Layer(layer.digest, layer.diff_id, layer.size, layer.media_type, path=blob)


def _read_entry(entry: Path) -> Layer | None:
    try:
        meta = json.loads((entry / "layer.json").read_text())
        blob = entry / "layer.blob"
        if blob.stat().st_size != meta["size"]:
            return None
        return Layer(meta["digest"], meta["diff_id"], meta["size"], meta["media_type"], path=blob)
    except (OSError, ValueError, KeyError):
        return None
