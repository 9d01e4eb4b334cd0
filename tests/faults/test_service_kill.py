"""kill -9 ``faaspub serve`` during a burst of GitLab webhooks: every 2xx answer was a stored delivery.

The service runs as a subprocess (``python -m publisher.cli serve``: uvicorn, the intake, two
release workers and the storage-event consumer in background threads). A client pool sends a
burst of pipeline webhooks; each names a tag pipeline that GitLab (the test server) reports as
failed, so its job asks GitLab and records a ``canceled`` commit status. The service is killed
once a random number of them was sent, with more on the wire, and started again. Every delivery
that was answered 2xx must be in the database and its job must have run; answers that never came
are the sender's to retry.

Jobs that were running when the process died keep their 60 s lease; the round fast-forwards that
lease (the release kill test lets real leases run out) so the restarted workers take them at once.
"""

from __future__ import annotations

import random
import secrets
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import update

from publisher.config import load_settings
from publisher.core.context import Context
from publisher.db.models import Job
from tests.fakes.gitlab_server import FakeGitLab
from tests.faults import invariants
from tests.faults.processes import kill9, spawn, stop, tail
from tests.gitlab.conftest import (
    PROJECT,
    PROJECT_ID,
    WEBHOOK_SECRET,
    clean_postgres,
    pipeline_hook,
    write_config,
)
from tests.triggers.conftest import wait_for

ROUNDS = 3
SENDERS = 8


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """``faaspub serve`` on a fixed port, started and killed by the test."""

    def __init__(self, config: Path, root: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config, self.root, self.log = config, root, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = spawn(
            "publisher.cli",
            "serve",
            "--config",
            str(self.config),
            "--listen",
            f"127.0.0.1:{self.port}",
            log=self.log,
            env={"FAASPUB_STORAGE__LOCAL__ROOT": str(self.root)},
        )

        def up() -> bool:
            try:
                return requests.get(f"{self.url}/healthz", timeout=1).ok
            except requests.ConnectionError:
                assert self.process is not None and self.process.poll() is None, tail(self.log)
                return False

        wait_for(up, timeout=30, what="faaspub serve to answer")

    def kill(self) -> None:
        assert self.process is not None
        kill9(self.process)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)


class FailedTagPipelines:
    """Webhook bodies made on demand (thread-safe): tag pipelines GitLab reports as failed, each
    delivered by a body that claims it succeeded."""

    def __init__(self, gitlab: FakeGitLab, prefix: str) -> None:
        self.gitlab, self.prefix = gitlab, prefix
        self.count = 0
        self.lock = threading.Lock()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        with self.lock:
            self.count += 1
            ref = f"v9.{self.prefix}.{self.count}"
        pipeline = self.gitlab.add_pipeline(
            PROJECT_ID, sha=secrets.token_hex(20), ref=ref, tag=True, status="failed"
        )
        return pipeline_hook({**pipeline, "status": "success"})


def send(url: str, body: dict[str, Any]) -> str | None:
    """Post one delivery; its idempotency key when the service answered 2xx, else None."""
    key = str(uuid.uuid4())
    headers = {"X-Gitlab-Event": "Pipeline Hook", "X-Gitlab-Token": WEBHOOK_SECRET, "Idempotency-Key": key}
    try:
        answer = requests.post(f"{url}/hooks/gitlab", json=body, headers=headers, timeout=10)
    except requests.RequestException:
        return None
    return key if 200 <= answer.status_code < 300 else None


def sender(url: str, bodies: Iterator[dict[str, Any]]) -> list[tuple[str | None, str]]:
    """Send deliveries one after the other until the service stops answering: (key or None, sha)."""
    answers = []
    for body in bodies:
        answers.append((send(url, body), body["object_attributes"]["sha"]))
        if answers[-1][0] is None:
            break
    return answers


def canceled(gitlab: FakeGitLab, shas: list[str]) -> list[str]:
    """The commits among ``shas`` without the ``canceled`` status their job sets."""
    statuses = gitlab.projects[PROJECT_ID].statuses
    return [sha for sha in shas if not any(s["status"] == "canceled" for s in statuses.get(sha, []))]


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_webhooks_answered_2xx_survive_kill_9(
    tmp_path: Path,
    gitlab_server: FakeGitLab,
    database: str,
    rng: random.Random,
    request: pytest.FixtureRequest,
) -> None:
    gitlab_server.add_project(PROJECT_ID, PROJECT)
    db_url = (
        f"sqlite:///{tmp_path / 'faaspub.db'}" if database == "sqlite" else request.getfixturevalue("pg_url")
    )
    config = write_config(tmp_path, db_url, gitlab_server.url)
    context = Context(load_settings(config))
    if database == "postgres":
        clean_postgres(context)
    service = Service(config, tmp_path / "data", tmp_path / "serve.log")
    accepted: list[str] = []
    shas: list[str] = []
    service.start()
    try:
        for n in range(1, ROUNDS + 1):
            bodies = FailedTagPipelines(gitlab_server, str(n))
            kill_after = rng.randint(5, 100)
            label = f"round {n} (webhook burst, kill -9 after {kill_after} were sent)"
            with ThreadPoolExecutor(max_workers=SENDERS) as pool:
                sent = [pool.submit(sender, service.url, bodies) for _ in range(SENDERS)]
                wait_for(lambda: bodies.count >= kill_after, timeout=20, what=label)  # noqa: B023
                service.kill()
            answers = [answer for future in sent for answer in future.result()]
            keys = [key for key, _sha in answers if key]
            accepted += keys
            shas += [sha for key, sha in answers if key]
            assert len(keys) < len(answers), f"{label}: the kill interrupted no delivery"
            with context.sessions() as session, session.begin():  # the dead process's leases run out
                session.execute(update(Job).where(Job.status == "running").values(locked_until=Job.created))
            service.start()
            wait_for(lambda: invariants.jobs_settled(context.sessions), timeout=30, what=label)
            invariants.webhooks_stored_and_run(context.sessions, accepted, label)
            not_run = canceled(gitlab_server, shas)
            assert not not_run, f"{label}: {len(not_run)} accepted pipelines never got their status"
        assert accepted, "no delivery was ever answered 2xx"
    finally:
        service.stop()
        context.engine.dispose()
