"""The python runtime base image, assembled offline from Debian packages (the "debx" method).

Pinned ``.deb`` files (the apt candidates, checked against their SHA256) are unpacked with
``dpkg-deb -x`` into a root filesystem, tidied (no docs, man pages or locales), given busybox
applets, users ``root`` and ``app`` (uid 1000), the CA bundle and the action proxy, then written as
one deterministic layer. The same package versions and proxy files always give the same digest; the
built layer is cached under ``cache_dir`` keyed by exactly those inputs.

Python 3.11 comes from Debian bookworm, 3.13 from trixie (:data:`RECIPES`); both from the Debian
mirror apt already uses. :func:`ensure_base` builds a missing base on first use.
"""

from __future__ import annotations

import fcntl
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

from publisher.config import Settings
from publisher.errors import FaaspubError
from publisher.oci.image import EPOCH, ImageConfig
from publisher.oci.layer import Layer, build_layer
from publisher.oci.store import ImageStore, open_store
from publisher.oci.transfer import push_image
from publisher.provenance import sbom
from publisher.provenance.attest import attach_sbom
from publisher.runtime.debian import (
    Package,
    apt_index,
    fetch_debs,
    resolve_packages,
    run,
    sha256_file,
)

BASE_REPOSITORY = "faaspub/python-base"
# Bump when the recipe changes in a way the inputs below do not capture.
RECIPE_VERSION = "2"
# gzip -1: ~4x faster than -6 for a layer only ~10% larger (19 vs 21 MB).
COMPRESSLEVEL = 1
APP_UID = 1000
# Cached base layers kept (each ~20 MB); older ones go when a new one is written.
KEEP_CACHED_LAYERS = 6

# The libraries every python base needs besides the interpreter's own packages.
_COMMON = (
    "libc6",
    "libgcc-s1",
    "zlib1g",
    "libexpat1",
    "libbz2-1.0",
    "libcrypt1",
    "libffi8",
    "liblzma5",
    "libncursesw6",
    "libtinfo6",
    "readline-common",
    "libsqlite3-0",
    "libuuid1",
    "media-types",
    "tzdata",
    "python3-minimal",
    "python3",
    "libpython3-stdlib",
    "busybox-static",
    "ca-certificates",
    # manylinux wheels (numpy, h5py, …) link against the C++ runtime.
    "libstdc++6",
)


def _interpreter(python: str) -> tuple[str, ...]:
    return (
        f"libpython{python}-minimal",
        f"libpython{python}-stdlib",
        f"python{python}-minimal",
        f"python{python}",
    )


@dataclass(frozen=True)
class Recipe:
    """Which Debian release a python version comes from, and the packages of its root filesystem."""

    python: str
    suite: str
    packages: tuple[str, ...]
    # trixie's packages ship everything under /usr and leave the /bin, /lib … links to base-files.
    merged_usr: bool = False


RECIPES = {
    "3.11": Recipe(
        "3.11",
        "bookworm",
        (
            *_COMMON,
            *_interpreter("3.11"),
            "gcc-12-base",
            "libssl3",
            "libdb5.3",
            "libreadline8",
            # the nis module of 3.11 (removed in 3.13) and its Kerberos libraries
            "libnsl2",
            "libtirpc3",
            "libtirpc-common",
            "libgssapi-krb5-2",
            "libk5crypto3",
            "libkeyutils1",
            "libkrb5-3",
            "libkrb5support0",
            "libcom-err2",
        ),
    ),
    "3.13": Recipe(
        "3.13",
        "trixie",
        (
            *_COMMON,
            *_interpreter("3.13"),
            "gcc-14-base",
            "libssl3t64",
            "openssl-provider-legacy",
            "libzstd1",
            "libdb5.3t64",
            "libreadline8t64",
            "netbase",
        ),
        merged_usr=True,
    ),
}
# The bookworm package set, for tools built on the 3.11 base (runtime-images/tools).
PACKAGES = RECIPES["3.11"].packages

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
    suite: str = "bookworm"

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
        sha.update(f"{path.relative_to(proxy_dir).as_posix()}:{sha256_file(path)}\n".encode())
    return sha.hexdigest()


def assemble_rootfs(
    debs: list[Path],
    rootfs: Path,
    proxy_dir: Path,
    packages: tuple[Package, ...],
    recipe: Recipe = RECIPES["3.11"],
) -> None:
    """Unpack ``debs`` into ``rootfs`` and finish it into a runnable python filesystem."""
    # Debian packages never share files (dpkg refuses that), so unpacking them in parallel is safe.
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        list(pool.map(lambda deb: run(["dpkg-deb", "-x", str(deb), str(rootfs)]), sorted(debs)))
    if recipe.merged_usr:
        for name in ("bin", "sbin", "lib", "lib64"):
            if (rootfs / "usr" / name).is_dir() and not (rootfs / name).exists():
                (rootfs / name).symlink_to(f"usr/{name}")
    for rel in _PRUNE:
        shutil.rmtree(rootfs / rel, ignore_errors=True)
    _prune_docs(rootfs / "usr" / "share" / "doc")
    python3 = rootfs / "usr" / "bin" / "python3"
    if not python3.exists():
        python3.symlink_to(f"python{recipe.python}")
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
    _compile_bytecode(rootfs, recipe.python)


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


def _compile_bytecode(rootfs: Path, python: str) -> None:
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
        f"/usr/lib/python{python}",
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
    listing = run([str(busybox), "--list-full"])
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


def base_config(
    layer: Layer, packages: tuple[Package, ...], key: str, recipe: Recipe = RECIPES["3.11"]
) -> ImageConfig:
    """The image config: proxy command, non-root user, /action workdir, port 8080, OCI labels."""
    python = recipe.python
    version = next(p.version for p in packages if p.name == f"python{python}")
    config = ImageConfig()
    config.append_layer(layer.diff_id, f"faaspub runtime build-base (debx: Debian {recipe.suite} packages)")
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
            "org.opencontainers.image.title": f"faaspub python {python} runtime base",
            "org.opencontainers.image.description": (
                f"Python {python} from Debian {recipe.suite} packages plus the faaspub action proxy"
            ),
            "org.opencontainers.image.version": version,
            "org.opencontainers.image.licenses": "Apache-2.0",
            "org.opencontainers.image.vendor": "faaspub",
            "io.faaspub.runtime": f"python:{python}",
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


def recipe_for(python: str) -> Recipe:
    """The Debian recipe of ``python``; other versions need an image from an outside registry."""
    recipe = RECIPES.get(python)
    if recipe is None:
        offline = " and ".join(RECIPES)
        raise FaaspubError(
            f"python {python} is not available from Debian packages (python {offline} are)",
            hint=f"build runtime-images/python{python}/Dockerfile (official python:{python}-slim, from "
            "Docker Hub) with buildah/podman and push it as faaspub/python-base, or set registry.base_image",
        )
    return recipe


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
    recipe = recipe_for(python)
    started = time.monotonic()
    proxy = proxy_dir or default_proxy_dir()
    cache_dir = Path(cache_dir).expanduser()
    index = apt_index(recipe.suite, cache_dir)
    packages = resolve_packages(recipe.packages, index)
    key = input_key(packages, proxy)
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
        say(f"fetching {len(packages)} Debian {recipe.suite} packages")
        debs = fetch_debs(packages, cache_dir / "debs", index)
        with tempfile.TemporaryDirectory(prefix="faaspub-rootfs-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            rootfs.mkdir()
            say("assembling the root filesystem")
            assemble_rootfs(debs, rootfs, proxy, packages, recipe)
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
    config = base_config(layer, packages, key, recipe)
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
        suite=recipe.suite,
    )


def ensure_base(settings: Settings, python: str, progress: Progress | None = None) -> BaseBuild | None:
    """Build the default runtime base for ``python`` when the image store lacks it (first use).

    Nothing to do when the operator names their own base (``registry.base_image``) or the store
    has it; several processes arriving at once build it once (a lock in the cache directory).
    """
    if settings.registry.base_image:
        return None
    store = open_store(settings)
    if python in store.tags(BASE_REPOSITORY):
        return None
    recipe_for(python)  # a runtime that needs an outside registry fails here, before any work
    cache_dir = Path(settings.build.cache_dir).expanduser()
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f"base-{python}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python in store.tags(BASE_REPOSITORY):
            return None  # another process built it while this one waited
        if progress:
            progress(f"preparing the python {python} runtime base from Debian packages (first use)")
        return build_base(python, store, cache_dir, progress=progress)
