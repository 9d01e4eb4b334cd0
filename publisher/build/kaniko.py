"""The kaniko builder: the equivalent Dockerfile built by a kaniko executor (GitLab CI runners).

faaspub prepares the context with the dependencies already installed (``deps/``, from the same
cache as the native builder: kaniko cannot bind-mount the host's pip) and calls
``ci-templates/scripts/kaniko-build`` with ``--no-push --oci-layout-path``; the result is copied
into the image store under the content-unique tag, as for buildah. The executor is
``$KANIKO_EXECUTOR`` (default ``/kaniko/executor``): upstream kaniko (archived) or a maintained fork
with the same flags (osscontainertools/kaniko, Chainguard's).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from publisher.build import dockerfile, inputs
from publisher.build.buildah import BuildahBuilder
from publisher.build.deps import Target, install_layer, requirement_lines
from publisher.build.native import base_reference, open_base, prepend_path
from publisher.core.parts import Progress
from publisher.core.types import BuiltImage, FunctionSource
from publisher.errors import FaaspubError
from publisher.oci.image import ImageConfig
from publisher.oci.layout import OciLayout
from publisher.oci.store import parse_reference

SCRIPT = Path(__file__).resolve().parents[2] / "ci-templates" / "scripts" / "kaniko-build"


class KanikoBuilder(BuildahBuilder):
    """:class:`~publisher.core.parts.Builder` delegating the image build to a kaniko executor."""

    name = "kaniko"

    def build(
        self, fn: FunctionSource, version: str, labels: Mapping[str, str], progress: Progress | None = None
    ) -> BuiltImage:
        executor = os.environ.get("KANIKO_EXECUTOR", "/kaniko/executor")
        if not os.access(executor, os.X_OK):
            raise FaaspubError(
                f"kaniko executor {executor} not found",
                hint="run inside a kaniko image (…/executor:*-debug) or set KANIKO_EXECUTOR",
            )
        if fn.manifest.python_version is None:
            raise FaaspubError(
                f"{fn.name}: runtime 'docker' is built by the CI kaniko job or --builder buildah"
            )
        all_labels = inputs.oci_labels(fn, version, labels)
        with tempfile.TemporaryDirectory(prefix="faaspub-kaniko-") as tmp:
            work = Path(tmp)
            context = self._context(fn, version, all_labels, work / "context", progress)
            repository = inputs.repository_path(self.settings, fn)
            proc = subprocess.run(
                [
                    "sh",
                    str(SCRIPT),
                    "--context",
                    str(context.root),
                    "--dockerfile",
                    str(context.dockerfile),
                    "--destination",
                    f"{self.store.reference(repository)}:build",
                    "--digest-file",
                    str(work / "digest"),
                    "--",
                    "--no-push",
                    "--oci-layout-path",
                    str(work / "oci"),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
                raise FaaspubError(f"kaniko build of {fn.name} failed (exit {proc.returncode}):\n{tail}")
            digest = (work / "digest").read_text().strip()
            return self._publish(fn, version, labels, OciLayout(work / "oci"), digest, progress)

    def _context(
        self,
        fn: FunctionSource,
        version: str,
        labels: Mapping[str, str],
        dest: Path,
        progress: Progress | None,
    ) -> dockerfile.Context:
        reference = base_reference(self.settings, fn)
        base = open_base(self.store, reference)
        config = ImageConfig(base.config.doc)
        prepend_path(config, "PYTHONPATH", [inputs.DEPS_DIR])
        requirements = inputs.requirements_file(fn)
        lines = requirement_lines(requirements, fn.root) if requirements else []
        deps_blob = None
        if lines:
            python = fn.manifest.python_version or "3.11"
            target = Target(inputs.DEPS_DIR, python, self.settings.build.python_platform)
            cache = Path(self.settings.build.cache_dir).expanduser()
            layer, _ = install_layer(
                lines, ["-r", str(requirements)], target, cache, "requirements", progress
            )
            deps_blob = layer.path
        ref = parse_reference(reference)
        return dockerfile.prepare(
            fn,
            version,
            dest,
            base=f"{self.store.reference(ref.repository)}@{base.digest}",
            user=str(config.container.get("User") or "0"),
            pythonpath=config.env["PYTHONPATH"],
            labels=labels,
            deps="context",
            deps_layer=deps_blob,
        )
