"""faaspub_runtime.identity (what a run knows about its version) and faaspub_runtime.steps (step
records that chain functions on one file), on real files in a local folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from faaspub_runtime.events import EventError, make_cloudevent
from faaspub_runtime.identity import current, environment
from faaspub_runtime.steps import record_suffix, resolve, write_record


def event_for(path: Path) -> dict[str, object]:
    return make_cloudevent(
        source="faaspub/local",
        kind="created",
        path=str(path),
        size=path.stat().st_size,
        checksum="adler32:0000abcd",
        url=path.as_uri(),
        event_id="evt-1",
        time="2026-11-23T10:00:00Z",
        storage="local",
    )


def test_identity_round_trips_through_the_environment() -> None:
    env = environment(
        namespace="facility",
        name="f",
        version="1.0.0",
        digest="sha256:ab",
        image="r/f:1@sha256:ab",
        doi="10.5281/zenodo.9",
    )
    me = current(env)
    assert me.reference == "f@1.0.0" and me.doi == "10.5281/zenodo.9"
    assert me.software() == ["https://doi.org/10.5281/zenodo.9", "r/f:1@sha256:ab"]
    assert "FAASPUB_FUNCTION_DOI" not in environment(
        namespace="n", name="f", version="v", digest="d", image="i", doi=None
    )
    unpinned = current({**env, "FAASPUB_FUNCTION_IMAGE": "r/f:1"})
    assert unpinned.software()[1] == "r/f:1@sha256:ab"  # pinned by the digest the platform names
    assert current({}).software() == [] and current({}).reference is None


def test_a_record_names_the_file_and_the_next_step_finds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAASPUB_FUNCTION_NAME", "first")
    monkeypatch.setenv("FAASPUB_FUNCTION_DIGEST", "sha256:01")
    data = tmp_path / "run.h5"
    data.write_bytes(b"12345")
    step = resolve(event_for(data))
    assert step.previous is None and step.data.path == str(data)
    written = write_record(step, "first", {"answer": 42})
    assert written == str(data) + ".first.json"
    record = json.loads(Path(written).read_text())
    assert record["status"] == "success" and record["digest"] == "sha256:01"
    assert record["input"] == {
        "path": str(data),
        "url": data.as_uri(),
        "size": 5,
        "checksum": "adler32:0000abcd",
        "storage": "local",
    }

    following = resolve(event_for(Path(written)), after="first")
    assert following.data.path == str(data) and following.data.size == 5
    assert following.previous is not None and following.previous["result"] == {"answer": 42}
    # Without AFTER (or for another function) the record is just a file.
    assert resolve(event_for(Path(written)), after="other").data.path == written


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "is not JSON"),
        (
            json.dumps({"status": "failed", "input": {"path": "/x"}}),
            "does not record a successful run of first",
        ),
        (json.dumps({"status": "success"}), "names no input file"),
    ],
)
def test_a_bad_or_failed_record_stops_the_chain(tmp_path: Path, content: str, message: str) -> None:
    record = tmp_path / "run.h5.first.json"
    record.write_text(content)
    with pytest.raises(EventError, match=message):
        resolve(event_for(record), after="first")


def test_record_names_must_be_plain() -> None:
    assert record_suffix("rucio-rule") == ".rucio-rule.json"
    for bad in ("", "a/b", "a.b"):
        with pytest.raises(EventError):
            record_suffix(bad)
