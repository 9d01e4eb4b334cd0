"""Fixtures of the fault suite: a printed seed, and a release bed of real parts and test servers.

The release bed is the GitLab test server with the served project (``tests/gitlab``), the Zenodo
test server as archive, the OpenWhisk test server as backend (actions are only deployed, never
run, so no podman is involved) and the real registry. The parts are chosen by ``FAASPUB_*``
environment overrides, so worker subprocesses started from the test get the same configuration.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from publisher.archive.release import ZenodoArchive
from publisher.archive.store import ArchiveStore
from publisher.archive.zenodo import ZenodoClient
from publisher.backends.openwhisk import OpenWhiskBackend
from publisher.backends.openwhisk_client import OpenWhiskClient
from publisher.db.models import Job
from publisher.db.queue import Queue
from publisher.gitlab import events
from publisher.gitlab.store import ReleaseRecord
from publisher.gitlab.worker import KINDS, Dispatcher, run_job
from tests.fakes.openwhisk_server import OpenWhiskServer
from tests.fakes.zenodo_server import ZenodoServer
from tests.gitlab.conftest import PROJECT_ID, Env, Project, make_env, pipeline_hook
from tests.gitlab.conftest import project as project  # the served project, a fixture used here too

SEED_VARIABLE = "FAASPUB_FAULT_SEED"


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """A random generator whose seed is printed (and taken from FAASPUB_FAULT_SEED when set)."""
    seed = int(os.environ.get(SEED_VARIABLE) or random.SystemRandom().randrange(2**31))
    print(f"\n{request.node.nodeid}: seed {seed} (reproduce with {SEED_VARIABLE}={seed})")
    return random.Random(seed)


@pytest.fixture
def openwhisk() -> Iterator[OpenWhiskServer]:
    """The OpenWhisk test server without an action runner: deploys, aliases, triggers and rules."""
    with OpenWhiskServer() as server:
        yield server


@dataclass
class ReleaseBed:
    """Everything a tag release touches, plus the helpers the scenarios share."""

    env: Env
    project: Project
    zenodo: ZenodoServer
    openwhisk: OpenWhiskServer

    @property
    def sessions(self) -> Any:
        return self.env.context.sessions

    def tag(self, version: str) -> dict[str, Any]:
        """Push a tag pipeline for ``version`` (its image in the registry) and post its webhook."""
        pipeline = self.project.tag_pipeline(f"v{version}")
        self.hook(pipeline)
        return pipeline

    def hook(self, pipeline: dict[str, Any]) -> None:
        answer = self.env.post(pipeline_hook(pipeline))
        assert answer.status_code == 202, answer.text

    def image_digest(self, pipeline: dict[str, Any]) -> str:
        """The digest the pipeline's release.json names."""
        served = self.project.fake.projects[PROJECT_ID]
        job = next(
            j
            for j in served.jobs.values()
            if j["pipeline"]["id"] == pipeline["id"] and j["name"] == "faaspub:release"
        )
        return str(json.loads(job["_files"]["release.json"])["digest"])

    def release(self, version: str) -> ReleaseRecord | None:
        with self.sessions() as session:
            return session.scalars(select(ReleaseRecord).where(ReleaseRecord.tag == f"v{version}")).first()

    def step(self, version: str) -> str | None:
        record = self.release(version)
        return record.step if record else None

    def jobs_pending(self) -> int:
        with self.sessions() as session:
            return len(session.scalars(select(Job.id).where(Job.status.in_(("queued", "running")))).all())

    def fast_retries(self) -> None:
        """In-process parts whose client retries wait milliseconds instead of seconds."""
        context = self.env.context
        archive = context.settings.archive

        def client(_namespace: str) -> ZenodoClient:
            return ZenodoClient(archive.url, self.zenodo.token, sleep=lambda s: time.sleep(min(s, 0.01)))

        context.__dict__["archive"] = ZenodoArchive(client, ArchiveStore(context.engine))
        auth = tuple(self.openwhisk.auth.split(":", 1))
        ow = OpenWhiskClient(self.openwhisk.url, auth, backoff=0.005)  # type: ignore[arg-type]
        context.__dict__["backend"] = OpenWhiskBackend(context, client=ow)

    def work(self, timeout: float = 60.0) -> None:
        """Run the queued jobs in this process until none is left (retries made due at once)."""
        queue = Queue(self.sessions, "faults-in-process")
        dispatcher = Dispatcher(self.env.context)
        kinds = [k for k in KINDS if k != events.RECONCILE]
        deadline = time.monotonic() + timeout
        while self.jobs_pending():
            assert time.monotonic() < deadline, f"jobs still pending after {timeout}s"
            job = queue.claim(kinds, lease_s=60)
            if job is None:
                self.skip_backoff()
                time.sleep(0.01)
                continue
            run_job(queue, dispatcher, job, lease_s=60)

    def skip_backoff(self) -> int:
        """Make queued retries due now: the suite tests what happens, not how long backoff waits."""
        with self.sessions() as session, session.begin():
            result = session.execute(update(Job).where(Job.status == "queued").values(run_after=Job.created))
            return int(result.rowcount or 0)


def write_secret(path: Path, value: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value + "\n")
    return str(path)


def bed_environment(tmp_path: Path, zenodo: ZenodoServer, openwhisk: OpenWhiskServer) -> dict[str, str]:
    """``FAASPUB_*`` overrides selecting the Zenodo archive and the OpenWhisk backend."""
    secrets = tmp_path / "secrets"
    return {
        "FAASPUB_ARCHIVE__KIND": "zenodo",
        "FAASPUB_ARCHIVE__URL": zenodo.url,
        "FAASPUB_ARCHIVE__TOKEN_FILE": write_secret(secrets / "zenodo", zenodo.token),
        "FAASPUB_BACKEND__KIND": "openwhisk",
        "FAASPUB_BACKEND__OPENWHISK__API_HOST": openwhisk.url,
        "FAASPUB_BACKEND__OPENWHISK__AUTH_FILE": write_secret(secrets / "openwhisk", openwhisk.auth),
    }


def make_bed(
    tmp_path: Path,
    db_url: str,
    project: Project,
    zenodo: ZenodoServer,
    openwhisk: OpenWhiskServer,
    monkeypatch: pytest.MonkeyPatch,
) -> ReleaseBed:
    for name, value in bed_environment(tmp_path, zenodo, openwhisk).items():
        monkeypatch.setenv(name, value)
    env = make_env(tmp_path, db_url, project.fake.url, project.registry)
    return ReleaseBed(env, project, zenodo, openwhisk)
