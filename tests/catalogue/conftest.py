"""Catalogue test fixtures: a seeded SQLite catalogue, tokens, the app in-process and on a live port.

The catalogue is seeded through :func:`publisher.catalogue.record.record_release` with releases of
the real ``examples/hello`` function (made-up image digests). Invocation goes to
:class:`HandlerBackend`, which runs the function's real handler in this process and records each
activation the way the real backends do; the real backends are tested in tests/backends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from publisher.backends.catalogue import Catalogue
from publisher.catalogue.auth import create_token
from publisher.catalogue.record import record_release
from publisher.config import Settings
from publisher.core.context import Context
from publisher.core.pipeline import citation_dict
from publisher.core.types import Activation, FunctionSource, ImageRef, Release, Reservation, TestReport
from publisher.db.engine import transaction
from publisher.db.models import ActivationRecord
from publisher.manifest.load import load_function
from webhooks.app import create_app

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "examples" / "hello"
CXI = ROOT / "examples" / "cxi-metadata"


def digest_of(text: str) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def release_of(source: FunctionSource, version: str, doi: str | None = None) -> Release:
    """A release of ``source`` with a made-up (but well-formed) image digest."""
    digest = digest_of(f"{source.namespace}/{source.name}@{version}")
    return Release(
        source=source,
        version=version,
        image=ImageRef(f"127.0.0.1:5000/functions/{source.name}", version, digest),
        reservation=Reservation(doi=doi, concept_doi="10.5281/zenodo.1000" if doi else None),
        test=TestReport(passed=3, skipped=1),
    )


class HandlerBackend:
    """A :class:`publisher.core.parts.Backend` for catalogue tests: runs the handler in-process.

    It records every call in ``calls`` and stores activations in the activation table (as the
    local and OpenWhisk backends do), so the API and pages read what a real run leaves behind.
    """

    name = "handler"

    def __init__(self, context: Context, sources: Mapping[str, FunctionSource]) -> None:
        self.catalogue = Catalogue(context.sessions)
        self.sources = dict(sources)
        self.calls: list[tuple[Any, ...]] = []

    def invoke(
        self,
        namespace: str,
        function: str,
        payload: Mapping[str, Any],
        version: str | None = None,
        blocking: bool = True,
        cause: str | None = None,
    ) -> Activation:
        self.calls.append(("invoke", namespace, function, dict(payload), version, cause))
        deployed = self.catalogue.resolve(namespace, function, version)
        source = self.sources[function]
        module_name, _, attr = source.manifest.handler.partition(":")
        spec = importlib.util.spec_from_file_location(module_name, source.root / f"{module_name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        start = datetime.now(UTC)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            print(f"invoked {function}@{deployed.version} with {sorted(payload)}")
            try:
                result, status = getattr(module, attr)(dict(payload)), "success"
            except Exception as exc:
                result, status = {"error": str(exc)}, "application_error"
        activation = Activation(
            id=uuid.uuid4().hex,
            function=function,
            version=deployed.version,
            digest=deployed.digest,
            start=start,
            duration_ms=(datetime.now(UTC) - start).total_seconds() * 1000,
            status=status,  # type: ignore[arg-type]
            result=result,
            logs=[f"{start.isoformat()} stdout: {line}" for line in out.getvalue().splitlines()],
            cause=cause,
        )
        self.catalogue.store_activation(namespace, activation, new=True)
        return activation

    def rollback(self, namespace: str, function: str, version: str) -> None:
        self.calls.append(("rollback", namespace, function, version))
        self.catalogue.set_alias(namespace, function, version)

    def close(self) -> None:
        pass


@dataclasses.dataclass
class Seeded:
    """What the seeded catalogue holds."""

    context: Context
    backend: HandlerBackend
    tokens: dict[str, str]
    activation_ids: list[str]


def make_context(tmp_path: Path, **server: Any) -> Context:
    settings = Settings.model_validate(
        {
            "state_dir": str(tmp_path / "state"),
            "database": {"url": f"sqlite:///{tmp_path / 'catalogue.db'}"},
            "storage": {"local": {"root": str(tmp_path / "data")}},
            "server": server,
        }
    )
    return Context(settings)


def seed(context: Context, activations: int = 7) -> Seeded:
    """hello 1.0.0 and 1.1.0 (alias) in ``local``, cxi-metadata in ``xfel``, tokens, past activations."""
    hello = load_function(HELLO, "local")
    cxi = load_function(CXI, "xfel")
    with transaction(context.sessions) as session:
        record_release(session, release_of(hello, "1.0.0", "10.5281/zenodo.1001"), citation_dict(hello))
        record_release(session, release_of(hello, "1.1.0", "10.5281/zenodo.1002"), citation_dict(hello))
        record_release(session, release_of(cxi, "0.3.0", "10.5281/zenodo.2001"), citation_dict(cxi))
        tokens = {
            f"{ns}:{scope}": create_token(session, ns, scope, f"test {scope}")[1]
            for ns in ("local", "xfel", "*")
            for scope in ("read", "invoke", "admin")
        }
    backend = HandlerBackend(context, {"hello": hello, "cxi-metadata": cxi})
    context.__dict__["backend"] = backend  # what the cached_property would have stored
    ids = []
    base = datetime.now(UTC) - timedelta(hours=3)
    with transaction(context.sessions) as session:
        for i in range(activations):
            ident = f"past{i:04d}"
            ids.append(ident)
            session.add(
                ActivationRecord(
                    id=ident,
                    namespace="local",
                    function="hello",
                    version="1.0.0" if i % 2 else "1.1.0",
                    digest=digest_of("x"),
                    start=base + timedelta(minutes=10 * i),
                    duration_ms=12.5 + i,
                    status="application_error" if i % 3 == 0 else "success",
                    result={"i": i},
                    logs=[f"line {i}"],
                    cause="storage" if i % 2 else "api",
                )
            )
    return Seeded(context, backend, tokens, ids)


@pytest.fixture()
def seeded(tmp_path: Path) -> Iterator[Seeded]:
    context = make_context(tmp_path)
    yield seed(context)
    context.engine.dispose()


@pytest.fixture()
def app(seeded: Seeded) -> FastAPI:
    return create_app(seeded.context)


@pytest.fixture()
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a random loopback port; yields the base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture()
def live(app: FastAPI) -> Iterator[str]:
    with serve(app) as url:
        yield url
