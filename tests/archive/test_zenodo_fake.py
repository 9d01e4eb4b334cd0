"""The fake Zenodo follows the contract of zenodo.md §1 (so the release tests mean something)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import requests

from tests.fakes.zenodo_server import ZenodoFake, ZenodoServer

GOOD = {
    "upload_type": "software",
    "title": "t",
    "description": "d",
    "creators": [{"name": "Doe, Jane", "orcid": "0000-0002-1825-0097"}],
    "license": "MIT",
    "version": "1.0.0",
    "publication_date": "2026-05-19",
    "keywords": ["k"],
}


class Api:
    """Raw HTTP against the fake, with the token in the header."""

    def __init__(self, server: ZenodoServer, token: str | None = None) -> None:
        self.url = server.url
        self.headers = {"Authorization": f"Bearer {token or server.token}"}

    def __call__(self, method: str, path: str, **kw: Any) -> requests.Response:
        url = path if path.startswith("http") else f"{self.url}/{path}"
        headers = {**self.headers, **kw.pop("headers", {})}
        return requests.request(method, url, headers=headers, timeout=5, **kw)

    def draft(self, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self("POST", "deposit/depositions", json={"metadata": metadata or {}})
        assert response.status_code == 201, response.text
        return dict(response.json())

    def upload(self, dep: dict[str, Any], key: str, data: bytes) -> requests.Response:
        return self("PUT", f"{dep['links']['bucket']}/{key}", data=data)

    def published(self, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        dep = self.draft(metadata or GOOD)
        assert self.upload(dep, "a.txt", b"hello").status_code == 201
        response = self("POST", dep["links"]["publish"])
        assert response.status_code == 202, response.text
        return dict(response.json())


@pytest.fixture
def api(zenodo_server: ZenodoServer) -> Api:
    return Api(zenodo_server)


def test_create_answers_a_draft_with_prereserved_doi_and_absolute_links(api: Api) -> None:
    dep = api.draft()
    assert dep["state"] == "unsubmitted" and dep["submitted"] is False
    assert "doi" not in dep
    assert int(dep["conceptrecid"]) == dep["id"] - 1 and dep["record_id"] == dep["id"]
    assert dep["metadata"]["prereserve_doi"] == {"doi": f"10.5281/zenodo.{dep['id']}", "recid": dep["id"]}
    assert dep["links"]["bucket"].startswith(api.url + "/files/")
    assert dep["links"]["latest_draft"] == f"{api.url}/deposit/depositions/{dep['id']}"


def test_without_token_403_and_docs_mode_401(zenodo_server: ZenodoServer) -> None:
    anonymous = requests.post(f"{zenodo_server.url}/deposit/depositions", json={}, timeout=5)
    assert anonymous.status_code == 403
    zenodo_server.fake.auth_mode = "docs"
    assert requests.post(f"{zenodo_server.url}/deposit/depositions", json={}, timeout=5).status_code == 401
    wrong = Api(zenodo_server, token="nope")("POST", "deposit/depositions", json={})
    assert wrong.status_code == 403 and wrong.json()["message"] == "Permission denied."


def test_missing_scope_and_foreign_deposition_are_refused(zenodo_server: ZenodoServer) -> None:
    zenodo_server.fake.tokens["write-only"] = (2, {"deposit:write"})
    zenodo_server.fake.tokens["other-user"] = (3, {"deposit:write", "deposit:actions"})
    writer = Api(zenodo_server, token="write-only")
    dep = writer.draft(GOOD)
    assert writer("POST", dep["links"]["publish"]).status_code == 403
    assert Api(zenodo_server, token="other-user")("GET", dep["links"]["self"]).status_code == 403


def test_json_bodies_need_the_json_content_type(api: Api) -> None:
    response = api("POST", "deposit/depositions", data=b"{}", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415


def test_validation_error_shapes(zenodo_server: ZenodoServer, api: Api) -> None:
    response = api("POST", "deposit/depositions", json={"metadata": {"license": "foo"}, "extra": 1})
    assert response.status_code == 400
    assert response.json()["errors"] == [{"field": "extra", "messages": ["Unknown field."]}]
    response = api("POST", "deposit/depositions", json={"metadata": {"license": "foo"}})
    assert response.json() == {
        "status": 400,
        "message": "A validation error occurred.",
        "errors": [{"field": "metadata.license", "messages": ["Invalid license provided: foo"]}],
    }
    zenodo_server.fake.error_shape = "legacy"
    response = api("POST", "deposit/depositions", json={"metadata": {"access_right": "x"}})
    assert response.json()["errors"] == [{"field": "metadata.access_right", "message": "Not a valid choice"}]


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({"related_identifiers": {}}, "metadata.related_identifiers"),
        ({"related_identifiers": ["x"]}, "metadata.related_identifiers.0"),
        (
            {"related_identifiers": [{"identifier": "10.5281/zenodo.1", "relation": "isFriendOf"}]},
            "metadata.related_identifiers.0.relation",
        ),
        (
            {"related_identifiers": [{"identifier": "registry/ns/img@sha256:abc", "relation": "isSourceOf"}]},
            "metadata.related_identifiers.0.identifier",
        ),
        ({"communities": ["slug"]}, "communities"),
        ({"license": 123}, "metadata.license"),
        ({"publication_date": "2026-13-40"}, "metadata.publication_date"),
        ({"creators": [{"name": "Doe, Jane", "orcid": "0000-0002-1825-0098"}]}, "metadata.creators.0.orcid"),
    ],
)
def test_malformed_metadata_is_refused(api: Api, metadata: dict[str, Any], field: str) -> None:
    response = api("POST", "deposit/depositions", json={"metadata": metadata})
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == [field]


def test_relations_are_case_insensitive_and_unknown_metadata_keys_dropped(api: Api) -> None:
    dep = api.draft(
        {
            "related_identifiers": [{"identifier": "https://x.org/a", "relation": "IsNewVersionOf"}],
            "no_such_key": 1,
        }
    )
    assert dep["metadata"]["related_identifiers"][0]["relation"] == "isNewVersionOf"
    assert "no_such_key" not in dep["metadata"]


def test_put_replaces_the_whole_metadata(api: Api) -> None:
    dep = api.draft(GOOD)
    response = api("PUT", dep["links"]["self"], json={"metadata": {"title": "only"}})
    assert response.status_code == 200
    assert "keywords" not in response.json()["metadata"]
    assert response.json()["metadata"]["title"] == "only"


def test_publish_requires_metadata_and_a_file_and_reports_all(api: Api) -> None:
    dep = api.draft({"creators": [{"name": "Doe,"}]})
    response = api("POST", dep["links"]["publish"])
    assert response.status_code == 400
    fields = {e["field"] for e in response.json()["errors"]}
    assert {
        "metadata.upload_type",
        "metadata.title",
        "metadata.description",
        "metadata.creators.0.name",
        "metadata.license",
        "files.enabled",
    } <= fields


def test_bucket_upload_checksums_and_overwrite(api: Api) -> None:
    dep = api.draft(GOOD)
    first = api.upload(dep, "a.txt", b"one")
    assert first.status_code == 201
    assert first.json()["checksum"] == "md5:" + hashlib.md5(b"one").hexdigest()
    api.upload(dep, "a.txt", b"two")
    files = api("GET", dep["links"]["self"]).json()["files"]
    assert [(f["filename"], f["checksum"]) for f in files] == [("a.txt", hashlib.md5(b"two").hexdigest())]


def test_published_lifecycle(api: Api) -> None:
    record = api.published()
    assert record["state"] == "done" and record["submitted"] is True
    assert record["doi"] == f"10.5281/zenodo.{record['id']}"
    assert record["conceptdoi"] == f"10.5281/zenodo.{record['conceptrecid']}"
    dep_url = f"{api.url}/deposit/depositions/{record['id']}"
    assert api("PUT", dep_url, json={"metadata": GOOD}).status_code == 404
    assert api("POST", f"{dep_url}/actions/publish").status_code == 404
    assert api("DELETE", dep_url).status_code == 404
    file_id = record["files"][0]["id"]
    assert api("DELETE", f"{dep_url}/files/{file_id}").status_code == 403
    assert api("PUT", f"{dep_url}/files", json=[]).status_code == 405
    assert api("POST", f"{dep_url}/actions/edit").status_code == 201
    assert api("PUT", dep_url, json={"metadata": {**GOOD, "title": "edited"}}).status_code == 200


def test_draft_delete_answers_204(api: Api) -> None:
    dep = api.draft()
    assert api("DELETE", dep["links"]["self"]).status_code == 204
    assert api("GET", dep["links"]["self"]).status_code == 404


def test_new_version_copies_files_drops_version_and_allows_one_draft(api: Api) -> None:
    record = api.published()
    response = api("POST", f"{api.url}/deposit/depositions/{record['id']}/actions/newversion")
    assert response.status_code == 201
    draft = response.json()
    assert draft["id"] != record["id"] and draft["conceptrecid"] == record["conceptrecid"]
    assert draft["links"]["latest_draft"].endswith(f"/{draft['id']}")
    assert "version" not in draft["metadata"]
    assert [f["filename"] for f in draft["files"]] == ["a.txt"]
    assert draft["files"][0]["id"] != record["files"][0]["id"]
    again = api("POST", f"{api.url}/deposit/depositions/{record['id']}/actions/newversion")
    assert again.status_code == 400


def test_records_api_and_latest_version(api: Api) -> None:
    record = api.published()
    draft = api("POST", f"{api.url}/deposit/depositions/{record['id']}/actions/newversion").json()
    api("PUT", draft["links"]["self"], json={"metadata": {**GOOD, "version": "2.0.0"}})
    api("POST", draft["links"]["publish"])
    latest = requests.get(f"{api.url}/records/{record['id']}/versions/latest", timeout=5).json()
    assert latest["id"] == draft["id"]
    assert latest["files"][0]["checksum"].startswith("md5:")
    query = {"q": f"conceptrecid:{record['conceptrecid']}", "all_versions": "1"}
    hits = requests.get(f"{api.url}/records", params=query, timeout=5).json()["hits"]["hits"]
    assert [h["metadata"]["version"] for h in hits] == ["2.0.0", "1.0.0"]


def test_rate_limit_headers_and_429_with_retry_after(zenodo_server: ZenodoServer, api: Api) -> None:
    assert "X-RateLimit-Remaining" in api("GET", "deposit/depositions").headers
    zenodo_server.fake.faults.rate_limited = 1
    limited = api("GET", "deposit/depositions")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert api("GET", "deposit/depositions").status_code == 200


def test_sandbox_prefix_trap() -> None:
    with ZenodoServer(ZenodoFake(sandbox=True)) as server:
        api = Api(server)
        dep = api.draft(GOOD)
        assert dep["metadata"]["prereserve_doi"]["doi"].startswith("10.5281/")  # the real quirk
        echoed = api(
            "PUT",
            dep["links"]["self"],
            json={"metadata": {**GOOD, "doi": dep["metadata"]["prereserve_doi"]["doi"]}},
        )
        assert echoed.status_code == 400
        assert "should be 10.5072" in echoed.json()["errors"][0]["messages"][0]
        api.upload(dep, "a.txt", b"x")
        assert api("POST", dep["links"]["publish"]).json()["doi"] == f"10.5072/zenodo.{dep['id']}"
