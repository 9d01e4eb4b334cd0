"""Who is running: the function's namespace, name, version, image digest and DOI, from the environment.

Both backends export these variables into every instance of a published version (the local backend
as container environment, OpenWhisk as ``init`` parameters), so a function can record exactly which
software produced its output, e.g. in a data catalogue's ``usedSoftware``. Outside faaspub (plain
pytest) they are absent and :func:`current` answers with ``None`` fields.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

NAMESPACE = "FAASPUB_FUNCTION_NAMESPACE"
NAME = "FAASPUB_FUNCTION_NAME"
VERSION = "FAASPUB_FUNCTION_VERSION"
DIGEST = "FAASPUB_FUNCTION_DIGEST"
IMAGE = "FAASPUB_FUNCTION_IMAGE"
DOI = "FAASPUB_FUNCTION_DOI"
DOI_RESOLVER = "https://doi.org/"


@dataclass(frozen=True)
class FunctionIdentity:
    """The published version this process runs (fields are ``None`` when not run by faaspub)."""

    namespace: str | None
    name: str | None
    version: str | None
    digest: str | None
    image: str | None
    doi: str | None

    @property
    def reference(self) -> str | None:
        """``name@version`` when known."""
        return f"{self.name}@{self.version}" if self.name and self.version else None

    def software(self) -> list[str]:
        """Identifiers of this exact software: the DOI as a URL and the image pinned by digest."""
        found = []
        if self.doi:
            found.append(DOI_RESOLVER + self.doi)
        if self.image and self.digest and self.digest not in self.image:
            found.append(f"{self.image.split('@', 1)[0]}@{self.digest}")
        elif self.image:
            found.append(self.image)
        return found


def current(environ: Mapping[str, str] | None = None) -> FunctionIdentity:
    """The identity the platform exported (``environ`` defaults to ``os.environ``)."""
    env = os.environ if environ is None else environ

    def get(key: str) -> str | None:
        return env.get(key) or None

    return FunctionIdentity(get(NAMESPACE), get(NAME), get(VERSION), get(DIGEST), get(IMAGE), get(DOI))


def environment(
    *, namespace: str, name: str, version: str, digest: str, image: str, doi: str | None
) -> dict[str, str]:
    """The variables a backend exports for one version (the DOI only once it has one)."""
    env = {NAMESPACE: namespace, NAME: name, VERSION: version, DIGEST: digest, IMAGE: image}
    if doi:
        env[DOI] = doi
    return env
