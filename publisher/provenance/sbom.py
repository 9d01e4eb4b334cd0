"""CycloneDX 1.6 SBOMs of what the builders assembled, written with cyclonedx-python-lib.

The runtime base gets its own SBOM (the Debian packages :mod:`publisher.runtime.base` unpacked,
attached to the base image); a function image's SBOM lists the base and its packages, the Python
distributions pip installed into the dependency layer, and the function itself with its commit.
Documents are deterministic (serial number derived from the image digest, timestamp = the image's
creation time), so rebuilding a commit attaches the same SBOM again, and every document is checked
against the CycloneDX 1.6 JSON schema before it is attached to an image.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any, Literal

from cyclonedx.contrib.license.factories import InvalidSpdxLicenseException, LicenseFactory
from cyclonedx.model import ExternalReference, ExternalReferenceType, HashAlgorithm, HashType, Property, XsUri
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

from publisher import __version__
from publisher.errors import FaaspubError

MEDIA_TYPE = "application/vnd.cyclonedx+json"
DEBIAN_DISTRO = "debian-12"
_UUID_NAMESPACE = uuid.UUID("6f1c8a52-3d0e-4b5f-9a7e-0c2b1f4d8e21")  # faaspub's namespace for SBOM serials


@dataclass(frozen=True)
class Package:
    """One installed package, as the builder that installed it knows it."""

    kind: Literal["deb", "pypi"]
    name: str
    version: str
    licenses: tuple[str, ...] = ()
    sha256: str | None = None  # of the .deb or the wheel
    arch: str | None = None
    url: str | None = None  # where it was downloaded from

    @property
    def purl(self) -> PackageURL:
        if self.kind == "deb":
            qualifiers = {"distro": DEBIAN_DISTRO, **({"arch": self.arch} if self.arch else {})}
            return PackageURL("deb", "debian", self.name, self.version, qualifiers)
        return PackageURL("pypi", None, self.name.lower().replace("_", "-"), self.version)

    def to_json(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items() if v}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Package:
        return cls(**{**doc, "licenses": tuple(doc.get("licenses") or ())})


@dataclass(frozen=True)
class Subject:
    """The image an SBOM describes."""

    name: str  # repository, e.g. "127.0.0.1:5000/functions/fs-sc/hello" or "faaspub/python-base"
    version: str
    digest: str  # sha256:… of the manifest
    created: datetime
    description: str | None = None
    licenses: tuple[str, ...] = ()


@dataclass(frozen=True)
class Source:
    """The function's own code: where it lives and which commit was built."""

    name: str
    version: str
    commit: str | None = None
    url: str | None = None
    licenses: tuple[str, ...] = ()


@dataclass(frozen=True)
class BaseImage:
    """The runtime base an image was built on, with the packages its own SBOM lists."""

    name: str
    version: str
    digest: str
    packages: tuple[Package, ...] = field(default_factory=tuple)


def _licenses(names: Iterable[str]) -> list[Any]:
    """One name: an SPDX id, an SPDX expression or a free-text name (Debian's "GPL-2+").

    Several: CycloneDX allows one expression or any number of single licences, so each becomes a
    single licence (by SPDX id where it is one)."""
    unique = sorted({n.strip() for n in names if n.strip()})
    factory = LicenseFactory()
    if len(unique) == 1:
        return [factory.make_from_string(unique[0])]
    found: list[Any] = []
    for name in unique:
        try:
            found.append(factory.make_with_id(name))
        except InvalidSpdxLicenseException:
            found.append(factory.make_with_name(name))
    return found


def _sha256(hexdigest: str | None) -> list[HashType]:
    return [HashType(alg=HashAlgorithm.SHA_256, content=hexdigest)] if hexdigest else []


def _image_purl(name: str, digest: str) -> PackageURL:
    repository = name.split("/")
    return PackageURL(
        "oci", None, repository[-1].lower(), digest, {"repository_url": name} if "/" in name else None
    )


def _package_component(package: Package) -> Component:
    references = []
    if package.url:
        references.append(ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(package.url)))
    return Component(
        name=package.name,
        version=package.version,
        type=ComponentType.LIBRARY,
        bom_ref=str(package.purl),
        purl=package.purl,
        licenses=_licenses(package.licenses),
        hashes=_sha256(package.sha256),
        external_references=references,
    )


def _image_component(subject: Subject) -> Component:
    return Component(
        name=subject.name,
        version=subject.version,
        type=ComponentType.CONTAINER,
        bom_ref=subject.digest,
        purl=_image_purl(subject.name, subject.digest),
        hashes=_sha256(subject.digest.removeprefix("sha256:")),
        description=subject.description,
        licenses=_licenses(subject.licenses),
    )


def _source_component(source: Source) -> Component:
    references = []
    if source.url and source.url.startswith(("https://", "http://")):
        references.append(ExternalReference(type=ExternalReferenceType.VCS, url=XsUri(source.url)))
    properties = [Property(name="faaspub:commit", value=source.commit)] if source.commit else []
    return Component(
        name=source.name,
        version=source.version,
        type=ComponentType.APPLICATION,
        bom_ref=f"function:{source.name}@{source.version}",
        licenses=_licenses(source.licenses),
        external_references=references,
        properties=properties,
    )


def _document(subject: Subject, direct: list[Component], nested: dict[Component, list[Component]]) -> bytes:
    """The image with ``direct`` components, each of ``nested``'s keys depending on its values."""
    image = _image_component(subject)
    bom = Bom(
        serial_number=uuid.uuid5(_UUID_NAMESPACE, subject.digest),
        metadata=BomMetaData(component=image, timestamp=subject.created),
    )
    bom.metadata.tools.components.add(
        Component(name="faaspub", version=__version__, type=ComponentType.APPLICATION)
    )
    for component in direct:
        bom.components.add(component)
    for parent, children in nested.items():
        for child in children:
            bom.components.add(child)
        bom.register_dependency(parent, children)
    bom.register_dependency(image, direct)
    return render(bom)


def base_sbom(subject: Subject, packages: Sequence[Package]) -> bytes:
    """The runtime base's SBOM: every Debian package unpacked into it."""
    return _document(subject, [_package_component(p) for p in packages], {})


def image_sbom(
    subject: Subject, source: Source, base: BaseImage | None, distributions: Sequence[Package]
) -> bytes:
    """A function image's SBOM: the function, its Python distributions, the base and its packages."""
    direct = [_source_component(source), *(_package_component(p) for p in distributions)]
    nested: dict[Component, list[Component]] = {}
    if base is not None:
        base_component = _image_component(Subject(base.name, base.version, base.digest, subject.created))
        direct.append(base_component)
        nested[base_component] = [_package_component(p) for p in base.packages]
    return _document(subject, direct, nested)


def render(bom: Bom) -> bytes:
    """The document as CycloneDX 1.6 JSON (validated when it is attached: :func:`validate`)."""
    return JsonV1Dot6(bom).output_as_string(indent=None).encode()


@cache
def _validator() -> JsonStrictValidator:
    return JsonStrictValidator(SchemaVersion.V1_6)


def validate(document: str | bytes) -> None:
    """Raise :class:`FaaspubError` naming the first schema violation of a CycloneDX 1.6 document."""
    text = document.decode() if isinstance(document, bytes) else document
    error = _validator().validate_str(text)
    if error is not None:
        raise FaaspubError(f"SBOM is not valid CycloneDX 1.6: {error}")


def packages_of(document: bytes) -> tuple[Package, ...]:
    """The Debian and Python packages an SBOM lists (to carry a base's packages into its images)."""
    found = []
    for item in components_of(document):
        purl = item.get("purl")
        if not purl:
            continue
        parsed = PackageURL.from_string(purl)
        if parsed.type not in ("deb", "pypi"):
            continue
        found.append(
            Package(
                kind=parsed.type,  # type: ignore[arg-type]
                name=item["name"],
                version=item.get("version", ""),
                licenses=tuple(item["licenses"]),
                sha256=item.get("sha256"),
                arch=(parsed.qualifiers or {}).get("arch") if isinstance(parsed.qualifiers, dict) else None,
            )
        )
    return tuple(found)


def components_of(document: bytes) -> list[dict[str, Any]]:
    """Name, version, type, purl, licences and SHA-256 of every component (for pages and checks)."""
    try:
        doc = json.loads(document)
    except ValueError as exc:
        raise FaaspubError(f"SBOM is not JSON: {exc}") from None
    return [_summary(c) for c in doc.get("components") or [] if isinstance(c, dict)]


def _summary(component: dict[str, Any]) -> dict[str, Any]:
    licenses = []
    for entry in component.get("licenses") or []:
        if "expression" in entry:
            licenses.append(str(entry["expression"]))
        else:
            lic = entry.get("license") or {}
            licenses.append(str(lic.get("id") or lic.get("name") or ""))
    sha256 = next(
        (h.get("content") for h in component.get("hashes") or [] if h.get("alg") == "SHA-256"), None
    )
    return {
        "name": component.get("name", ""),
        "version": component.get("version"),
        "type": component.get("type"),
        "purl": component.get("purl"),
        "licenses": [lic for lic in licenses if lic],
        "sha256": sha256,
    }
