from datetime import UTC, datetime

import pytest
from scicat_ingest import IngestError, dataset_for, inputs_for, main, pid_for, software


@pytest.fixture(autouse=True)
def settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "SCICAT_OWNER": "Ingest",
        "SCICAT_OWNER_GROUP": "facility",
        "SCICAT_CONTACT_EMAIL": "data@facility.example.org",
        "SCICAT_DATASET_TYPE": "raw",
        "SCICAT_PID_PREFIX": "20.500.12269",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SCICAT_INPUT_SUFFIX", raising=False)
    for key in ("NAMESPACE", "NAME", "VERSION", "DIGEST", "IMAGE", "DOI"):
        monkeypatch.delenv(f"FAASPUB_FUNCTION_{key}", raising=False)


def test_pid_is_stable_per_path() -> None:
    assert pid_for("/a/b.nxs") == pid_for("/a/b.nxs") != pid_for("/a/c.nxs")
    assert pid_for("/a/b.nxs").startswith("20.500.12269/")


def test_derived_inputs_come_from_the_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert inputs_for("/a/run.nxs.peaks.h5") == []
    monkeypatch.setenv("SCICAT_INPUT_SUFFIX", ".peaks.h5")
    assert inputs_for("/a/run.nxs.peaks.h5") == [pid_for("/a/run.nxs")]


def test_software_names_doi_and_pinned_image(monkeypatch: pytest.MonkeyPatch) -> None:
    assert software(None) == []
    monkeypatch.setenv("FAASPUB_FUNCTION_DOI", "10.5281/zenodo.1")
    monkeypatch.setenv("FAASPUB_FUNCTION_IMAGE", "reg/f:1.0.0-abc@sha256:abc")
    monkeypatch.setenv("FAASPUB_FUNCTION_DIGEST", "sha256:abc")
    previous = {"doi": "10.5281/zenodo.0", "image": "reg/n:1@sha256:def"}
    assert software(previous) == [
        "https://doi.org/10.5281/zenodo.1",
        "reg/f:1.0.0-abc@sha256:abc",
        "https://doi.org/10.5281/zenodo.0",
        "reg/n:1@sha256:def",
    ]


def test_settings_and_types_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    when = datetime(2026, 11, 23, tzinfo=UTC)
    monkeypatch.setenv("SCICAT_DATASET_TYPE", "processed")
    with pytest.raises(IngestError, match="is not one of raw, derived"):
        dataset_for("/a/b.nxs", when, {}, [])
    monkeypatch.setenv("SCICAT_DATASET_TYPE", "derived")
    with pytest.raises(IngestError, match="derived dataset without input"):
        dataset_for("/a/b.nxs", when, {}, [])
    monkeypatch.setenv("SCICAT_DATASET_TYPE", "raw")
    monkeypatch.setenv("SCICAT_CONTACT_EMAIL", "nobody")
    with pytest.raises(IngestError, match="contactEmail"):
        dataset_for("/a/b.nxs", when, {}, [])
    monkeypatch.delenv("SCICAT_OWNER_GROUP")
    with pytest.raises(IngestError, match="SCICAT_OWNER_GROUP is missing"):
        dataset_for("/a/b.nxs", when, {}, [])


def test_dry_run_shows_the_dataset() -> None:
    body = main(
        {
            "dry_run": True,
            "path": "/p/r/run.nxs",
            "time": "2026-11-23T10:00:00+00:00",
            "metadata": {"t": {"value": 1}},
        }
    )
    assert body["datasetName"] == "run.nxs" and body["sourceFolder"] == "/p/r"
    assert body["scientificMetadata"] == {"t": {"value": 1}} and body["type"] == "raw"
    with pytest.raises(ValueError, match="expected a storage event"):
        main({})
