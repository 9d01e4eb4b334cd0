"""Bearer-token challenge handling (GitLab's registry style) against a tiny fake registry + token service.

The Debian registry cannot issue bearer tokens without TLS certificates, so this fake speaks just
enough of the protocol: ``/v2/...`` answers 401 with ``Www-Authenticate: Bearer realm,service,scope``
until it sees a token minted by ``/jwt/auth`` for exactly that scope; ``/jwt/auth`` wants basic auth.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from publisher.errors import FaaspubError
from publisher.oci.auth import Credentials, parse_challenge
from publisher.oci.registry import RegistryClient

USER, PASSWORD = "deploy-token", "glpat-bearer-" + "x" * 8


class FakeGitLabRegistry(ThreadingHTTPServer):
    token_requests: list[dict[str, list[str]]]


class Handler(BaseHTTPRequestHandler):
    server: FakeGitLabRegistry

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: dict[str, object], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        host = f"127.0.0.1:{self.server.server_address[1]}"
        if url.path == "/jwt/auth":
            query = parse_qs(url.query)
            self.server.token_requests.append(query)
            expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if self.headers.get("Authorization") != expected:
                self._send(
                    401, {"errors": [{"code": "UNAUTHORIZED", "message": "HTTP Basic: Access denied"}]}
                )
                return
            if query.get("service") != ["container_registry"]:
                self._send(400, {"error": "bad service"})
                return
            self._send(200, {"token": "tok:" + " ".join(sorted(query.get("scope", [])))})
            return
        if url.path == "/v2/":
            scope = ""
        elif url.path == "/v2/group/proj/tags/list":
            scope = "repository:group/proj:pull"
        else:
            self._send(404, {"errors": [{"code": "NAME_UNKNOWN", "message": "unknown"}]})
            return
        granted = (self.headers.get("Authorization") or "").removeprefix("Bearer tok:").split(" ")
        if self.headers.get("Authorization", "").startswith("Bearer tok:") and (
            not scope or scope in granted
        ):
            self._send(200, {"name": "group/proj", "tags": ["v2", "v1"]} if scope else {})
            return
        challenge = f'Bearer realm="http://{host}/jwt/auth",service="container_registry"'
        if scope:
            challenge += f',scope="{scope}"'
        self._send(
            401,
            {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
            {"Www-Authenticate": challenge},
        )


@pytest.fixture
def fake_registry() -> Iterator[FakeGitLabRegistry]:
    server = FakeGitLabRegistry(("127.0.0.1", 0), Handler)
    server.token_requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _url(server: FakeGitLabRegistry) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_challenge_is_parsed() -> None:
    c = parse_challenge(
        'Bearer realm="https://gitlab.example.org/jwt/auth",service="container_registry",scope="a:b:pull"'
    )
    assert c.scheme == "bearer"
    assert c.params == {
        "realm": "https://gitlab.example.org/jwt/auth",
        "service": "container_registry",
        "scope": "a:b:pull",
    }


def test_bearer_token_flow_and_reuse(fake_registry: FakeGitLabRegistry) -> None:
    client = RegistryClient(_url(fake_registry), credentials=Credentials(USER, PASSWORD))
    assert client.tags("group/proj") == ["v1", "v2"]
    assert client.tags("group/proj") == ["v1", "v2"]
    assert len(fake_registry.token_requests) == 1
    request = fake_registry.token_requests[0]
    assert request["service"] == ["container_registry"]
    assert request["scope"] == ["repository:group/proj:pull"]


def test_bearer_with_wrong_password_is_a_clear_error(fake_registry: FakeGitLabRegistry) -> None:
    wrong = "wrong-" + PASSWORD
    client = RegistryClient(_url(fake_registry), credentials=Credentials(USER, wrong))
    with pytest.raises(FaaspubError) as info:
        client.tags("group/proj")
    text = str(info.value)
    assert f"127.0.0.1:{fake_registry.server_address[1]}" in text and "401" in text
    assert wrong not in text and PASSWORD not in text
