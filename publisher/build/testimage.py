"""The test image that belongs to a shipped function image: how it is tied to it and found again.

Every builder pushes, next to the image it ships (``REPO:TAG``), a test image ``REPO:TAG-test``: the
same layers plus pytest and the tests folder. Its config carries the label
``org.faaspub.tested-image`` naming the shipped image's digest, so a reference in any form
(``REPO:TAG``, ``REPO@sha256:…``, ``oci:DIR:REPO@sha256:…``) leads back to it.
"""

from __future__ import annotations

from publisher.build.inputs import test_tag
from publisher.errors import FaaspubError
from publisher.oci.store import ImageStore
from publisher.oci.transfer import Image, fetch_image

TESTED_IMAGE_LABEL = "org.faaspub.tested-image"


def belongs(test: Image, shipped: Image) -> bool:
    """True when ``test`` was built for ``shipped``: its label names it, or (older test images,
    without the label) its layers start with exactly the shipped image's layers."""
    named = test.config.labels.get(TESTED_IMAGE_LABEL)
    if named is not None:
        return named == shipped.digest
    prefix = [d.digest for d in shipped.manifest.layers]
    return [d.digest for d in test.manifest.layers][: len(prefix)] == prefix


def shipped_tag(tags: list[str], digest: str, given: str | None) -> str:
    """A tag to show for the image at ``digest``: the one given, else its content tag, else ``latest``."""
    short = digest.split(":", 1)[-1][:12]
    return given or next((t for t in sorted(tags) if t.endswith(f"-{short}")), "latest")


def find_test_image(store: ImageStore, repository: str, shipped: Image, tag: str | None) -> str | None:
    """The tag of the test image that belongs to ``shipped`` in ``repository``, if the store has one.

    Candidates are ``TAG-test`` for the given tag and every ``*-<digest12>-test`` content tag; each
    is checked with :func:`belongs`, so a tag that was moved never yields a stranger's tests.
    """
    tags = store.tags(repository)
    short = shipped.digest.split(":", 1)[-1][:12]
    candidates = [test_tag(tag)] if tag else []
    candidates += sorted(t for t in tags if t.endswith(f"-{short}-test") and t not in candidates)
    for candidate in candidates:
        if candidate not in tags:
            continue
        try:
            test = fetch_image(store, repository, candidate)
        except FaaspubError:
            continue  # a broken or vanished candidate is simply not the test image
        if belongs(test, shipped):
            return candidate
    return None
