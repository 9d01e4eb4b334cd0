"""Fixtures of the trigger tests: a context on a temporary SQLite database and published functions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from publisher.config import Settings
from publisher.core.context import Context
from publisher.db.models import Function, TriggerBinding, Version
from tests.backends.conftest import function_image  # noqa: F401  (fixture, for the container test)
from tests.fakes.dcache_fixture import dcache_server  # noqa: F401  (fixture)
from tests.fakes.postgres_fixture import pg_url  # noqa: F401  (fixture)
from tests.triggers.recording import RecordingBackend

Publish = Callable[..., None]


def make_settings(tmp: Path, **storage: Any) -> Settings:
    return Settings.model_validate(
        {
            "database": {"url": f"sqlite:///{tmp / 'faaspub.db'}"},
            "storage": {"local": {"root": str(tmp / "data")}, **storage},
            "state_dir": str(tmp / "state"),
        }
    )


def publish_rows(
    context: Context, name: str, version: str, digest: str, triggers: list[dict[str, Any]]
) -> None:
    """What a deploy writes: function, version (the alias target) and its storage bindings."""
    with context.sessions() as session, session.begin():
        fn = session.scalar(select(Function).where(Function.namespace == "local", Function.name == name))
        if fn is None:
            fn = Function(namespace="local", name=name)
            session.add(fn)
            session.flush()
        session.add(
            Version(
                function_id=fn.id,
                version=version,
                image=f"oci:x:{name}",
                digest=digest,
                runtime="python:3.11",
            )
        )
        fn.alias_version = version
        for old in list(fn.triggers):
            session.delete(old)
        for trigger in triggers:
            session.add(
                TriggerBinding(
                    function_id=fn.id,
                    kind="storage",
                    source=trigger.get("source", "local"),
                    path=trigger["path"],
                    recursive=trigger.get("recursive", False),
                    events=trigger.get("events", ["created"]),
                    match=trigger.get("match", "*"),
                )
            )


@pytest.fixture
def context(tmp_path: Path) -> Context:
    ctx = Context(make_settings(tmp_path))
    ctx.engine  # noqa: B018  (migrate)
    return ctx


@pytest.fixture
def backend(context: Context) -> RecordingBackend:
    recording = RecordingBackend(context.sessions)
    context.__dict__["backend"] = recording  # the cached part, replaced for the test
    return recording


@pytest.fixture
def publish(context: Context) -> Publish:
    def _publish(
        name: str, triggers: list[dict[str, Any]], version: str = "1.0.0", digest: str | None = None
    ) -> None:
        publish_rows(context, name, version, digest or f"sha256:{name}-{version}".ljust(71, "0"), triggers)

    return _publish


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it is truthy; fail naming ``what`` after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
