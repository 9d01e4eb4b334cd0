"""The python runtime base image, assembled offline from Debian packages (the "debx" method).

Pinned ``.deb`` files (the apt candidates, checked against their SHA256) are unpacked with
``dpkg-deb -x`` into a root filesystem, tidied (no docs, man pages or locales), given busybox
applets, users ``root`` and ``app`` (uid 1000), the CA bundle and the action proxy, then written as
one deterministic layer. The same package versions and proxy files always give the same digest; the
built layer is cached under ``cache_dir`` keyed by exactly those inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from publisher.errors import FaaspubError
from publisher.oci.image import EPOCH, ImageConfig
from publisher.oci.layer import Layer, build_layer
from publisher.oci.store import ImageStore
from publisher.oci.transfer import push_image
from publisher.provenance import sbom
from publisher.provenance.attest import attach_sbom

BASE_REPOSITORY = "faaspub/python-base"
# Bump when the recipe changes in a way the inputs below do not capture.
RECIPE_VERSION = "2"
# gzip -1: ~4x faster than -6 for a layer only ~10% larger (19 vs 21 MB).
COMPRESSLEVEL = 1
APP_UID = 1000
# Cached base layers kept (each ~20 MB); older ones go when a new one is written.
KEEP_CACHED_LAYERS = 4

PACKAGES: tuple[str, ...] = (
    "libc6",
    "libgcc-s1",
    "gcc-12-base",
    "zlib1g",
    "libexpat1",
    "libssl3",
    "libbz2-1.0",
    "libcrypt1",
    "libdb5.3",
    "libffi8",
    "liblzma5",
    "libncursesw6",
    "libtinfo6",
    "libnsl2",
    "libtirpc3",
    "libtirpc-common",
    "libgssapi-krb5-2",
    "libk5crypto3",
    "libkeyutils1",
    "libkrb5-3",
    "libkrb5support0",
    "libcom-err2",
    "libreadline8",
    "readline-common",
    "libsqlite3-0",
    "libuuid1",
    "media-types",
    "tzdata",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "python3.11-minimal",
    "python3.11",
    "python3-minimal",
    "python3",
    "libpython3-stdlib",
    "busybox-static",
    "ca-certificates",
    # manylinux wheels (numpy, h5py, …) link against the C++ runtime.
    "libstdc++6",
)

# Dropped from the root filesystem: documentation and translations nobody reads in a container.
_PRUNE = ("usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian", "usr/share/doc-base")

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "app:x:1000:1000:app:/home/app:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = "root:x:0:\napp:x:1000:\nnogroup:x:65534:\n"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Package:
    """One pinned Debian package: the apt candidate and the checksum its .deb must have."""

    name: str
    version: str
    architecture: str
    filename: str  # basename in the pool
    sha256: str


@dataclass(frozen=True)
class BaseBuild:
    """The result of :func:`build_base`."""

    repository: str
    reference: str  # as engines name it: "127.0.0.1:5000/faaspub/python-base" or "oci:DIR:…"
    tag: str
    digest: str
    layer_digest: str
    size: int
    packages: tuple[Package, ...]
    cached: bool
    seconds: float
    python: str = "3.11"
    labels: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "image": f"{self.reference}:{self.tag}",
            "sbom": "attached (CycloneDX 1.6)",
            "digest": self.digest,
            "python": self.python,
            "layer": self.layer_digest,
            "size": self.size,
            "cached": self.cached,
            "seconds": round(self.seconds, 3),
            "packages": {p.name: p.version for p in self.packages},
        }


def default_proxy_dir() -> Path:
    """``runtime-images/python/faaspub_runtime`` of this source tree."""
    return Path(__file__).resolve().parents[2] / "runtime-images" / "python" / "faaspub_runtime"


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise FaaspubError(
            f"{cmd[0]} is not installed; the base image is built from Debian packages",
            hint="run on Debian/Ubuntu with apt, or build runtime-images/python3.11/Dockerfile",
        ) from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise FaaspubError(f"{' '.join(cmd[:3])} failed: {' '.join(tail)}")
    return proc.stdout


def resolve_packages(names: tuple[str, ...] | list[str] = PACKAGES) -> tuple[Package, ...]:
    """The apt candidate of every package (version, pool file, SHA256), sorted by name."""
    out = _run(["apt-cache", "show", "--no-all-versions", *names])
    found: dict[str, Package] = {}
    for stanza in out.strip().split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        name = fields.get("Package", "")
        if name in names and name not in found and "Filename" in fields:
            found[name] = Package(
                name,
                fields["Version"],
                fields["Architecture"],
                fields["Filename"].rsplit("/", 1)[-1],
                fields["SHA256"],
            )
    missing = sorted(set(names) - set(found))
    if missing:
        raise FaaspubError(
            f"apt knows no candidate for {', '.join(missing)}", hint="run apt-get update (bookworm sources)"
        )
    return tuple(sorted(found.values(), key=lambda p: p.name))


def _sha256_file(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            sha.update(chunk)
    return sha.hexdigest()


def fetch_debs(packages: tuple[Package, ...], deb_dir: Path) -> list[Path]:
    """The verified .deb of every package, downloading (``apt-get download``) only what is missing."""
    deb_dir.mkdir(parents=True, exist_ok=True)
    missing = [p for p in packages if not (deb_dir / p.filename).is_file()]
    if missing:
        with tempfile.TemporaryDirectory(dir=deb_dir, prefix=".download-") as tmp:
            _run(["apt-get", "download", "-q", *(f"{p.name}={p.version}" for p in missing)], cwd=Path(tmp))
            for p in missing:
                # apt-get writes the epoch's ':' as %3a; the pool basename has no epoch at all.
                got = Path(tmp) / f"{p.name}_{p.version.replace(':', '%3a')}_{p.architecture}.deb"
                if not got.is_file():
                    raise FaaspubError(f"apt-get download did not produce {got.name}")
                got.replace(deb_dir / p.filename)
    paths = []
    for p in packages:
        path = deb_dir / p.filename
        if _sha256_file(path) != p.sha256:
            path.unlink()
            raise FaaspubError(f"{p.filename}: SHA256 does not match the apt index (removed; retry)")
        paths.append(path)
    return paths


def _proxy_files(proxy_dir: Path) -> list[Path]:
    if not proxy_dir.is_dir():
        raise FaaspubError(f"action proxy {proxy_dir} not found", hint="build from a faaspub source checkout")
    return sorted(
        p for p in proxy_dir.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


def input_key(packages: tuple[Package, ...], proxy_dir: Path) -> str:
    """A digest of everything that determines the layer: recipe, package checksums, proxy files."""
    sha = hashlib.sha256(f"recipe={RECIPE_VERSION};level={COMPRESSLEVEL}\n".encode())
    for p in packages:
        sha.update(f"{p.name}={p.version}:{p.sha256}\n".encode())
    for path in _proxy_files(proxy_dir):
        sha.update(f"{path.relative_to(proxy_dir).as_posix()}:{_sha256_file(path)}\n".encode())
    return sha.hexdigest()


def assemble_rootfs(debs: list[Path], rootfs: Path, proxy_dir: Path, packages: tuple[Package, ...]) -> None:
    """Unpack ``debs`` into ``rootfs`` and finish it into a runnable python filesystem."""
    # Debian packages never share files (dpkg refuses that), so unpacking them in parallel is safe.
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        list(pool.map(lambda deb: _run(["dpkg-deb", "-x", str(deb), str(rootfs)]), sorted(debs)))
    for rel in _PRUNE:
        shutil.rmtree(rootfs / rel, ignore_errors=True)
    _prune_docs(rootfs / "usr" / "share" / "doc")
    python3 = rootfs / "usr" / "bin" / "python3"
    if not python3.exists():
        python3.symlink_to("python3.11")
    _busybox_applets(rootfs)
    _ca_bundle(rootfs)
    etc = rootfs / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text(PASSWD)
    (etc / "group").write_text(GROUP)
    for name in ("proc", "dev", "sys", "run", "action", "root", "home/app", "var/tmp"):
        (rootfs / name).mkdir(parents=True, exist_ok=True)
    (rootfs / "tmp").mkdir(exist_ok=True)
    os.chmod(rootfs / "tmp", 0o1777)
    opt = rootfs / "opt" / "faaspub" / "faaspub_runtime"
    for src in _proxy_files(proxy_dir):
        dest = opt / src.relative_to(proxy_dir)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    lock = "".join(f"{p.name}={p.version} sha256:{p.sha256}\n" for p in packages)
    (rootfs / "opt" / "faaspub" / "packages.lock").write_text(lock)
    _compile_bytecode(rootfs)


def copyright_licenses(rootfs: Path, packages: tuple[Package, ...]) -> dict[str, list[str]]:
    """The licences each package's machine-readable (DEP-5) copyright file names, by package."""
    found: dict[str, list[str]] = {}
    root = rootfs.resolve()
    for p in packages:
        path = (rootfs / "usr" / "share" / "doc" / p.name / "copyright").resolve()
        # A doc folder may be a symlink to another package's: follow it, but never out of the rootfs.
        if not path.is_relative_to(root) or not path.is_file():
            continue
        names = set()
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("License:") and line[8:].strip():
                names.add(line[8:].strip())
        if names:
            found[p.name] = sorted(names)
    return found


def _compile_bytecode(rootfs: Path) -> None:
    """Ship byte-code: the root is read-only at run time, so without it every cold start recompiles.

    The image's own interpreter compiles (through chroot), with hash-based invalidation because every
    file's mtime is 0 in the layer, one worker and a fixed hash seed so the output is reproducible.
    """
    env = {"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0", "SOURCE_DATE_EPOCH": "0"}
    cmd = [
        shutil.which("chroot") or "/usr/sbin/chroot",
        str(rootfs),
        "/usr/bin/python3",
        "-m",
        "compileall",
        "-q",
        "-j",
        "1",
        "--invalidation-mode",
        "unchecked-hash",
        "/usr/lib/python3.11",
        "/opt/faaspub",
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise FaaspubError(f"compiling the base image's byte-code failed: {result.stderr.strip()[-300:]}")


def _prune_docs(doc: Path) -> None:
    """Keep only the copyright files (licences travel with the binaries)."""
    if not doc.is_dir():
        return
    for pkg in doc.iterdir():
        if pkg.is_dir() and not pkg.is_symlink():
            for item in pkg.iterdir():
                if item.name != "copyright":
                    shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()


def _busybox_applets(rootfs: Path) -> None:
    busybox = rootfs / "bin" / "busybox"
    listing = _run([str(busybox), "--list-full"])
    for rel in sorted(line.strip() for line in listing.splitlines() if line.strip()):
        link = rootfs / rel
        # Never shadow a real program from a package (python, ...), only fill the gaps.
        if link.exists() or link.is_symlink() or (rootfs / "usr" / rel).exists():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")


def _ca_bundle(rootfs: Path) -> None:
    """What ``update-ca-certificates`` would write: every Mozilla root, in a stable order."""
    certs = sorted((rootfs / "usr" / "share" / "ca-certificates").rglob("*.crt"))
    bundle = rootfs / "etc" / "ssl" / "certs" / "ca-certificates.crt"
    bundle.parent.mkdir(parents=True, exist_ok=True)
    bundle.write_bytes(b"".join(c.read_bytes().rstrip(b"\n") + b"\n" for c in certs))
    # OpenSSL's compiled-in default paths (the openssl package would add these links).
    ssl_dir = rootfs / "usr" / "lib" / "ssl"
    ssl_dir.mkdir(parents=True, exist_ok=True)
    for name, target in (("cert.pem", "/etc/ssl/certs/ca-certificates.crt"), ("certs", "/etc/ssl/certs")):
        if not (ssl_dir / name).is_symlink():
            (ssl_dir / name).symlink_to(target)


def _prune_layer_cache(directory: Path, keep: int) -> None:
    metas = sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    # Leave recent entries alone: another build may be pushing from them right now.
    cutoff = time.time() - 600
    for meta in (m for m in metas[keep:] if m.stat().st_mtime < cutoff):
        try:
            digest = json.loads(meta.read_text())["digest"]
        except (OSError, ValueError, KeyError):
            digest = ""
        meta.unlink(missing_ok=True)
        if digest:
            (directory / digest.split(":", 1)[1]).unlink(missing_ok=True)


def base_config(layer: Layer, packages: tuple[Package, ...], key: str) -> ImageConfig:
    """The image config: proxy command, non-root user, /action workdir, port 8080, OCI labels."""
    python = next(p.version for p in packages if p.name == "python3.11")
    config = ImageConfig()
    config.append_layer(layer.diff_id, "faaspub runtime build-base (debx: Debian bookworm packages)")
    config.set_env(
        {
            "LANG": "C.UTF-8",
            "PYTHONPATH": "/opt/faaspub",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    config.set_user(str(APP_UID))
    config.set_workdir("/action")
    config.set_cmd(["python3", "-m", "faaspub_runtime.proxy"])
    config.expose("8080/tcp")
    config.set_labels(
        {
            "org.opencontainers.image.title": "faaspub python 3.11 runtime base",
            "org.opencontainers.image.description": (
                "Python 3.11 from Debian bookworm packages plus the faaspub action proxy"
            ),
            "org.opencontainers.image.version": python,
            "org.opencontainers.image.licenses": "Apache-2.0",
            "org.opencontainers.image.vendor": "faaspub",
            "io.faaspub.runtime": "python:3.11",
            "io.faaspub.base.inputs": f"sha256:{key}",
        }
    )
    return config


def base_document(
    store: ImageStore, tag: str, digest: str, packages: tuple[Package, ...], licenses: dict[str, list[str]]
) -> bytes:
    """The base image's CycloneDX SBOM: every Debian package, with its .deb's SHA256 and licences."""
    subject = sbom.Subject(
        store.reference(BASE_REPOSITORY),
        tag,
        digest,
        datetime.fromisoformat(EPOCH),
        description="faaspub python runtime base (Debian bookworm packages)",
        licenses=("Apache-2.0",),
    )
    debs = [
        sbom.Package("deb", p.name, p.version, tuple(licenses.get(p.name, ())), p.sha256, p.architecture)
        for p in packages
    ]
    return sbom.base_sbom(subject, debs)


def build_base(
    python: str,
    store: ImageStore,
    cache_dir: Path,
    *,
    proxy_dir: Path | None = None,
    tag: str | None = None,
    use_layer_cache: bool = True,
    progress: Progress | None = None,
) -> BaseBuild:
    """Build (or reuse) the base layer for ``python`` and push the image as ``faaspub/python-base:TAG``."""
    say = progress or (lambda _msg: None)
    if python != "3.11":
        raise FaaspubError(
            f"python {python} is not available from Debian bookworm packages (only 3.11 is)",
            hint=f"build runtime-images/python{python}/Dockerfile (official python:{python}-slim) "
            "with buildah/podman, or point apt at a mirror that ships it",
        )
    started = time.monotonic()
    proxy = proxy_dir or default_proxy_dir()
    packages = resolve_packages()
    key = input_key(packages, proxy)
    cache_dir = Path(cache_dir).expanduser()
    meta_path = cache_dir / "base-layers" / f"{key}.json"
    layer: Layer | None = None
    licenses: dict[str, list[str]] = {}
    if use_layer_cache and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        blob = cache_dir / "base-layers" / meta["digest"].split(":", 1)[1]
        licenses = meta.get("licenses", {})
        # Entries from before the SBOM lack the licences: rebuild once (the layer comes out the same).
        if blob.is_file() and blob.stat().st_size == meta["size"] and "licenses" in meta:
            layer = Layer(meta["digest"], meta["diff_id"], meta["size"], meta["media_type"], path=blob)
            say(f"reusing cached base layer {layer.digest[:19]}")
    cached = layer is not None
    if layer is None:
        say(f"fetching {len(packages)} Debian packages")
        debs = fetch_debs(packages, cache_dir / "debs")
        with tempfile.TemporaryDirectory(prefix="faaspub-rootfs-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            rootfs.mkdir()
            say("assembling the root filesystem")
            assemble_rootfs(debs, rootfs, proxy, packages)
            licenses = copyright_licenses(rootfs, packages)
            say("writing the layer")
            fresh = build_layer(
                rootfs,
                "/",
                compresslevel=COMPRESSLEVEL,
                symlinks="keep",
                owners={"home/app": (APP_UID, APP_UID)},
            )
        blob = cache_dir / "base-layers" / fresh.digest.split(":", 1)[1]
        fresh.save(blob)
        fresh.discard()
        layer = Layer(fresh.digest, fresh.diff_id, fresh.size, fresh.media_type, path=blob)
        meta_path.write_text(
            json.dumps(
                {
                    "digest": layer.digest,
                    "diff_id": layer.diff_id,
                    "size": layer.size,
                    "media_type": layer.media_type,
                    "licenses": licenses,
                }
            )
        )
        _prune_layer_cache(cache_dir / "base-layers", keep=KEEP_CACHED_LAYERS)
    config = base_config(layer, packages, key)
    tag = tag or python
    say(f"pushing {store.reference(BASE_REPOSITORY)}:{tag}")
    digest = push_image(store, BASE_REPOSITORY, tag, config, [layer])
    say("attaching the SBOM")
    attach_sbom(store, BASE_REPOSITORY, digest, base_document(store, tag, digest, packages, licenses))
    return BaseBuild(
        repository=BASE_REPOSITORY,
        reference=store.reference(BASE_REPOSITORY),
        tag=tag,
        digest=digest,
        layer_digest=layer.digest,
        size=layer.size + len(config.to_bytes()),
        packages=packages,
        cached=cached,
        seconds=time.monotonic() - started,
        python=python,
        labels=config.labels,
    )
