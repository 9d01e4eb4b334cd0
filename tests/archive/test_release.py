"""The release flow against the fake Zenodo: first and later releases, failures, crashes and resume."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest
from sqlalchemy import Engine

from publisher.archive.release import ZenodoArchive
from publisher.archive.store import ArchiveStore
from publisher.archive.zenodo import ZenodoClient, ZenodoError
from publisher.core.types import FunctionSource
from publisher.errors import FaaspubError
from tests.archive.conftest import (
    CITATION,
    CRASH_STEPS,
    ArchiveFactory,
    crash_then_resume,
    make_function,
    make_release,
    release_version,
)
from tests.fakes.zenodo_server import ZenodoFake, ZenodoServer


def files_of(server: ZenodoServer, record_id: str | None) -> dict[str, bytes]:
    assert record_id is not None
    return {k: f.data for k, f in server.fake.deposits[int(record_id)].files.items()}


def test_first_release_reserves_then_publishes_the_same_doi(
    zenodo_server: ZenodoServer, make_archive: ArchiveFactory, fn: FunctionSource, tmp_path: Path
) -> None:
    archive = make_archive()
    reserved = archive.reserve(fn, "1.0.0")
    assert reserved.doi == f"10.5281/zenodo.{reserved.record_id}"
    [draft] = zenodo_server.fake.drafts()
    assert draft.metadata["version"] == "1.0.0"

    release, files = make_release(fn, "1.0.0", tmp_path)
    release.reservation = reserved
    published = archive.publish(release, files)

    assert published.doi == reserved.doi
    assert published.concept_doi == reserved.concept_doi
    assert zenodo_server.fake.drafts() == []
    [record] = zenodo_server.fake.published()
    md = record.metadata
    assert md["title"] == "Thumbnailer: thumbnails & previews"
    assert md["version"] == "1.0.0"
    assert md["publication_date"] == "2026-05-19"
    assert md["license"] == "mit"
    assert md["upload_type"] == "software"
    assert md["creators"] == [
        {"name": "von Müller, Jürgen", "affiliation": "European XFEL", "orcid": "0000-0002-1825-0097"},
        {"name": "Roe, Rick"},
        {"name": "DESY FS-SC"},
    ]
    assert md["keywords"] == ["faas", "thumbnails"]
    assert md["communities"] == [{"identifier": "faaspub-functions"}]
    relations = {r["relation"]: r["identifier"] for r in md["related_identifiers"]}
    assert relations == {
        "isIdenticalTo": "https://gitlab.example.org/grp/thumbnailer/-/tree/v1.0.0",
        "isSourceOf": "https://registry.example.org/v2/fn/thumbnailer/manifests/sha256:" + "b" * 64,
    }
    assert "registry.example.org/fn/thumbnailer:1.0.0@sha256:" in md["description"]
    stored = files_of(zenodo_server, published.record_id)
    assert set(stored) == {"release.json", "codemeta.json", "CITATION.cff", "thumbnailer-1.0.0.tar.gz"}
    assert stored["CITATION.cff"] == CITATION.encode()
    provenance = json.loads(stored["release.json"])
    assert provenance["version"] == "1.0.0"
    assert provenance["commit"] == "a" * 40
    assert provenance["digest"] == "sha256:" + "b" * 64
    assert provenance["tests"] == {"passed": 3, "failed": 0, "errors": 0, "skipped": 0}
    assert provenance["doi"] == published.doi
    assert json.loads(stored["codemeta.json"])["identifier"] == f"https://doi.org/{published.doi}"


def test_second_release_is_a_new_version_of_the_same_concept(
    zenodo_server: ZenodoServer, make_archive: ArchiveFactory, fn: FunctionSource, tmp_path: Path
) -> None:
    archive = make_archive()
    _, first = release_version(archive, fn, "1.0.0", tmp_path)
    reserved, second = release_version(make_archive(), fn, "1.1.0", tmp_path)

    assert second.doi == reserved.doi != first.doi
    assert second.concept_doi == first.concept_doi
    assert len(zenodo_server.fake.concepts()) == 1
    assert len(zenodo_server.fake.published()) == 2
    assert zenodo_server.fake.drafts() == []
    stored = files_of(zenodo_server, second.record_id)
    assert "thumbnailer-1.0.0.tar.gz" not in stored  # carried over by Zenodo, removed by us
    assert stored["thumbnailer-1.1.0.tar.gz"] == b"source of 1.1.0"
    md = zenodo_server.fake.deposits[int(second.record_id or 0)].metadata
    assert md["version"] == "1.1.0"
    assert {"identifier": first.doi, "relation": "isNewVersionOf", "resource_type": "software"} in md[
        "related_identifiers"
    ]
    # The records API agrees: the concept's latest version is the second one.
    latest = ZenodoClient(zenodo_server.url, None).latest_record_id(int(first.record_id or 0))
    assert str(latest) == second.record_id


def test_second_release_with_documented_newversion_answer(
    zenodo_server: ZenodoServer, make_archive: ArchiveFactory, fn: FunctionSource, tmp_path: Path
) -> None:
    zenodo_server.fake.newversion_mode = "docs"  # the answer is the old record; the draft is in links
    release_version(make_archive(), fn, "1.0.0", tmp_path)
    _, second = release_version(make_archive(), fn, "2.0.0", tmp_path)
    assert zenodo_server.fake.deposits[int(second.record_id or 0)].metadata["version"] == "2.0.0"
    assert len(zenodo_server.fake.concepts()) == 1


def test_reserve_is_idempotent(
    zenodo_server: ZenodoServer, make_archive: ArchiveFactory, fn: FunctionSource
) -> None:
    first = make_archive().reserve(fn, "1.0.0")
    again = make_archive().reserve(fn, "1.0.0")
    assert first == again
    assert len(zenodo_server.fake.drafts()) == 1


def test_failed_build_discards_the_draft_and_leaves_nothing(
    zenodo_server: ZenodoServer, make_archive: ArchiveFactory, fn: FunctionSource, engine: Engine
) -> None:
    archive = make_archive()
    archive.reserve(fn, "1.0.0")
    archive.discard(fn, "1.0.0")  # what the pipeline does when the build or the tests fail
    assert zenodo_server.fake.deposits == {}
    entry = ArchiveStore(engine).get("fs-sc", "thumbnailer", "1.0.0")
    assert entry is not None and entry.state == "discarded"
    archive.discard(fn, "1.0.0")  # discarding twice is harmless


def test_failed_publish_discards_and_keeps_the_previous_version(
    zenodo_server: ZenodoServer, make_archive: ArchiveFactory, fn: FunctionSource, tmp_path: Path
) -> None:
    _, first = release_version(make_archive(), fn, "1.0.0", tmp_path)
    zenodo_server.fake.faults.server_errors = 100  # every bucket upload fails
    zenodo_server.fake.faults.error_path = "/api/files/"
    with pytest.raises(ZenodoError, match="HTTP 500"):
        release_version(make_archive(), fn, "1.1.0", tmp_path)
    assert zenodo_server.fake.drafts() == []
    [only] = zenodo_server.fake.published()
    assert str(only.id) == first.record_id
    zenodo_server.fake.faults.server_errors = 0
    _, retried = release_version(make_archive(), fn, "1.1.0", tmp_path)
    assert retried.concept_doi == first.concept_doi
    assert len(zenodo_server.fake.concepts()) == 1


@pytest.mark.parametrize("previous", [False, True], ids=["first-release", "new-version"])
@pytest.mark.parametrize("step", CRASH_STEPS)
def test_crash_at_any_step_then_resume(
    zenodo_server: ZenodoServer,
    make_archive: ArchiveFactory,
    fn: FunctionSource,
    tmp_path: Path,
    step: str,
    previous: bool,
) -> None:
    reserved, published = crash_then_resume(make_archive, fn, tmp_path, step, previous)
    fake = zenodo_server.fake
    assert len(fake.concepts()) == 1
    assert fake.drafts() == []
    assert len(fake.published()) == (2 if previous else 1)
    assert published.doi == reserved.doi
    assert fake.deposits[int(published.record_id or 0)].metadata["version"] == "2.0.0"


def test_abandoned_draft_of_another_version_is_superseded(
    zenodo_server: ZenodoServer, make_archive: ArchiveFactory, fn: FunctionSource, tmp_path: Path
) -> None:
    release_version(make_archive(), fn, "1.0.0", tmp_path)
    make_archive().reserve(fn, "1.1.0")  # the run died before build finished, nobody discarded
    _, published = release_version(make_archive(), fn, "1.2.0", tmp_path)
    assert zenodo_server.fake.drafts() == []
    assert [d.metadata["version"] for d in zenodo_server.fake.published()] == ["1.0.0", "1.2.0"]
    assert published.concept_doi is not None


def test_rate_limited_calls_wait_for_retry_after(
    zenodo_server: ZenodoServer, make_archive: ArchiveFactory, fn: FunctionSource, tmp_path: Path
) -> None:
    waits: list[float] = []
    zenodo_server.fake.faults.rate_limited = 3
    zenodo_server.fake.faults.retry_after = 7
    release_version(make_archive(sleep=waits.append), fn, "1.0.0", tmp_path)
    assert waits == [7.0, 7.0, 7.0]
    assert len(zenodo_server.fake.published()) == 1


def test_publish_that_times_out_but_published_is_a_success(
    zenodo_server: ZenodoServer, make_archive: ArchiveFactory, fn: FunctionSource, tmp_path: Path
) -> None:
    zenodo_server.fake.faults.publish_then_timeout = 1.5
    _, published = release_version(make_archive(publish_timeout=0.3), fn, "1.0.0", tmp_path)
    [record] = zenodo_server.fake.published()
    assert published.doi == f"10.5281/zenodo.{record.id}"
    publishes = [s for s in zenodo_server.fake.seen if s.target.endswith("/actions/publish")]
    assert len(publishes) == 1  # the state was read instead of publishing again


def test_publish_answered_504_but_published_is_a_success(
    zenodo_server: ZenodoServer, make_archive: ArchiveFactory, fn: FunctionSource, tmp_path: Path
) -> None:
    zenodo_server.fake.faults.publish_then_504 = 1
    _, published = release_version(make_archive(), fn, "1.0.0", tmp_path)
    assert published.doi is not None
    assert len(zenodo_server.fake.published()) == 1 and zenodo_server.fake.drafts() == []


def test_sandbox_reserves_the_doi_it_will_register(
    engine: Engine, fn: FunctionSource, tmp_path: Path
) -> None:
    with ZenodoServer(ZenodoFake(sandbox=True)) as server:
        client = ZenodoClient(server.url, server.token, sleep=lambda s: None)
        archive = ZenodoArchive(lambda ns: client, ArchiveStore(engine), doi_prefix="10.5072")
        reserved, published = release_version(archive, fn, "1.0.0", tmp_path)
        # The draft shows a 10.5281 pre-reserved DOI even on the sandbox; it must not be believed.
        assert reserved.doi == published.doi == f"10.5072/zenodo.{published.record_id}"
        entry = ArchiveStore(engine).get("fs-sc", "thumbnailer", "1.0.0")
        assert entry is not None and entry.doi == published.doi and entry.state == "published"


def test_token_never_in_urls_logs_or_errors(
    zenodo_server: ZenodoServer,
    make_archive: ArchiveFactory,
    fn: FunctionSource,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    zenodo_server.fake.faults.rate_limited = 1
    archive = make_archive()
    release_version(archive, fn, "1.0.0", tmp_path)
    token = zenodo_server.token
    bad = ZenodoClient(zenodo_server.url, "wrong-" + token)
    with pytest.raises(ZenodoError) as refused:
        bad.create({})
    assert refused.value.status == 403
    seen = zenodo_server.fake.seen
    assert all(token not in s.target and "access_token" not in s.target for s in seen)
    assert all(s.headers["User-Agent"].startswith("faaspub/") for s in seen)
    assert all(s.headers["Authorization"] in (f"Bearer {token}", f"Bearer wrong-{token}") for s in seen)
    for text in (caplog.text, str(refused.value), repr(refused.value), repr(bad), repr(archive)):
        assert token not in text
    assert "rate limited" in caplog.text


@pytest.mark.parametrize(
    ("citation", "version", "expected"),
    [
        (None, "1.0.0", "CITATION.cff: missing"),
        ("cff-version: 1.2.0\nmessage: m\ntitle: t\n", "1.0.0", "authors"),
        (CITATION.replace("license: MIT", "license: Not-A-License"), "1.0.0", "license"),
        (CITATION.replace("license: MIT\n", ""), "1.0.0", "no license"),
        (CITATION.replace("  - name: DESY FS-SC", "  - affiliation: DESY"), "1.0.0", "author has no name"),
        (CITATION, "v1.0", "is not X.Y.Z"),
        (CITATION, "1.0", "is not X.Y.Z"),
    ],
    ids=["missing", "invalid", "non-spdx", "no-license", "nameless-author", "v-tag", "two-parts"],
)
def test_bad_input_stops_before_any_deposition(
    zenodo_server: ZenodoServer,
    make_archive: ArchiveFactory,
    tmp_path: Path,
    citation: str | None,
    version: str,
    expected: str,
) -> None:
    fn = make_function(tmp_path / "bad", citation=citation)
    with pytest.raises(FaaspubError, match=expected):
        make_archive().reserve(fn, version)
    assert zenodo_server.fake.seen == []
    assert zenodo_server.fake.deposits == {}


def test_zenodo_validation_errors_name_the_field(
    zenodo_server: ZenodoServer, make_archive: ArchiveFactory, fn: FunctionSource, tmp_path: Path
) -> None:
    # An ORCID with a wrong check digit passes the CFF schema; our check stops it before Zenodo does.
    bad = make_function(tmp_path / "orcid", CITATION.replace("0000-0002-1825-0097", "0000-0002-1825-0098"))
    with pytest.raises(FaaspubError, match=r"authors\.0\.orcid"):
        make_archive().reserve(bad, "1.0.0")
    assert zenodo_server.fake.deposits == {}


def test_source_md5_mismatch_is_caught_and_the_draft_discarded(
    zenodo_server: ZenodoServer, make_archive: ArchiveFactory, fn: FunctionSource, tmp_path: Path
) -> None:
    zenodo_server.fake.faults.corrupt_uploads = 1
    with pytest.raises(ZenodoError, match="checksum"):
        release_version(make_archive(), fn, "1.0.0", tmp_path)
    assert zenodo_server.fake.deposits == {}


def test_upload_checksums_match_local_files(
    zenodo_server: ZenodoServer, make_archive: ArchiveFactory, fn: FunctionSource, tmp_path: Path
) -> None:
    _, published = release_version(make_archive(), fn, "1.0.0", tmp_path)
    record = ZenodoClient(zenodo_server.url, None).request("GET", f"records/{published.record_id}").json()
    by_key = {f["key"]: f["checksum"] for f in record["files"]}
    source = (tmp_path / "thumbnailer-1.0.0.tar.gz").read_bytes()
    assert by_key["thumbnailer-1.0.0.tar.gz"] == "md5:" + hashlib.md5(source).hexdigest()


def test_published_release_is_final(
    zenodo_server: ZenodoServer, make_archive: ArchiveFactory, fn: FunctionSource, tmp_path: Path
) -> None:
    _, published = release_version(make_archive(), fn, "1.0.0", tmp_path)
    archive = make_archive()
    archive.discard(fn, "1.0.0")  # never touches a published record
    assert archive.reserve(fn, "1.0.0") == published
    _, again = release_version(archive, fn, "1.0.0", tmp_path)
    assert again == published
    assert len(zenodo_server.fake.published()) == 1 and zenodo_server.fake.drafts() == []


def test_draft_deleted_behind_our_back_is_replaced(
    zenodo_server: ZenodoServer, make_archive: ArchiveFactory, fn: FunctionSource, tmp_path: Path
) -> None:
    release_version(make_archive(), fn, "1.0.0", tmp_path)
    reserved = make_archive().reserve(fn, "1.1.0")
    del zenodo_server.fake.deposits[int(reserved.record_id or 0)]  # someone clicked "delete" in the UI
    _, published = release_version(make_archive(), fn, "1.1.0", tmp_path)
    assert published.record_id != reserved.record_id
    assert len(zenodo_server.fake.concepts()) == 1 and zenodo_server.fake.drafts() == []


def test_published_doi_wins_over_a_wrong_reservation(
    engine: Engine, fn: FunctionSource, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with ZenodoServer(ZenodoFake(sandbox=True)) as server:
        client = ZenodoClient(server.url, server.token, sleep=lambda s: None)
        archive = ZenodoArchive(lambda ns: client, ArchiveStore(engine))  # prefix not configured
        reserved, published = release_version(archive, fn, "1.0.0", tmp_path)
        assert reserved.doi and reserved.doi.startswith("10.5281/")
        assert published.doi == f"10.5072/zenodo.{published.record_id}"
        entry = ArchiveStore(engine).get("fs-sc", "thumbnailer", "1.0.0")
        assert entry is not None and entry.doi == published.doi
        assert "not the reserved" in caplog.text


def test_a_function_without_its_own_citation_archives_the_repositorys(
    zenodo_server: ZenodoServer, make_archive: ArchiveFactory, tmp_path: Path
) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "CITATION.cff").write_text(CITATION, encoding="utf-8")
    fn = make_function(tmp_path / "thumbnailer", citation=None)
    reservation, published = release_version(make_archive(), fn, "1.0.0", tmp_path)
    assert published.doi == reservation.doi
    assert files_of(zenodo_server, published.record_id)["CITATION.cff"] == CITATION.encode()
