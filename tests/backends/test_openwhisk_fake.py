"""The fake OpenWhisk controller itself: swagger validation and controller behaviours (contracts.md B)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.fakes.openwhisk_server import OpenWhiskServer


@pytest.fixture()
def fake() -> Iterator[tuple[OpenWhiskServer, requests.Session]]:
    with OpenWhiskServer() as server:
        session = requests.Session()
        user, _, key = server.auth.partition(":")
        session.auth = (user, key)
        yield server, session
        session.close()


def test_auth_and_error_shape(fake: tuple[OpenWhiskServer, requests.Session]) -> None:
    server, session = fake
    anonymous = requests.get(f"{server.url}/api/v1/namespaces")
    assert anonymous.status_code == 401
    body = anonymous.json()
    assert body["error"] == "The supplied authentication is invalid" and body["code"]
    assert session.get(f"{server.url}/api/v1/namespaces").json() == ["guest"]
    other = session.get(f"{server.url}/api/v1/namespaces/someone-else/actions")
    assert other.status_code == 403
    assert other.json()["error"] == "The supplied authentication is not authorized to access this resource."
    missing = session.get(f"{server.url}/api/v1/namespaces/_/actions/nope")
    assert (missing.status_code, missing.json()["error"]) == (404, "The requested resource does not exist.")


def test_requests_are_validated_against_the_swagger(fake: tuple[OpenWhiskServer, requests.Session]) -> None:
    server, session = fake
    base = f"{server.url}/api/v1/namespaces/_"
    assert session.get(f"{base}/actions", params={"bogus": 1}).status_code == 400
    assert session.get(f"{base}/actions", params={"limit": "ten"}).status_code == 400
    bad_limits = session.put(
        f"{base}/actions/a", json={"exec": {"kind": "blackbox", "image": "i:1"}, "limits": {"memory": "lots"}}
    )
    assert bad_limits.status_code == 400 and "limits/memory" in bad_limits.json()["error"]
    kind = session.put(f"{base}/actions/a", json={"exec": {"kind": "python:3", "code": "x"}})
    assert kind.status_code == 400
    assert kind.json()["error"].startswith(
        "The specified runtime 'python:3' is not supported by this platform."
    )
    assert session.patch(f"{base}/actions/a").status_code in (404, 405, 501)
    assert session.post(f"{base}/rules/r", json={"status": "sleeping"}).status_code == 400


def test_put_semantics_limits_and_triggers(fake: tuple[OpenWhiskServer, requests.Session]) -> None:
    server, session = fake
    base = f"{server.url}/api/v1/namespaces/_"
    action = {"exec": {"kind": "blackbox", "image": "r/i:1"}}
    created = session.put(f"{base}/actions/a", json=action)
    assert created.status_code == 200
    entity = created.json()
    assert entity["version"] == "0.0.1" and entity["exec"] == {
        "kind": "blackbox",
        "image": "r/i:1",
        "binary": False,
    }
    assert {"key": "exec", "value": "blackbox"} in entity["annotations"]
    conflict = session.put(f"{base}/actions/a", json=action)
    assert conflict.status_code == 409 and conflict.json()["error"] == "resource already exists"
    updated = session.put(f"{base}/actions/a", params={"overwrite": "true"}, json=action)
    assert updated.json()["version"] == "0.0.2"
    too_big = session.put(f"{base}/actions/b", json={**action, "limits": {"memory": 1024}})
    assert too_big.json()["error"] == "memory 1024 MB exceeds allowed threshold of 512 MB"
    parallel = session.put(f"{base}/actions/b", json={**action, "limits": {"concurrency": 2}})
    assert parallel.json()["error"] == "concurrency 2 exceeds allowed threshold of 1"
    in_missing_package = session.put(f"{base}/actions/nopkg/c", json=action)
    assert in_missing_package.status_code == 404

    assert session.put(f"{base}/triggers/t", json={"name": "t"}).status_code == 200
    assert session.post(f"{base}/triggers/t", json={"x": 1}).status_code == 204  # no active rule
    rule = session.put(f"{base}/rules/r", json={"name": "r", "trigger": "/_/t", "action": "/_/a"}).json()
    assert rule["status"] == "active" and rule["trigger"] == {"path": "guest", "name": "t"}
    fired = session.post(f"{base}/triggers/t", json={"x": 1})
    assert fired.status_code == 202 and fired.json()["activationId"]
    assert session.post(f"{base}/rules/r", json={"status": "inactive"}).status_code == 200
    assert session.post(f"{base}/triggers/t", json={}).status_code == 204
    deleted = session.delete(f"{base}/actions/a")
    assert deleted.status_code == 200 and deleted.json()["name"] == "a"
