"""Pinned Debian packages from the mirror apt already uses: resolved, downloaded and checked.

The host's own release (bookworm here) is read through the system's apt as it is. Another release
(trixie, for python 3.13) gets a private apt index under the cache directory, pointed at the same
mirror the system uses: nothing in ``/etc`` changes and no other registry is involved.
"""

from __future__ import annotations

import fcntl
import hashlib
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from publisher.errors import FaaspubError

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# A private index older than this is refreshed (security updates); an offline refresh keeps the old one.
INDEX_MAX_AGE_S = 24 * 3600
# " 500 http://deb.debian.org/debian bookworm/main amd64 Packages" in `apt-cache policy`.
_POLICY_SOURCE = re.compile(r"^\s*-?\d+\s+(\S+://\S+)\s+([\w.-]+)/main\s+(\S+)\s+Packages\s*$")


@dataclass(frozen=True)
class Package:
    """One pinned Debian package: the apt candidate and the checksum its .deb must have."""

    name: str
    version: str
    architecture: str
    filename: str  # basename in the pool
    sha256: str


def run(cmd: list[str], cwd: Path | None = None) -> str:
    """Run ``cmd``; a missing tool or a failure is a :class:`FaaspubError` with the end of its output."""
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


@dataclass(frozen=True)
class AptIndex:
    """The apt options that read one Debian release: none for the host's own, a private index else."""

    suite: str
    options: tuple[str, ...] = ()

    def apt(self, tool: str, *args: str) -> list[str]:
        return [tool, *self.options, *args]


def system_sources() -> dict[str, str]:
    """``{suite: mirror URI}`` of every Debian suite the system's apt reads (from ``apt-cache policy``)."""
    found: dict[str, str] = {}
    for line in run(["apt-cache", "policy"]).splitlines():
        match = _POLICY_SOURCE.match(line)
        if match:
            found.setdefault(match.group(2), match.group(1))
    return found


def apt_index(suite: str, cache_dir: Path) -> AptIndex:
    """An index of ``suite``: the system's when apt already reads it, else a private one on its mirror."""
    sources = system_sources()
    if suite in sources:
        return AptIndex(suite)
    host = next((s for s in sources if "-" not in s), None)
    if host is None:
        raise FaaspubError(
            f"cannot build from Debian {suite}: apt reads no Debian release to take the mirror from",
            hint="run on Debian with the Debian archive in /etc/apt/sources.list(.d)",
        )
    mirror = sources[host]
    security = sources.get(f"{host}-security", mirror.rstrip("/") + "-security")
    root = cache_dir / "apt" / suite
    for sub in ("lists/partial", "archives/partial"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "status").touch()
    (root / "sources.list").write_text(
        f"deb [signed-by={KEYRING}] {mirror} {suite} {suite}-updates main\n"
        f"deb [signed-by={KEYRING}] {security} {suite}-security main\n"
    )
    settings = {
        "Dir::Etc::SourceList": root / "sources.list",
        "Dir::Etc::SourceParts": "/nonexistent",
        "Dir::State::Lists": root / "lists",
        "Dir::State::Status": root / "status",
        "Dir::Cache": root,
        "Dir::Cache::Archives": root / "archives",
    }
    index = AptIndex(suite, tuple(part for k, v in settings.items() for part in ("-o", f"{k}={v}")))
    _refresh(index, root / "lists")
    return index


def _refresh(index: AptIndex, lists: Path) -> None:
    with open(lists.parent / "refresh.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # apt itself refuses a second concurrent update
        newest = max((p.stat().st_mtime for p in lists.glob("*_Packages*")), default=0.0)
        if time.time() - newest < INDEX_MAX_AGE_S:
            return
        try:
            run(index.apt("apt-get", "-q", "update"))
        except FaaspubError:
            if not newest:
                raise  # nothing to fall back on
            # Offline: the index from the last refresh still names packages with their checksums.


def resolve_packages(
    names: tuple[str, ...] | list[str], index: AptIndex | None = None
) -> tuple[Package, ...]:
    """The apt candidate of every package (version, pool file, SHA256), sorted by name."""
    out = run((index or AptIndex("")).apt("apt-cache", "show", "--no-all-versions", *names))
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
        suite = index.suite if index and index.suite else "bookworm"
        raise FaaspubError(
            f"apt knows no candidate for {', '.join(missing)}", hint=f"run apt-get update ({suite} sources)"
        )
    return tuple(sorted(found.values(), key=lambda p: p.name))


def sha256_file(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            sha.update(chunk)
    return sha.hexdigest()


def fetch_debs(packages: tuple[Package, ...], deb_dir: Path, index: AptIndex | None = None) -> list[Path]:
    """The verified .deb of every package, downloading (``apt-get download``) only what is missing."""
    deb_dir.mkdir(parents=True, exist_ok=True)
    missing = [p for p in packages if not (deb_dir / p.filename).is_file()]
    if missing:
        with tempfile.TemporaryDirectory(dir=deb_dir, prefix=".download-") as tmp:
            args = ("download", "-q", *(f"{p.name}={p.version}" for p in missing))
            run((index or AptIndex("")).apt("apt-get", *args), cwd=Path(tmp))
            for p in missing:
                # apt-get writes the epoch's ':' as %3a; the pool basename has no epoch at all.
                got = Path(tmp) / f"{p.name}_{p.version.replace(':', '%3a')}_{p.architecture}.deb"
                if not got.is_file():
                    raise FaaspubError(f"apt-get download did not produce {got.name}")
                got.replace(deb_dir / p.filename)
    paths = []
    for p in packages:
        path = deb_dir / p.filename
        if sha256_file(path) != p.sha256:
            path.unlink()
            raise FaaspubError(f"{p.filename}: SHA256 does not match the apt index (removed; retry)")
        paths.append(path)
    return paths
