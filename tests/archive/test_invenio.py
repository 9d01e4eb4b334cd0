"""The release flow on InvenioRDM's native records API (test server): first and later releases,
failures, a crash at every step then a resume, and reading the record back for ``faaspub verify``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from publisher.archive.invenio import InvenioClient, InvenioError
from publisher.archive.release import RecordArchive
from publisher.core.types import FunctionSource
from publisher.errors import FaaspubError
from tests.archive.conftest import (
    CITATION,
    CRASH_STEPS,
    crash_then_resume,
    make_function,
    make_release,
    release_version,
)
from tests.fakes.invenio_server import DOI_PREFIX, InvenioServer

Factory = Callable[..., RecordArchive]


def test_first_release_reserves_then_publishes_the_same_doi(
    invenio_server: InvenioServer, make_invenio: Factory, fn: FunctionSource, tmp_path: Path
) -> None:
    archive = make_invenio()
    reserved = archive.reserve(fn, "1.0.0")
    assert reserved.record_id is not None and not reserved.record_id.isdigit()  # generic RDM PIDs
    assert reserved.doi == f"{DOI_PREFIX}/{reserved.record_id}"
    [draft] = invenio_server.fake.drafts()
    assert draft.metadata["version"] == "1.0.0"

    published = release_version(archive, fn, "1.0.0", tmp_path)[1]
    assert published.doi == reserved.doi
    assert invenio_server.fake.drafts() == []
    [record] = invenio_server.fake.published()
    md = record.metadata
    assert md["resource_type"] == {"id": "software"}
    assert md["title"] == "Thumbnailer: thumbnails & previews"
    assert md["creators"][0] == {
        "person_or_org": {
            "type": "personal",
            "family_name": "von Müller",
            "given_name": "Jürgen",
            "identifiers": [{"scheme": "orcid", "identifier": "0000-0002-1825-0097"}],
        },
        "affiliations": [{"name": "European XFEL"}],
    }
    assert md["creators"][2] == {"person_or_org": {"type": "organizational", "name": "DESY FS-SC"}}
    assert md["rights"] == [{"id": "mit"}]
    assert md["subjects"] == [{"subject": "faas"}, {"subject": "thumbnails"}]
    relations = {r["relation_type"]["id"]: (r["scheme"], r["identifier"]) for r in md["related_identifiers"]}
    assert relations["isidenticalto"] == ("url", "https://gitlab.example.org/grp/thumbnailer/-/tree/v1.0.0")
    assert set(record.files) == {"release.json", "codemeta.json", "CITATION.cff", "thumbnailer-1.0.0.tar.gz"}
    assert all(f.committed for f in record.files.values())
    assert json.loads(record.files["release.json"].data)["doi"] == published.doi
    assert published.concept_doi == f"{DOI_PREFIX}/{record.parent}"


def test_second_release_is_a_new_version_of_the_same_parent(
    invenio_server: InvenioServer, make_invenio: Factory, fn: FunctionSource, tmp_path: Path
) -> None:
    _, first = release_version(make_invenio(), fn, "1.0.0", tmp_path)
    reserved, second = release_version(make_invenio(), fn, "1.1.0", tmp_path)
    assert second.doi == reserved.doi != first.doi
    fake = invenio_server.fake
    assert len(fake.parents()) == 1 and fake.drafts() == []
    assert [r.metadata["version"] for r in fake.published()] == ["1.0.0", "1.1.0"]
    latest = fake.published()[-1]
    assert "thumbnailer-1.0.0.tar.gz" not in latest.files
    assert latest.files["thumbnailer-1.1.0.tar.gz"].data == b"source of 1.1.0"
    previous = [
        r for r in latest.metadata["related_identifiers"] if r["relation_type"]["id"] == "isnewversionof"
    ]
    assert previous == [
        {
            "identifier": first.doi,
            "scheme": "doi",
            "relation_type": {"id": "isnewversionof"},
            "resource_type": {"id": "software"},
        }
    ]
    client = InvenioClient(invenio_server.url, None)
    assert client.latest_record_id(str(first.record_id)) == second.record_id  # via the redirect


@pytest.mark.parametrize("previous", [False, True], ids=["first-release", "new-version"])
@pytest.mark.parametrize("step", CRASH_STEPS)
def test_crash_at_any_step_then_resume(
    invenio_server: InvenioServer,
    make_invenio: Factory,
    fn: FunctionSource,
    tmp_path: Path,
    step: str,
    previous: bool,
) -> None:
    reserved, published = crash_then_resume(make_invenio, fn, tmp_path, step, previous)
    fake = invenio_server.fake
    assert len(fake.parents()) == 1
    assert fake.drafts() == []
    assert len(fake.published()) == (2 if previous else 1)
    assert published.doi == reserved.doi
    assert fake.records[str(published.record_id)].metadata["version"] == "2.0.0"


def test_crash_between_declaring_and_committing_a_file_is_resumed(
    invenio_server: InvenioServer, make_invenio: Factory, fn: FunctionSource, tmp_path: Path
) -> None:
    """A pending (declared, never committed) file blocks publishing until the resume replaces it."""
    reserved = make_invenio().reserve(fn, "1.0.0")
    invenio_server.fake.faults.server_errors = 100
    invenio_server.fake.faults.error_path = "/commit"
    with pytest.raises(InvenioError, match="HTTP 500"):
        release, files = make_release(fn, "1.0.0", tmp_path)
        release.reservation = reserved
        make_invenio().publish(release, files)
    invenio_server.fake.faults.server_errors = 0
    _, published = release_version(make_invenio(), fn, "1.0.0", tmp_path)
    [record] = invenio_server.fake.published()
    assert all(f.committed for f in record.files.values())
    assert published.record_id == record.id


def test_failed_build_discards_the_draft(
    invenio_server: InvenioServer, make_invenio: Factory, fn: FunctionSource
) -> None:
    archive = make_invenio()
    archive.reserve(fn, "1.0.0")
    archive.discard(fn, "1.0.0")
    assert invenio_server.fake.records == {}
    archive.discard(fn, "1.0.0")


def test_corrupted_upload_is_caught_and_the_draft_discarded(
    invenio_server: InvenioServer, make_invenio: Factory, fn: FunctionSource, tmp_path: Path
) -> None:
    invenio_server.fake.faults.corrupt_uploads = 1
    with pytest.raises(InvenioError, match="checksum"):
        release_version(make_invenio(), fn, "1.0.0", tmp_path)
    assert invenio_server.fake.records == {}


def test_publish_answered_504_but_published_is_a_success(
    invenio_server: InvenioServer, make_invenio: Factory, fn: FunctionSource, tmp_path: Path
) -> None:
    invenio_server.fake.faults.publish_then_504 = 1
    _, published = release_version(make_invenio(), fn, "1.0.0", tmp_path)
    assert published.doi is not None
    assert len(invenio_server.fake.published()) == 1


def test_the_server_refuses_what_invenio_refuses(invenio_server: InvenioServer) -> None:
    client = InvenioClient(invenio_server.url, invenio_server.token, sleep=lambda s: None)
    with pytest.raises(InvenioError, match="unknown: Unknown field"):
        client.create({"metadata": {}, "unknown": 1})
    bad = {"identifier": "registry/ns/img@sha256:abc", "scheme": "url", "relation_type": {"id": "issourceof"}}
    with pytest.raises(InvenioError, match=r"related_identifiers\.0\.identifier"):
        client.create({"metadata": {"related_identifiers": [bad]}})
    draft = client.create({"metadata": {"title": "t"}})
    with pytest.raises(InvenioError, match="A PID already exists for type doi"):
        client.request("POST", f"records/{draft.id}/draft/pids/doi")
    with pytest.raises(InvenioError, match=r"metadata\.creators"):
        client.publish(draft)
    with pytest.raises(InvenioError) as refused:
        InvenioClient(invenio_server.url, "tok-zq81x").create({"metadata": {}})
    assert refused.value.status == 403 and "tok-zq81x" not in str(refused.value)


def test_released_digest_reads_the_records_release_json(
    invenio_server: InvenioServer, make_invenio: Factory, fn: FunctionSource, tmp_path: Path
) -> None:
    _, published = release_version(make_invenio(), fn, "1.0.0", tmp_path)
    assert published.doi is not None
    assert make_invenio().released_digest("fs-sc", published.doi) == "sha256:" + "b" * 64
    assert make_invenio().released_digest("fs-sc", f"{DOI_PREFIX}/nothere") is None


def test_bad_citation_stops_before_any_draft(
    invenio_server: InvenioServer, make_invenio: Factory, tmp_path: Path
) -> None:
    bad = make_function(tmp_path / "bad", CITATION.replace("license: MIT\n", ""))
    with pytest.raises(FaaspubError, match="no license"):
        make_invenio().reserve(bad, "1.0.0")
    assert invenio_server.fake.seen == []
