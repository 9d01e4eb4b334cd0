"""``faaspub test --image`` never passes without running the function's tests, whatever the reference.

A function whose test fails is built (``faaspub build --json``); its image is then tested by every
reference form faaspub prints or accepts: by digest alone (``REPO@sha256:…``), and as
``oci:DIR:REPO@sha256:…`` (what ``faaspub build`` prints, its tag dropped). Each run must exit
non-zero and name the failing test, also once the test image is gone from the store (the tests
are then added to the image again).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from publisher.oci.layout import OciLayout
from tests.firstrun.machine import leftovers, run
from tests.infra.containers import require_tool

pytestmark = pytest.mark.containers


@pytest.fixture
def failing(tmp_path: Path) -> Iterator[tuple[Path, Path, dict[str, str]]]:
    require_tool("podman")
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    run(home, work, "init", "flaky", "--runtime", "python:3.11")
    folder = work / "flaky"
    test = folder / "tests" / "test_flaky.py"
    test.write_text(test.read_text() + "\n\ndef test_the_answer() -> None:\n    assert 6 * 7 == 43\n")
    built = json.loads(run(home, folder, "build", "--json").stdout)
    yield home, folder, built
    from publisher.config import Settings
    from publisher.podman import stop_private_service

    stop_private_service(Settings(state_dir=str(home)))
    assert not leftovers(home)


def test_every_reference_form_runs_the_suite(failing: tuple[Path, Path, dict[str, str]]) -> None:
    home, folder, built = failing
    pinned, digest = built["image"], built["digest"]
    layout, _, rest = pinned.removeprefix("oci:").partition(":")
    repository = rest.split(":", 1)[0]
    forms = [
        pinned,  # oci:DIR:REPO:TAG@sha256:… as printed
        f"oci:{layout}:{repository}@{digest}",  # the tag dropped
        f"{repository}@{digest}",  # by digest only, in the configured store
    ]
    for reference in forms:
        result = run(home, folder, "test", "--image", reference, check=False)
        assert result.returncode == 1, f"{reference}: {result.stderr}"
        assert "FAILED pytest: test_the_answer" in result.stderr, f"{reference}: {result.stderr}"
        assert "1 failed" in result.stderr

    # Without its test image in the store, the tests are added to the image and still run.
    store = OciLayout(layout)
    store.delete_manifest(repository, store.resolve(repository, built["test_image"].rsplit(":", 1)[1]))
    result = run(home, folder, "test", "--image", f"{repository}@{digest}", "--json", check=False)
    report = json.loads(result.stdout)
    assert result.returncode == 1 and report["failed"] == 1 and report["passed"] >= 2, report
    assert any("test_the_answer" in f for f in report["failures"])
