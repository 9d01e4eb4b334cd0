"""Trigger fires over the OpenWhisk client's pooled keep-alive connections: against the fake
controller (202 / 204 / 404, 429 retried, outages), a peer that closes idle connections, TLS, and the
deliverer firing a batch concurrently with one trigger activation per event."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from publisher.backends import naming
from publisher.backends.errors import BackendUnavailable
from publisher.backends.openwhisk import OpenWhiskBackend
from publisher.backends.openwhisk_client import OpenWhiskClient
from publisher.config import Settings
from publisher.core.context import Context
from publisher.errors import FaaspubError
from publisher.triggers.bindings import BindingCache
from publisher.triggers.delivery import Deliverer
from publisher.triggers.intake import Intake
from publisher.triggers.store import LedgerRow
from tests.fakes.openwhisk_server import OpenWhiskServer
from tests.triggers.conftest import publish_rows
from tests.triggers.test_delivery import event

TRIGGER = naming.trigger_name("local", "summary")


@pytest.fixture
def server() -> Iterator[OpenWhiskServer]:
    with OpenWhiskServer(None) as running:
        yield running


@pytest.fixture
def ow_context(tmp_path: Path, server: OpenWhiskServer) -> Context:
    openwhisk = {"api_host": server.url, "auth": server.auth, "namespace": "guest"}
    context = Context(
        Settings.model_validate(
            {
                "database": {"url": f"sqlite:///{tmp_path / 'faaspub.db'}"},
                "storage": {"local": {"root": str(tmp_path / "data")}},
                "state_dir": str(tmp_path / "state"),
                "backend": {"kind": "openwhisk", "openwhisk": openwhisk},
            }
        )
    )
    context.engine  # noqa: B018  (migrate)
    return context


@pytest.fixture
def backend(ow_context: Context) -> Iterator[OpenWhiskBackend]:
    backend = ow_context.backend
    assert isinstance(backend, OpenWhiskBackend)
    backend.client.backoff = 0.01
    yield backend
    backend.close()


def make_trigger(server: OpenWhiskServer, rule: bool = True) -> None:
    """Package, action, the storage trigger and (optionally) its active rule on the fake controller."""
    pkg = naming.package_name("local")
    base = f"{server.url}/api/v1/namespaces/guest"
    user, key = server.auth.split(":", 1)
    entities: list[tuple[str, dict[str, object]]] = [
        (f"packages/{pkg}", {}),
        (f"actions/{pkg}/summary", {"exec": {"kind": "blackbox", "image": "example/summary:1"}}),
        (f"triggers/{TRIGGER}", {"name": TRIGGER}),
    ]
    if rule:
        rule_body: dict[str, object] = {
            "name": TRIGGER,
            "trigger": f"/guest/{TRIGGER}",
            "action": f"/guest/{pkg}/summary",
        }
        entities.append((f"rules/{TRIGGER}", rule_body))
    with httpx.Client(auth=(user, key)) as http:
        for path, body in entities:
            http.put(f"{base}/{path}", params={"overwrite": "true"}, json=body).raise_for_status()


def test_fire_answers_and_errors(server: OpenWhiskServer, backend: OpenWhiskBackend) -> None:
    with pytest.raises(FaaspubError, match=f"has no storage trigger {TRIGGER}"):
        backend.fire("local", "summary", {"id": "x"})
    make_trigger(server, rule=False)
    assert backend.fire("local", "summary", {"id": "x"}) is None  # 204: no active rule
    make_trigger(server)
    trigger_id = backend.fire("local", "summary", {"id": "y", "subject": "/incoming/a.csv"})
    assert trigger_id is not None
    assert server.controller.activations[trigger_id]["response"]["result"]["subject"] == "/incoming/a.csv"
    # Throttled twice, then accepted: the pooled path retries like every other request.
    server.controller.fail_next(f"/namespaces/guest/triggers/{TRIGGER}", 429, count=2)
    assert backend.fire("local", "summary", {"id": "z"}) is not None
    server.controller.fail_next(f"/namespaces/guest/triggers/{TRIGGER}", 503, count=10)
    with pytest.raises(BackendUnavailable, match=r"System is overloaded.*HTTP 503"):
        backend.fire("local", "summary", {"id": "z"})


def test_fire_to_a_stopped_controller_is_unavailable(
    server: OpenWhiskServer, backend: OpenWhiskBackend
) -> None:
    make_trigger(server)
    assert backend.fire("local", "summary", {"id": "a"}) is not None
    server.stop()
    # The handler of the kept-alive connection outlives the listener: start from new connections.
    backend.client.close()
    with pytest.raises(BackendUnavailable, match="not reachable") as exc:
        backend.fire("local", "summary", {"id": "b"})
    assert server.auth.split(":", 1)[1] not in str(exc.value) + repr(backend.client)


def read_request(conn: socket.socket) -> bytes | None:
    """The body of the next request on ``conn``, or ``None`` when the client closed it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += conn.recv(65536)
    return body


@dataclass
class Peer:
    """What a :func:`closing_peer` saw: the bodies it answered and those it hung up on."""

    port: int
    answered: list[Any] = field(default_factory=list)
    dropped: list[Any] = field(default_factory=list)


@contextmanager
def closing_peer(answers: int, drop_next: bool) -> Iterator[Peer]:
    """A peer that answers ``answers`` requests per connection with 202, keep-alive, then hangs up.

    With ``drop_next`` it first reads one more request and hangs up without answering it: the race
    of a server closing an idle connection just as the client sends on it, made certain.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    peer = Peer(listener.getsockname()[1])

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                for _ in range(answers):
                    body = read_request(conn)
                    if body is None:
                        break
                    peer.answered.append(json.loads(body))
                    reply = json.dumps({"activationId": f"a{len(peer.answered)}"}).encode()
                    conn.sendall(
                        b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(reply), reply)
                    )
                else:
                    if drop_next and (body := read_request(conn)) is not None:
                        peer.dropped.append(json.loads(body))

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield peer
    finally:
        listener.close()


def fire_three(port: int) -> list[str]:
    client = OpenWhiskClient(f"http://127.0.0.1:{port}", ("user", "secret-key"), "guest", backoff=0.01)
    try:
        path = client.path("triggers", TRIGGER)
        answers = [client.post_json(path, entity="trigger", body={"n": i}, ok=(202,)) for i in range(3)]
    finally:
        client.close()
    return [a.json()["activationId"] for a in answers]


@pytest.mark.parametrize(
    ("drop_next", "lost"),
    [(False, []), (True, [{"n": 1}, {"n": 2}])],
    ids=["closed-while-idle", "dropped-unanswered"],
)
def test_a_reused_connection_the_peer_closed_is_replaced(drop_next: bool, lost: list[Any]) -> None:
    with closing_peer(answers=1, drop_next=drop_next) as peer:
        assert fire_three(peer.port) == ["a1", "a2", "a3"]
    assert peer.answered == [{"n": 0}, {"n": 1}, {"n": 2}]  # each answered once
    assert peer.dropped == lost  # each send on a reused connection the peer hung up on


def test_a_new_connection_dropped_without_an_answer_is_unavailable_not_resent() -> None:
    with (
        closing_peer(answers=0, drop_next=True) as peer,
        pytest.raises(BackendUnavailable, match="not reachable") as failure,
    ):
        fire_three(peer.port)
    assert peer.answered == []
    assert peer.dropped == [{"n": 0}]  # the fire may have happened: once
    assert "secret-key" not in str(failure.value)


def test_deliverer_fires_a_batch_concurrently_one_trigger_activation_per_event(
    server: OpenWhiskServer, ow_context: Context, backend: OpenWhiskBackend
) -> None:
    make_trigger(server)
    publish_rows(ow_context, "summary", "1.0.0", "sha256:" + "c" * 64, [{"path": "/incoming"}])
    intake = Intake(ow_context.sessions, BindingCache(ow_context.sessions))
    assert intake.accept([event(f"/incoming/{i}.csv", size=i) for i in range(40)]) == 40
    deliverer = Deliverer(ow_context.sessions, backend, batch=40, concurrency=8)
    try:
        assert deliverer.run_once() == 40
    finally:
        deliverer.close()
    with ow_context.sessions() as session:
        ledger = dict(session.execute(select(LedgerRow.cause, LedgerRow.activation_id)).all())
    fired = {
        record["response"]["result"]["id"]: trigger_id
        for trigger_id, record in server.controller.activations.items()
        if record["name"] == TRIGGER
    }
    assert fired == ledger  # every event fired once, its trigger activation id in the ledger
    assert len(fired) == 40


def tls_peer(tmp_path: Path) -> tuple[socket.socket, Path]:
    """A TLS peer on 127.0.0.1 with a self-signed certificate, answering every request with 202."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    openssl = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    names = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(
        [*openssl, *names, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))

    def answer(conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            while True:
                head = [reader.readline()]
                while head[-1] not in (b"\r\n", b""):
                    head.append(reader.readline())
                if head[-1] == b"":
                    return
                length = next(int(h.split(b":")[1]) for h in head if h.lower().startswith(b"content-length"))
                reader.read(length)
                conn.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Length: 20\r\n\r\n" + b'{"activationId":"t"}')

    def serve() -> None:
        while True:
            try:
                raw, _ = listener.accept()
                conn = context.wrap_socket(raw, server_side=True)
            except OSError:  # closed listener, or a client that refused our certificate
                if listener.fileno() == -1:
                    return
                continue
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return listener, cert


def test_fires_over_tls_verify_the_certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    listener, cert = tls_peer(tmp_path)
    url = f"https://127.0.0.1:{listener.getsockname()[1]}"
    path = "/namespaces/guest/triggers/t"
    try:
        unverified = OpenWhiskClient(url, ("user", "key"), retries=0)
        with pytest.raises(BackendUnavailable, match="SSLCertVerificationError"):
            unverified.post_json(path, entity="trigger t", body={}, ok=(202,))
        insecure = OpenWhiskClient(url, ("user", "key"), insecure=True)
        assert insecure.post_json(path, entity="trigger t", body={}, ok=(202,)).json() == {
            "activationId": "t"
        }
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
        trusted = OpenWhiskClient(url, ("user", "key"))
        for _ in range(3):  # the same TLS connection, kept alive
            assert trusted.post_json(path, entity="trigger t", body={}, ok=(202,)).status_code == 202
    finally:
        listener.close()
