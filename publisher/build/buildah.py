"""The buildah builder: ``buildah bud`` of the equivalent Dockerfile, or of the function's own one.

For ``runtime: python:*`` faaspub renders ``runtime-images/templates/function.Dockerfile.j2``
(dependencies installed by ``pip`` inside the image); for ``runtime: docker`` the repository's own
Dockerfile is built as is (its RUN steps run, chroot isolation, host network). buildah pushes the
result into a private OCI layout (``--digestfile`` gives the digest), and faaspub copies it into the
image store under the content-unique tag, so a tag never names anything else.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from publisher.build import dockerfile, inputs
from publisher.build.native import NativeBuilder, base_reference, open_base, prepend_path
from publisher.config import Settings
from publisher.core.parts import Progress
from publisher.core.types import BuiltImage, FunctionSource, ImageRef
from publisher.errors import FaaspubError
from publisher.oci.image import ImageConfig, Manifest
from publisher.oci.layout import OciLayout
from publisher.oci.store import ImageStore, open_store, parse_reference

BUILD_TIMEOUT_S = 1800


def run_tool(args: Sequence[str], what: str, timeout: float = BUILD_TIMEOUT_S) -> str:
    """Run a build tool; a failure is a :class:`FaaspubError` with the tool's last lines of output."""
    exe = shutil.which(args[0])
    if exe is None:
        raise FaaspubError(
            f"{args[0]} is not installed", hint=f"install {args[0]} or choose another --builder"
        )
    try:
        proc = subprocess.run([exe, *args[1:]], capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise FaaspubError(f"{what} did not finish within {timeout:.0f}s") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise FaaspubError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout


def copy_into_store(layout: OciLayout, digest: str, store: ImageStore, repository: str, tag: str) -> int:
    """Copy the manifest ``digest`` of ``layout`` with its blobs to ``store`` as ``repository:tag``.

    Returns how many layers ``store`` already had. The manifest bytes are copied verbatim, so the
    digest stays the one the build tool reported.
    """
    fetched = layout.get_manifest(repository, digest)
    manifest = Manifest.parse(fetched.data)
    reused = 0
    for desc in manifest.layers:
        if store.has_blob(repository, desc.digest):
            reused += 1
        else:
            store.put_blob(
                repository,
                layout.download_blob(repository, desc.digest, _scratch(layout, desc.digest)),
                desc.digest,
            )
    store.put_blob(repository, layout.get_blob(repository, manifest.config.digest), manifest.config.digest)
    store.put_manifest(repository, tag, fetched.data, fetched.media_type or manifest.media_type)
    return reused


def _scratch(layout: OciLayout, digest: str) -> Path:
    return layout.root.parent / f"copy-{digest[7:19]}"


class BuildahBuilder:
    """:class:`~publisher.core.parts.Builder` running ``buildah bud`` (daemonless, chroot isolation)."""

    name = "buildah"

    def __init__(self, settings: Settings, store: ImageStore | None = None, push: bool = True) -> None:
        self.settings = settings
        self.store = store or open_store(settings)
        self.push = push

    def _registry_args(self) -> list[str]:
        args = []
        if self.settings.registry.insecure:
            args.append("--tls-verify=false")
        authfile = Path(self.settings.registry.credentials_file).expanduser()
        if authfile.is_file():
            args += ["--authfile", str(authfile)]
        return args

    def build(
        self, fn: FunctionSource, version: str, labels: Mapping[str, str], progress: Progress | None = None
    ) -> BuiltImage:
        all_labels = inputs.oci_labels(fn, version, labels)
        with tempfile.TemporaryDirectory(prefix="faaspub-buildah-") as tmp:
            work = Path(tmp)
            if fn.manifest.runtime == "docker":
                context, file, label_args = self._own_dockerfile(fn, all_labels)
            else:
                context, file = self._rendered(fn, version, all_labels, work / "context")
                label_args = []
            local = f"localhost/faaspub-build/{fn.name}:{os.getpid()}-{work.name[-8:]}"
            if progress:
                progress(f"buildah bud {file.name} ({fn.name} {version})")
            run_tool(
                [
                    "buildah",
                    "bud",
                    "--isolation",
                    "chroot",
                    "--layers=false",
                    "--network",
                    "host",
                    "--timestamp",
                    str(int(inputs.created(fn).timestamp())),
                    *self._registry_args(),
                    *label_args,
                    "-f",
                    str(file),
                    "-t",
                    local,
                    str(context),
                ],
                f"buildah bud of {fn.name}",
            )
            try:
                digest_file = work / "digest"
                run_tool(
                    [
                        "buildah",
                        "push",
                        "--quiet",
                        "--digestfile",
                        str(digest_file),
                        local,
                        f"oci:{work / 'oci'}:image",
                    ],
                    f"buildah push of {fn.name}",
                )
            finally:
                subprocess.run(["buildah", "rmi", "--force", local], capture_output=True, check=False)
            digest = digest_file.read_text().strip()
            return self._publish(fn, version, labels, OciLayout(work / "oci"), digest, progress)

    def _rendered(
        self, fn: FunctionSource, version: str, labels: Mapping[str, str], dest: Path
    ) -> tuple[Path, Path]:
        reference = base_reference(self.settings, fn)
        base = open_base(self.store, reference)
        config = ImageConfig(base.config.doc)
        prepend_path(config, "PYTHONPATH", [inputs.DEPS_DIR])
        ref = parse_reference(reference)
        pinned = f"{self.store.reference(ref.repository)}@{base.digest}"
        context = dockerfile.prepare(
            fn,
            version,
            dest,
            base=pinned,
            user=str(config.container.get("User") or "0"),
            pythonpath=config.env["PYTHONPATH"],
            labels=labels,
            deps="pip",
        )
        return context.root, context.dockerfile

    @staticmethod
    def _own_dockerfile(fn: FunctionSource, labels: Mapping[str, str]) -> tuple[Path, Path, list[str]]:
        # The same refusals as the native build: no symlinks, nothing outside the folder.
        inputs.collect_files(fn.root)
        file = fn.root / "Dockerfile"
        if not file.is_file():
            raise FaaspubError(f"runtime: docker needs a Dockerfile in {fn.root}")
        label_args = [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]
        return fn.root, file, label_args

    def _publish(
        self,
        fn: FunctionSource,
        version: str,
        labels: Mapping[str, str],
        layout: OciLayout,
        digest: str,
        progress: Progress | None,
    ) -> BuiltImage:
        repository = inputs.repository_path(self.settings, fn)
        tag = inputs.content_tag(version, digest)
        name = self.store.reference(repository)
        manifest = Manifest.parse(layout.get_manifest("image", digest).data)
        size = manifest.config.size + sum(d.size for d in manifest.layers)
        if not self.push:
            return BuiltImage(ImageRef(name, tag, digest), size, self.name, len(manifest.layers))
        if progress:
            progress(f"pushing {name}:{tag}")
        reused = copy_into_store(layout, digest, self.store, repository, tag)
        ref = ImageRef(name, tag, digest)
        # Also for runtime: docker, whose own image must be able to run its tests (python3 -m pytest
        # or tests.command): a function is never published with its suite skipped.
        test_ref = NativeBuilder(self.settings, self.store).push_test_image(
            fn, version, ref, labels, progress
        )
        return BuiltImage(ref, size, self.name, len(manifest.layers), reused, test_ref)
