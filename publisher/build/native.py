"""The native builder: appends a dependencies layer and a code layer to the runtime base image.

Nothing runs inside the image. pip resolves wheels for the image's Python and platform on the build
host (:mod:`publisher.build.deps`), the code layer is a deterministic tar of the function folder
plus ``/action/.faaspub/handler.json``, and only blobs the store lacks are uploaded
(:func:`publisher.oci.transfer.push_image`). The same commit therefore always gives the same image
digest, and a code-only change uploads one small layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from publisher.build import inputs
from publisher.build.deps import Target, install_layer, installed, requirement_lines
from publisher.build.testimage import TESTED_IMAGE_LABEL
from publisher.config import Settings
from publisher.core.parts import Progress
from publisher.core.types import BuiltImage, FunctionSource, ImageRef
from publisher.errors import FaaspubError
from publisher.oci.image import ImageConfig, Manifest, sha256_digest
from publisher.oci.layer import Layer, build_layer
from publisher.oci.store import ImageStore, open_store, parse_reference
from publisher.oci.transfer import Image as BaseImage
from publisher.oci.transfer import fetch_image, push_image
from publisher.provenance import sbom
from publisher.provenance.attest import attached
from publisher.provenance.facts import source_of, subject_of
from publisher.runtime.base import BASE_REPOSITORY

TEST_RUNNER = "pytest"


@dataclass(frozen=True)
class Assembled:
    """One image ready to push: base, config (listing every diff_id) and the new layers."""

    base: BaseImage
    config: ImageConfig
    layers: tuple[Layer, ...]

    @property
    def manifest(self) -> Manifest:
        # The same document push_image writes, so its digest is known before pushing (for the tag).
        return Manifest(
            self.config.descriptor(), (*self.base.manifest.layers, *(x.descriptor for x in self.layers))
        )

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest.to_bytes())

    @property
    def size(self) -> int:
        manifest = self.manifest
        return manifest.config.size + sum(d.size for d in manifest.layers)


@dataclass(frozen=True)
class Plan:
    """The shipped image and its test image, computed but not yet pushed."""

    image: Assembled
    test_image: Assembled
    cached_layers: int  # dependency layers taken from the local cache (pip did not run)
    packages: tuple[sbom.Package, ...] = ()  # the Python distributions in the shipped image


def base_reference(settings: Settings, fn: FunctionSource) -> str:
    """The runtime base for ``fn``: ``registry.base_image`` (``{python}`` filled in), by default
    ``faaspub/python-base:<python>`` in the same store (what ``build_base`` pushes)."""
    python = fn.manifest.python_version
    if python is None:
        raise FaaspubError(
            f"{fn.name}: runtime 'docker' builds from the function's own Dockerfile",
            hint="use --builder buildah (or kaniko in CI) for runtime: docker",
        )
    return (settings.registry.base_image or f"{BASE_REPOSITORY}:{{python}}").replace("{python}", python)


def open_base(store: ImageStore, reference: str) -> BaseImage:
    """Read and verify the base (digests are checked on read; a pinned digest must match)."""
    ref = parse_reference(reference)
    if ref.registry and ref.registry != store.name:
        raise FaaspubError(
            f"base image {reference} is not in {store.name}, where function images go",
            hint="push the base to the same registry (faaspub builds mount its layers, never copy them)",
        )
    base = fetch_image(store, ref.repository, ref.ref)
    if ref.digest and base.digest != ref.digest:
        raise FaaspubError(f"base image {reference}: manifest digest is {base.digest}, expected {ref.digest}")
    return base


def prepend_path(config: ImageConfig, name: str, entries: list[str]) -> None:
    """Put ``entries`` first in a path-like variable (``PYTHONPATH``), keeping what the base set."""
    current = [p for p in config.env.get(name, "").split(":") if p and p not in entries]
    config.set_env({name: ":".join([*entries, *current])})


class NativeBuilder:
    """:class:`~publisher.core.parts.Builder` that writes image layers itself (no daemon, no privileges)."""

    name = "native"

    def __init__(self, settings: Settings, store: ImageStore | None = None, push: bool = True) -> None:
        self.settings = settings
        self.store = store or open_store(settings)
        self.push = push
        self.cache_dir = Path(settings.build.cache_dir).expanduser()

    def plan(
        self, fn: FunctionSource, version: str, labels: Mapping[str, str], progress: Progress | None = None
    ) -> Plan:
        """Build every layer and config of the function image and its test image, without pushing."""
        base = open_base(self.store, base_reference(self.settings, fn))
        python = fn.manifest.python_version
        assert python is not None  # base_reference refused runtime: docker
        layers: list[tuple[Layer, str]] = []
        cached = 0
        packages: tuple[sbom.Package, ...] = ()
        requirements = inputs.requirements_file(fn)
        if requirements is not None and requirement_lines(requirements, fn.root):
            deps, hit = self._deps(fn, requirements, [], inputs.DEPS_DIR, python, "requirements", progress)
            layers.append((deps, f"pip install --target {inputs.DEPS_DIR} -r {requirements.name}"))
            cached += hit
            packages = installed(
                requirement_lines(requirements, fn.root), self._target(python), self.cache_dir
            )
        code = build_layer(self._code_entries(fn, version), inputs.ACTION_DIR)
        layers.append((code, f"COPY . {inputs.ACTION_DIR} (with {inputs.HANDLER_CONFIG})"))
        image = self._assemble(base, fn, version, labels, layers, [inputs.DEPS_DIR])

        (test_deps, *tests), hit = self.test_layers(fn, progress)
        cached += hit
        test_labels = {**labels, TESTED_IMAGE_LABEL: image.digest}
        # pytest goes below the code: engines stack layers as a chain, so a layer above a changed one
        # is unpacked again, and a code-only change should not cost a second pytest unpacking.
        test_image = self._assemble(
            base,
            fn,
            version,
            test_labels,
            [*layers[:-1], test_deps, layers[-1], *tests],
            [inputs.TEST_DEPS_DIR, inputs.DEPS_DIR],
        )
        return Plan(image, test_image, cached, packages)

    def test_layers(
        self, fn: FunctionSource, progress: Progress | None = None
    ) -> tuple[list[tuple[Layer, str]], int]:
        """The layers a test image adds: pytest plus test requirements, and the tests folder."""
        python = fn.manifest.python_version or "3.11"
        test_deps, hit = self._deps(
            fn,
            inputs.test_requirements_file(fn),
            [TEST_RUNNER],
            inputs.TEST_DEPS_DIR,
            python,
            "test requirements",
            progress,
        )
        layers = [(test_deps, f"pip install --target {inputs.TEST_DEPS_DIR} {TEST_RUNNER}")]
        test_files = inputs.test_files(fn)
        if test_files:
            layers.append((build_layer(dict(test_files), inputs.ACTION_DIR), "COPY tests (test image only)"))
        return layers, hit

    def push_test_image(
        self,
        fn: FunctionSource,
        version: str,
        built: ImageRef,
        labels: Mapping[str, str],
        progress: Progress | None = None,
        repository: str | None = None,
    ) -> ImageRef:
        """Append the test layers to an already pushed image (built by buildah or kaniko, or given to
        ``faaspub test --image``) in ``repository`` (default: the function's own)."""
        repository = repository or inputs.repository_path(self.settings, fn)
        image = fetch_image(self.store, repository, built.digest)
        layers, _ = self.test_layers(fn, progress)
        test_labels = {**labels, TESTED_IMAGE_LABEL: image.digest}
        test = self._assemble(image, fn, version, test_labels, layers, [inputs.TEST_DEPS_DIR])
        tag = inputs.test_tag(built.tag)
        push_image(self.store, repository, tag, test.config, test.layers, test.base)
        return ImageRef(built.repository, tag, test.digest)

    def build(
        self, fn: FunctionSource, version: str, labels: Mapping[str, str], progress: Progress | None = None
    ) -> BuiltImage:
        plan = self.plan(fn, version, labels, progress)
        repository = inputs.repository_path(self.settings, fn)
        name = self.store.reference(repository)
        tag = inputs.content_tag(version, plan.image.digest)
        test_tag = inputs.test_tag(tag)
        reused = 0
        if self.push:
            if progress:
                progress(f"pushing {name}:{tag}")
            reused = sum(self.store.has_blob(repository, d.digest) for d in plan.image.manifest.layers)
            for assembled, assembled_tag in ((plan.image, tag), (plan.test_image, test_tag)):
                pushed = push_image(
                    self.store, repository, assembled_tag, assembled.config, assembled.layers, assembled.base
                )
                if pushed != assembled.digest:
                    raise FaaspubError(
                        f"{name}:{assembled_tag}: store recorded {pushed}, built {assembled.digest}"
                    )
        base = plan.image.base
        return BuiltImage(
            ref=ImageRef(name, tag, plan.image.digest),
            size=plan.image.size,
            builder=self.name,
            layers=len(plan.image.manifest.layers),
            layers_reused=reused,
            test_ref=ImageRef(name, test_tag, plan.test_image.digest),
            sbom=self.sbom(fn, version, plan, name),
            base=f"{self.store.reference(base.repository)}@{base.digest}",
        )

    def sbom(self, fn: FunctionSource, version: str, plan: Plan, name: str) -> bytes:
        """The image's CycloneDX SBOM from what :meth:`plan` assembled: the base's own SBOM (when
        the base carries one), the distributions pip installed, and the function at its commit."""
        base = plan.image.base
        documents = attached(self.store, base.repository, base.digest).sboms
        base_tag = parse_reference(base_reference(self.settings, fn)).tag or "latest"
        packages = sbom.packages_of(documents[-1]) if documents else ()
        base_info = sbom.BaseImage(self.store.reference(base.repository), base_tag, base.digest, packages)
        subject = subject_of(fn, version, name, plan.image.digest)
        return sbom.image_sbom(subject, source_of(fn, version), base_info, plan.packages)

    def _deps(
        self,
        fn: FunctionSource,
        requirements: Path | None,
        packages: list[str],
        prefix: str,
        python: str,
        what: str,
        progress: Progress | None,
    ) -> tuple[Layer, int]:
        lines = requirement_lines(requirements, fn.root) if requirements else []
        args = ["-r", str(requirements)] if requirements else []
        layer, hit = install_layer(
            [*lines, *packages],
            [*args, *packages],
            self._target(python, prefix),
            self.cache_dir,
            what,
            progress,
        )
        return layer, int(hit)

    def _target(self, python: str, prefix: str = inputs.DEPS_DIR) -> Target:
        return Target(prefix, python, self.settings.build.python_platform)

    @staticmethod
    def _code_entries(fn: FunctionSource, version: str) -> dict[str, Path | bytes]:
        entries: dict[str, Path | bytes] = dict(inputs.code_files(fn))
        entries[inputs.HANDLER_CONFIG] = inputs.handler_config_bytes(fn, version)
        return entries

    @staticmethod
    def _assemble(
        base: BaseImage,
        fn: FunctionSource,
        version: str,
        labels: Mapping[str, str],
        layers: list[tuple[Layer, str]],
        pythonpath: list[str],
    ) -> Assembled:
        config = ImageConfig(base.config.doc)
        config.set_created(inputs.rfc3339(inputs.created(fn)))
        for layer, created_by in layers:
            config.append_layer(layer.diff_id, f"faaspub native: {created_by}")
        prepend_path(config, "PYTHONPATH", pythonpath)
        config.set_workdir(inputs.ACTION_DIR)
        # The base's org.opencontainers.image.* labels describe the base, not the function.
        kept = {k: v for k, v in config.labels.items() if not k.startswith("org.opencontainers.image.")}
        config.container["Labels"] = {**kept, **inputs.oci_labels(fn, version, labels)}
        return Assembled(base, config, tuple(layer for layer, _ in layers))
