"""functions/scicat-ingest against the SciCat test server, and that server against SciCat's rules."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from tests.fakes.scicat_fixture import OTHER_TOKEN, TOKEN
from tests.fakes.scicat_server import FakeScicat
from tests.stdfunctions.conftest import RAW, Dcache
from tests.stdfunctions.functions import load

ingest = load("scicat-ingest")
IDENTITY = {
    "FAASPUB_FUNCTION_NAMESPACE": "facility",
    "FAASPUB_FUNCTION_NAME": "scicat-ingest",
    "FAASPUB_FUNCTION_VERSION": "1.0.0",
    "FAASPUB_FUNCTION_DIGEST": "sha256:" + "a" * 64,
    "FAASPUB_FUNCTION_IMAGE": "127.0.0.1:5000/facility/scicat-ingest:1.0.0-aaaaaaaaaaaa@sha256:" + "a" * 64,
    "FAASPUB_FUNCTION_DOI": "10.5281/zenodo.7002",
}
BLOCK = {"title": {"value": "SPB run 42"}, "source_energy": {"value": 9.3, "unit": "keV"}}


@pytest.fixture
def scicat(scicat_server: FakeScicat, monkeypatch: pytest.MonkeyPatch) -> FakeScicat:
    for key, value in {
        **IDENTITY,
        "SCICAT_URL": scicat_server.url,
        "SCICAT_TOKEN": TOKEN,
        "SCICAT_OWNER": "Facility Ingest",
        "SCICAT_OWNER_GROUP": "p002042",
        "SCICAT_CONTACT_EMAIL": "data@facility.example.org",
        "SCICAT_CREATION_LOCATION": "/Facility/SPB/AGIPD",
        "SCICAT_DATASET_TYPE": "raw",
        "AFTER": "nexus-metadata",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SCICAT_INPUT_SUFFIX", raising=False)
    return scicat_server


def after_nexus_metadata(dcache: Dcache, name: str, content: bytes) -> dict[str, Any]:
    """The file lands, then nexus-metadata's record of it (by version 1.0.0 with its DOI)."""
    data = dcache.land(name, content)
    record = {
        "status": "success",
        "function": "nexus-metadata",
        "doi": "10.5281/zenodo.7001",
        "image": "127.0.0.1:5000/facility/nexus-metadata:1.0.0-bbbbbbbbbbbb@sha256:" + "b" * 64,
        "input": data["data"],
        "result": {"scientificMetadata": BLOCK},
    }
    return dcache.land(f"{name}.nexus-metadata.json", json.dumps(record).encode())


def get(scicat: FakeScicat, pid: str, **params: str) -> dict[str, Any]:
    resp = requests.get(
        f"{scicat.url}/api/v4/datasets/{requests.utils.quote(pid, safe='')}",
        params=params,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    resp.raise_for_status()
    return dict(resp.json())


def test_a_raw_dataset_with_metadata_software_and_datablock(dcache: Dcache, scicat: FakeScicat) -> None:
    result = ingest.main(after_nexus_metadata(dcache, "run42.nxs", b"n" * 321))
    assert result["created"] is True and result["type"] == "raw"
    dataset = get(scicat, result["pid"], include="origdatablocks")
    assert dataset["datasetName"] == "run42.nxs" and dataset["sourceFolder"] == RAW
    assert dataset["scientificMetadata"] == BLOCK
    assert dataset["usedSoftware"] == [
        "https://doi.org/10.5281/zenodo.7002",
        IDENTITY["FAASPUB_FUNCTION_IMAGE"],
        "https://doi.org/10.5281/zenodo.7001",
        "127.0.0.1:5000/facility/nexus-metadata:1.0.0-bbbbbbbbbbbb@sha256:" + "b" * 64,
    ]
    assert dataset["creationLocation"] == "/Facility/SPB/AGIPD" and dataset["createdBy"] == "ingestor"
    [block] = dataset["origdatablocks"]
    assert block["size"] == 321 and block["dataFileList"][0]["path"] == "run42.nxs"
    assert dataset["numberOfFiles"] == 1 and dataset["size"] == 321
    record = json.loads(dcache.door.read(f"{RAW}/run42.nxs.scicat-ingest.json") or b"{}")
    assert record["result"]["pid"] == result["pid"] and record["status"] == "success"


def test_a_redelivered_event_updates_the_same_dataset(dcache: Dcache, scicat: FakeScicat) -> None:
    event = after_nexus_metadata(dcache, "run43.nxs", b"x")
    first = ingest.main(event)
    dcache.door.local(f"{RAW}/run43.nxs.scicat-ingest.json").unlink()
    again = ingest.main(event)
    assert again == {**first, "created": False, "record": again["record"]}
    assert len(scicat.datasets) == 1
    assert [m for m, _p, _b in scicat.requests].count("PATCH") == 1


def test_a_derived_dataset_names_its_input(
    dcache: Dcache, scicat: FakeScicat, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCICAT_DATASET_TYPE", "derived")
    monkeypatch.setenv("SCICAT_INPUT_SUFFIX", ".peaks.h5")
    monkeypatch.delenv("AFTER")
    result = ingest.main(dcache.land("run42.nxs.peaks.h5", b"peaks"))
    dataset = get(scicat, result["pid"])
    assert dataset["type"] == "derived"
    assert dataset["inputDatasets"] == [ingest.pid_for(f"{RAW}/run42.nxs")]
    monkeypatch.setenv("SCICAT_INPUT_SUFFIX", ".other")
    with pytest.raises(ingest.IngestError, match="derived dataset without input"):
        ingest.main(dcache.land("lonely.h5", b"l"))


def test_what_scicat_refuses_is_named_and_nothing_is_created(
    dcache: Dcache, scicat: FakeScicat, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCICAT_CONTACT_EMAIL", "nobody")
    with pytest.raises(ingest.IngestError, match=r"(?s)not valid for SciCat.*contactEmail"):
        ingest.main(after_nexus_metadata(dcache, "run44.nxs", b"x"))
    assert scicat.requests == []  # scitacean checked it before sending
    monkeypatch.setenv("SCICAT_CONTACT_EMAIL", "data@facility.example.org")
    monkeypatch.setenv("SCICAT_TOKEN", OTHER_TOKEN)
    with pytest.raises(ingest.IngestError, match=r"(?s)403 Forbidden.*Unauthorized access") as err:
        ingest.main(after_nexus_metadata(dcache, "run45.nxs", b"x"))
    assert OTHER_TOKEN not in str(err.value)
    assert scicat.datasets == {}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": "v4"}, "property version should not exist"),
        ({"datasetName": None}, "datasetName must be a string"),
        ({"creationTime": "yesterday"}, "creationTime must be a valid ISO 8601 date string"),
        ({"size": 1.5}, "size must be an integer number"),
        ({"keywords": ["a", 1]}, "each value in keywords must be a string"),
        ({"sourceFolder": ""}, "sourceFolder should not be empty"),
        ({"sourceFolderHost": "localhost"}, "sourceFolderHost must be a URL address"),
        ({"techniques": [{"pid": "t1"}]}, "techniques.0.name must be a string"),
        ({"ownerEmail": "me@"}, "ownerEmail must be an email"),
    ],
)
def test_the_test_server_refuses_what_scicat_refuses(
    scicat_server: FakeScicat, change: dict[str, Any], message: str
) -> None:
    body = {
        "type": "raw",
        "datasetName": "run1.nxs",
        "ownerGroup": "p002042",
        "contactEmail": "a@facility.example.org",
        "sourceFolder": "/pnfs/facility/raw",
        "creationTime": "2026-11-23T10:00:00Z",
    }
    headers = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{scicat_server.url}/api/v4/datasets"
    assert requests.post(f"{url}/isValid", json=body, headers=headers, timeout=10).json() == {"valid": True}
    bad = {k: v for k, v in {**body, **change}.items() if v is not None}
    resp = requests.post(url, json=bad, headers=headers, timeout=10)
    assert resp.status_code == 400 and message in resp.json()["message"], resp.text
    assert resp.json()["statusCode"] == 400 and resp.json()["error"] == "Bad Request"
    assert requests.post(url, json=body, timeout=10).status_code == 403
    created = requests.post(url, json=body, headers=headers, timeout=10)
    assert created.status_code == 201 and created.json()["pid"].startswith("20.500.12269/")
    taken = requests.post(url, json={**body, "pid": created.json()["pid"]}, headers=headers, timeout=10)
    assert taken.status_code == 409
