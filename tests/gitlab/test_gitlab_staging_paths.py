"""Previews are bound under the staging prefix, never to the released data paths."""

from __future__ import annotations

from pathlib import Path

from publisher.gitlab.preview import staging_triggers
from publisher.manifest.load import load_function

ROOT = Path(__file__).resolve().parents[2]


def test_paths_are_rerooted_under_the_staging_prefix(tmp_path: Path) -> None:
    fn = load_function(ROOT / "examples" / "cxi-metadata")
    moved = staging_triggers(fn, "/pnfs/xfel.eu/staging/")
    assert [t.path for t in moved] == ["/pnfs/xfel.eu/staging/incoming"] * 2
    assert [t.match for t in moved] == ["*.cxi", "*.h5"]
    assert fn.manifest.storage_triggers()[0].path == "/incoming"  # the release keeps its paths


def test_no_prefix_means_no_preview_bindings() -> None:
    fn = load_function(ROOT / "examples" / "hello")
    assert staging_triggers(fn, None) == []


def test_s3_keys_get_the_prefix_after_the_bucket(tmp_path: Path) -> None:
    (tmp_path / "function.yaml").write_text(
        "name: s3fn\nruntime: python:3.11\nhandler: h:main\n"
        "triggers:\n  - storage: {source: s3, path: raw-bucket/run/, match: '*.h5'}\n"
    )
    fn = load_function(tmp_path)
    assert [t.path for t in staging_triggers(fn, "/staging")] == ["raw-bucket/staging/run/"]
