"""The /api/v1 routes against a catalogue seeded with real releases of examples/hello and cxi-metadata."""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from ruamel.yaml import YAML
from sqlalchemy import select

from publisher.catalogue.record import record_release
from publisher.citation.cff import parse_citation
from publisher.core.pipeline import citation_dict
from publisher.core.types import StorageEvent
from publisher.db.engine import transaction
from publisher.db.models import ApiToken, Function, WebhookDelivery
from publisher.manifest.load import load_function
from publisher.triggers.store import DeliveryRow, EventRow, cause_for, key_hash
from tests.catalogue.conftest import HELLO, Seeded, bearer, make_context, release_of, seed
from webhooks.app import create_app


def walk(client: TestClient, url: str, **headers: str) -> list[dict[str, Any]]:
    """Every item of a listing, following ``next`` links; checks the Link header agrees."""
    items: list[dict[str, Any]] = []
    pages = 0
    while url:
        response = client.get(url, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["items"])
        if body["next"]:
            assert response.headers["link"] == f'<{body["next"]}>; rel="next"'
            assert body["next_cursor"] in body["next"]
        url = body["next"]
        pages += 1
        assert pages < 50
    return items


# -- functions ---------------------------------------------------------------------------------------


def test_list_and_search_functions(client: TestClient) -> None:
    names = [f["name"] for f in client.get("/api/v1/functions").json()["items"]]
    assert names == ["cxi-metadata", "hello"]
    assert [f["name"] for f in client.get("/api/v1/functions?q=HELL").json()["items"]] == ["hello"]
    # q also matches the description
    assert [f["name"] for f in client.get("/api/v1/functions?q=hdf5").json()["items"]] == ["cxi-metadata"]
    assert [f["name"] for f in client.get("/api/v1/functions?keyword=example").json()["items"]] == ["hello"]
    assert client.get("/api/v1/functions?keyword=exam").json()["items"] == []  # whole keywords only
    assert [f["name"] for f in client.get("/api/v1/functions?namespace=xfel").json()["items"]] == [
        "cxi-metadata"
    ]
    assert client.get("/api/v1/functions?q=%25").json()["items"] == []  # LIKE wildcards are literal
    hello = client.get("/api/v1/functions?q=hello").json()["items"][0]
    assert hello["alias_version"] == "1.1.0"
    assert hello["concept_doi"] == "10.5281/zenodo.1000"


def test_search_by_trigger_path(client: TestClient) -> None:
    def found(path: str) -> list[str]:
        return [
            f["name"] for f in client.get("/api/v1/functions", params={"trigger_path": path}).json()["items"]
        ]

    assert found("/incoming") == ["cxi-metadata", "hello"]
    assert found("/incoming/run-7/") == ["cxi-metadata", "hello"]  # a folder below the watched path
    assert found("/") == ["cxi-metadata", "hello"]  # a folder above
    assert found("/incomingX") == []
    assert found("/elsewhere") == []


def test_function_pagination(seeded: Seeded, client: TestClient) -> None:
    source = load_function(HELLO, "local")
    with transaction(seeded.context.sessions) as session:
        for i in range(5):
            renamed = source.manifest.model_copy(update={"name": f"hello-{i}"})
            record_release(session, release_of(dataclasses.replace(source, manifest=renamed), "1.0.0"))
    items = walk(client, "/api/v1/functions?limit=2")
    names = [f["name"] for f in items]
    assert names == sorted(names)
    assert len(names) == len(set(names)) == 7
    first = client.get("/api/v1/functions?limit=2").json()
    assert first["next_cursor"] and len(first["items"]) == 2


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/functions?limit=0",
        "/api/v1/functions?limit=201",
        "/api/v1/functions?cursor=not-base64!",
        "/api/v1/activations?since=yesterday",
        "/api/v1/activations?status=exploded",
        "/api/v1/events?status=lost",
    ],
)
def test_bad_parameters_are_422_json(seeded: Seeded, client: TestClient, url: str) -> None:
    response = client.get(url, headers=bearer(seeded.tokens["*:read"]))
    assert response.status_code == 422
    assert set(response.json()) <= {"error", "hint"} and response.json()["error"]


def test_cursor_of_another_listing_is_refused(client: TestClient) -> None:
    cursor = client.get("/api/v1/activations?limit=1").json()["next_cursor"]
    response = client.get(f"/api/v1/functions?cursor={cursor}")
    assert response.status_code == 422
    assert "listing" in response.json()["error"]


def test_function_detail_forms(client: TestClient) -> None:
    plain = client.get("/api/v1/functions/hello").json()
    assert plain == client.get("/api/v1/functions/local/hello").json()
    assert plain == client.get("/api/v1/functions/hello?namespace=local").json()
    assert plain["doi"] == "10.5281/zenodo.1002"
    assert plain["concept_doi"] == "10.5281/zenodo.1000"
    assert plain["alias_version"] == "1.1.0"
    storage = [t for t in plain["triggers"] if t["kind"] == "storage"]
    assert storage == [
        {
            "kind": "storage",
            "source": "local",
            "path": "/incoming",
            "recursive": False,
            "events": ["created"],
            "match": "*.txt",
            "public": False,
        }
    ]
    assert any(t["kind"] == "http" and t["public"] for t in plain["triggers"])


def test_unknown_function_is_404_naming_it(client: TestClient) -> None:
    response = client.get("/api/v1/functions/nope")
    assert response.status_code == 404
    assert "nope" in response.json()["error"]
    response = client.get("/api/v1/functions/hello?namespace=xfel")
    assert response.status_code == 404 and "xfel" in response.json()["error"]
    assert client.get("/api/v1/functions/nope/versions").status_code == 404


def test_same_name_in_two_namespaces_needs_the_namespace(seeded: Seeded, client: TestClient) -> None:
    other = load_function(HELLO, "xfel")
    with transaction(seeded.context.sessions) as session:
        record_release(session, release_of(other, "2.0.0"), citation_dict(other))
    response = client.get("/api/v1/functions/hello")
    assert response.status_code == 409
    assert "local, xfel" in response.json()["error"]
    assert client.get("/api/v1/functions/xfel/hello").json()["alias_version"] == "2.0.0"


def test_citation_exports_are_for_the_live_version(client: TestClient) -> None:
    citation = client.get("/api/v1/functions/hello").json()["citation"]
    assert citation["bibtex"].startswith("@software{")
    assert "doi = {10.5281/zenodo.1002}" in citation["bibtex"]
    assert "version = {1.1.0}" in citation["bibtex"]
    assert citation["apa"].startswith("Doe, J. (")
    assert "(Version 1.1.0)" in citation["apa"] and "https://doi.org/10.5281/zenodo.1002" in citation["apa"]
    assert citation["codemeta"]["identifier"] == "https://doi.org/10.5281/zenodo.1002"
    # The CFF export is itself a valid CITATION.cff (official schema) for exactly this version.
    parsed = parse_citation(YAML().load(citation["cff"]))
    assert (parsed.version, parsed.doi) == ("1.1.0", "10.5281/zenodo.1002")


# -- versions ----------------------------------------------------------------------------------------


def test_versions(client: TestClient) -> None:
    versions = client.get("/api/v1/functions/hello/versions").json()["items"]
    assert [(v["version"], v["current"]) for v in versions] == [("1.1.0", True), ("1.0.0", False)]
    newest = versions[0]
    assert newest["doi"] == "10.5281/zenodo.1002"
    assert newest["digest"].startswith("sha256:") and newest["image"].endswith(newest["digest"])
    assert newest["test_summary"] == {"passed": 3, "failed": 0, "errors": 0, "skipped": 1}
    assert newest["runtime"] == "python:3.11"
    assert newest["created"].endswith("Z") or newest["created"].endswith("+00:00")
    assert [v["version"] for v in walk(client, "/api/v1/functions/hello/versions?limit=1")] == [
        "1.1.0",
        "1.0.0",
    ]


def test_version_by_doi(client: TestClient) -> None:
    found = client.get("/api/v1/versions", params={"doi": "https://doi.org/10.5281/ZENODO.1001"}).json()
    assert [(v["function"], v["version"], v["current"]) for v in found["items"]] == [
        ("hello", "1.0.0", False)
    ]
    assert client.get("/api/v1/versions", params={"doi": "10.1/none"}).json()["items"] == []


# -- activations -------------------------------------------------------------------------------------


def test_activation_filters_and_pagination(seeded: Seeded, client: TestClient) -> None:
    everything = walk(client, "/api/v1/activations?limit=3")
    assert [a["id"] for a in everything] == list(reversed(seeded.activation_ids))
    assert "logs" not in everything[0]
    starts = [a["start"] for a in everything]
    assert starts == sorted(starts, reverse=True)

    def ids(**params: Any) -> list[str]:
        return [a["id"] for a in client.get("/api/v1/activations", params=params).json()["items"]]

    assert ids(version="1.0.0") == ["past0005", "past0003", "past0001"]
    assert ids(status="application_error") == ["past0006", "past0003", "past0000"]
    assert ids(status="failed") == ["past0006", "past0003", "past0000"]
    assert ids(status="success", limit=2) == ["past0005", "past0004"]
    assert ids(function="cxi-metadata") == []
    assert ids(namespace="xfel") == []
    middle = datetime.now(UTC) - timedelta(hours=3) + timedelta(minutes=25)
    assert ids(since=middle.isoformat(), until=(middle + timedelta(minutes=20)).isoformat()) == [
        "past0004",
        "past0003",
    ]
    # a time without a zone is UTC
    naive = middle.replace(tzinfo=None).isoformat()
    assert ids(since=naive)[-1] == "past0003"
    operator = bearer(seeded.tokens["*:read"])  # results and logs need a token in every mode
    assert client.get("/api/v1/activations", params={"logs": "true"}).status_code == 401
    params = {"logs": "true", "limit": 1}
    with_logs = client.get("/api/v1/activations", params=params, headers=operator).json()["items"][0]
    assert with_logs["logs"] == ["line 6"] and with_logs["result"] == {"i": 6}


def test_activation_detail(seeded: Seeded, client: TestClient) -> None:
    assert client.get("/api/v1/activations/past0003").status_code == 401
    client.headers["Authorization"] = f"Bearer {seeded.tokens['local:read']}"
    detail = client.get("/api/v1/activations/past0003").json()
    assert detail["status"] == "application_error"
    assert detail["logs"] == ["line 3"] and detail["result"] == {"i": 3}
    assert detail["cause"] == "storage"
    missing = client.get("/api/v1/activations/nothing-here")
    assert missing.status_code == 404 and "nothing-here" in missing.json()["error"]


# -- events and deliveries ---------------------------------------------------------------------------


def seed_events(seeded: Seeded, count: int, dead: int) -> None:
    """Storage events for hello 1.1.0 in the trigger tables; the last ``dead`` were given up on."""
    with seeded.context.sessions() as session:
        fn = session.scalar(select(Function).where(Function.name == "hello"))
        assert fn is not None
        digest = next(v.digest for v in fn.versions if v.version == "1.1.0")
    with transaction(seeded.context.sessions) as session:
        for i in range(count):
            event = StorageEvent("local", f"/incoming/f{i}.txt", "created", datetime.now(UTC), size=i)
            row = EventRow(
                key_hash=key_hash(event.key()),
                key=event.key(),
                source=event.source,
                path=event.path,
                kind=event.kind,
                size=event.size,
                time=event.time,
            )
            session.add(row)
            session.flush()
            gave_up = i >= count - dead
            session.add(
                DeliveryRow(
                    event_id=row.id,
                    cause=cause_for(event.key(), "local", "hello", digest),
                    namespace="local",
                    function="hello",
                    version="1.1.0",
                    digest=digest,
                    status="dead" if gave_up else "pending",
                    attempts=10 if gave_up else 0,
                    last_error="backend unreachable" if gave_up else None,
                )
            )


def test_events_and_dead_letters(seeded: Seeded, client: TestClient) -> None:
    seed_events(seeded, count=5, dead=3)
    assert client.get("/api/v1/events").status_code == 401  # storage paths are never public
    client.headers["Authorization"] = f"Bearer {seeded.tokens['*:read']}"
    events = walk(client, "/api/v1/events?limit=2")
    assert [e["path"] for e in events] == [f"/incoming/f{i}.txt" for i in reversed(range(5))]
    assert {e["status"] for e in events} == {"pending", "dead"}
    dead = walk(client, "/api/v1/events/dead?limit=2")
    assert [e["path"] for e in dead] == ["/incoming/f4.txt", "/incoming/f3.txt", "/incoming/f2.txt"]
    assert all(e["last_error"] == "backend unreachable" and e["attempts"] == 10 for e in dead)
    assert [e["id"] for e in walk(client, "/api/v1/events?status=dead")] == [e["id"] for e in dead]
    assert client.get("/api/v1/events/dead?function=cxi-metadata").json()["items"] == []
    # a cursor of the full listing is not valid for the dead letters
    cursor = client.get("/api/v1/events?limit=1").json()["next_cursor"]
    assert client.get(f"/api/v1/events/dead?cursor={cursor}").status_code == 422


def test_webhook_deliveries(seeded: Seeded, client: TestClient) -> None:
    with transaction(seeded.context.sessions) as session:
        for i in range(5):
            session.add(
                WebhookDelivery(
                    source="gitlab",
                    event="Tag Push Hook",
                    project="fs-sc/hello",
                    outcome="unauthorized" if i % 2 else "queued",
                    detail=f"delivery {i}",
                    body={"secret": "never listed"},
                    answer_ms=3.0,
                )
            )
    assert client.get("/api/v1/deliveries").status_code == 401
    client.headers["Authorization"] = f"Bearer {seeded.tokens['*:read']}"
    items = walk(client, "/api/v1/deliveries?limit=2")
    assert [d["detail"] for d in items] == [f"delivery {i}" for i in reversed(range(5))]
    assert all("body" not in d for d in items)
    unauthorized = walk(client, "/api/v1/deliveries?outcome=unauthorized&limit=1")
    assert [d["detail"] for d in unauthorized] == ["delivery 3", "delivery 1"]
    assert client.get("/api/v1/deliveries?source=s3").json()["items"] == []


# -- invoke, rollback, replay ------------------------------------------------------------------------


def test_invoke_needs_a_token(client: TestClient) -> None:
    response = client.post("/api/v1/functions/hello/invoke", json={})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    response = client.post("/api/v1/functions/hello/invoke", json={}, headers=bearer("fp_unknown"))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    # a missing function does not tell an anonymous caller anything either
    assert client.post("/api/v1/functions/nope/invoke", json={}).status_code == 401


@pytest.mark.parametrize("token", ["local:read", "xfel:invoke", "xfel:admin"])
def test_invoke_refuses_wrong_scope_or_namespace(seeded: Seeded, client: TestClient, token: str) -> None:
    response = client.post("/api/v1/functions/hello/invoke", json={}, headers=bearer(seeded.tokens[token]))
    assert response.status_code == 403
    assert "local" in response.json()["error"]
    assert seeded.backend.calls == []


@pytest.mark.parametrize("token", ["local:invoke", "local:admin", "*:invoke"])
def test_invoke_runs_the_function(seeded: Seeded, client: TestClient, token: str) -> None:
    response = client.post(
        "/api/v1/functions/hello/invoke", json={"name": "Ada"}, headers=bearer(seeded.tokens[token])
    )
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["result"] == {"greeting": "Hello, Ada!"}
    assert (run["status"], run["version"], run["namespace"], run["cause"]) == (
        "success",
        "1.1.0",
        "local",
        "api",
    )
    assert any("invoked hello@1.1.0" in line for line in run["logs"])
    assert seeded.backend.calls == [("invoke", "local", "hello", {"name": "Ada"}, None, "api")]
    listed = client.get("/api/v1/activations?function=hello&limit=1").json()["items"][0]
    assert listed["id"] == run["id"]
    detail = client.get(f"/api/v1/activations/{run['id']}", headers=bearer(seeded.tokens[token]))
    assert detail.json()["logs"] == run["logs"]


def test_invoke_a_version_and_bad_input(seeded: Seeded, client: TestClient) -> None:
    headers = bearer(seeded.tokens["local:invoke"])
    run = client.post("/api/v1/functions/hello/invoke?version=1.0.0", json={}, headers=headers).json()
    assert run["version"] == "1.0.0" and run["result"] == {"greeting": "Hello, world!"}
    missing = client.post("/api/v1/functions/hello/invoke?version=9.9.9", json={}, headers=headers)
    assert missing.status_code == 404 and "9.9.9" in missing.json()["error"]
    not_object = client.post("/api/v1/functions/hello/invoke", json=[1, 2], headers=headers)
    assert not_object.status_code == 422 and not_object.json()["error"]
    not_json = client.post(
        "/api/v1/functions/hello/invoke",
        content=b"{nope",
        headers={**headers, "Content-Type": "application/json"},
    )
    assert not_json.status_code == 422
    assert client.post("/api/v1/functions/nope/invoke", json={}, headers=headers).status_code == 404
    assert len(seeded.backend.calls) == 1


def test_rollback_needs_admin(seeded: Seeded, client: TestClient) -> None:
    url = "/api/v1/functions/hello/rollback"
    assert client.post(url, json={"version": "1.0.0"}).status_code == 401
    denied = client.post(url, json={"version": "1.0.0"}, headers=bearer(seeded.tokens["local:invoke"]))
    assert denied.status_code == 403
    headers = bearer(seeded.tokens["local:admin"])
    assert client.post(url, json={"version": "7.0.0"}, headers=headers).status_code == 404
    assert client.post(url, json={}, headers=headers).status_code == 422
    moved = client.post(url, json={"version": "1.0.0"}, headers=headers)
    assert moved.status_code == 200, moved.text
    assert moved.json()["alias_version"] == "1.0.0" and moved.json()["doi"] == "10.5281/zenodo.1001"
    assert seeded.backend.calls == [("rollback", "local", "hello", "1.0.0")]
    versions = client.get("/api/v1/functions/hello/versions").json()["items"]
    assert [v["version"] for v in versions if v["current"]] == ["1.0.0"]


def test_replay_queues_existing_files(seeded: Seeded, client: TestClient) -> None:
    root = Path(seeded.context.settings.storage.local.root) / "incoming"
    root.mkdir(parents=True)
    for name in ("a.txt", "b.txt", "skip.bin"):
        (root / name).write_text(name)
    url = "/api/v1/functions/hello/replay"
    assert client.post(url, json={"path": "/incoming"}).status_code == 401
    assert (
        client.post(
            url, json={"path": "/incoming"}, headers=bearer(seeded.tokens["local:invoke"])
        ).status_code
        == 403
    )
    response = client.post(
        url, json={"path": "/incoming", "version": "1.0.0"}, headers=bearer(seeded.tokens["*:admin"])
    )
    assert response.status_code == 202, response.text
    report = response.json()
    assert (report["version"], report["scanned"], report["queued"]) == ("1.0.0", 3, 2)
    queued = client.get("/api/v1/events?status=pending", headers=bearer(seeded.tokens["*:read"]))
    queued = queued.json()["items"]
    assert sorted(e["path"] for e in queued) == ["/incoming/a.txt", "/incoming/b.txt"]
    assert {(e["origin"], e["version"]) for e in queued} == {("replay", "1.0.0")}


# -- private catalogue, tokens -----------------------------------------------------------------------


@pytest.fixture()
def private(tmp_path: Path) -> Any:
    context = make_context(tmp_path, catalogue_public=False)
    data = seed(context)
    with TestClient(create_app(context)) as test_client:
        yield data, test_client
    context.engine.dispose()


def test_private_catalogue_needs_a_read_token(private: Any) -> None:
    data, client = private
    for url in ("/api/v1/functions", "/api/v1/functions/hello", "/api/v1/activations", "/api/v1/events/dead"):
        response = client.get(url)
        assert response.status_code == 401, url
        assert response.headers["www-authenticate"] == "Bearer"
    xfel = bearer(data.tokens["xfel:read"])
    assert [f["name"] for f in client.get("/api/v1/functions", headers=xfel).json()["items"]] == [
        "cxi-metadata"
    ]
    assert client.get("/api/v1/functions?namespace=local", headers=xfel).status_code == 403
    assert client.get("/api/v1/functions/hello", headers=xfel).status_code == 403
    assert client.get("/api/v1/activations", headers=xfel).json()["items"] == []
    assert client.get("/api/v1/activations/past0001", headers=xfel).status_code == 403
    assert client.get("/api/v1/deliveries", headers=xfel).status_code == 403
    operator = bearer(data.tokens["*:read"])
    assert len(client.get("/api/v1/functions", headers=operator).json()["items"]) == 2
    assert client.get("/api/v1/deliveries", headers=operator).status_code == 200
    assert client.get("/", follow_redirects=False).status_code == 401  # pages cannot send tokens


def test_revoked_token_and_last_used(seeded: Seeded, client: TestClient) -> None:
    from publisher.catalogue.auth import revoke_token

    token = seeded.tokens["local:invoke"]
    assert client.post("/api/v1/functions/hello/invoke", json={}, headers=bearer(token)).status_code == 200
    with transaction(seeded.context.sessions) as session:
        row = session.scalar(
            select(ApiToken).where(ApiToken.description == "test invoke", ApiToken.namespace == "local")
        )
        assert row is not None and row.last_used is not None
        assert token not in (row.token_hash, row.description)
        revoke_token(session, row.id)
    assert client.post("/api/v1/functions/hello/invoke", json={}, headers=bearer(token)).status_code == 401


def test_tokens_never_reach_logs(
    seeded: Seeded, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = seeded.tokens["local:invoke"]
    client.post("/api/v1/functions/hello/invoke", json={"name": "x"}, headers=bearer(token))
    client.post("/api/v1/functions/hello/rollback", json={"version": "1.0.0"}, headers=bearer(token))
    client.get("/api/v1/functions", headers=bearer(token + "x"))
    assert token not in caplog.text
    assert token[3:] not in caplog.text


def test_openapi_describes_the_api(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/api/v1/functions",
        "/api/v1/functions/{name}",
        "/api/v1/functions/{name}/versions",
        "/api/v1/functions/{name}/invoke",
        "/api/v1/functions/{name}/rollback",
        "/api/v1/functions/{name}/replay",
        "/api/v1/activations",
        "/api/v1/activations/{activation_id}",
        "/api/v1/events",
        "/api/v1/events/dead",
        "/api/v1/deliveries",
    ):
        assert path in paths, path
    invoke = paths["/api/v1/functions/{name}/invoke"]["post"]
    assert invoke["security"] == [{"HTTPBearer": []}]
    assert invoke["responses"]["401"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")
    assert "/" not in [p for p in paths if not p.startswith(("/api", "/hooks", "/healthz", "/metrics"))]
