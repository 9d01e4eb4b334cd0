"""kill -9 a release worker at a random moment of a GitLab tag release; the restarted one finishes it once.

Two workers run as subprocesses (``tests.gitlab.worker_main``) running the real release state machine
with the Zenodo test server as archive and the OpenWhisk test server as backend, on PostgreSQL.
A clean first release counts the requests a release makes to the three test servers; every later
round picks one of those requests at random and, as soon as it has been sent, kills the worker that
holds the job (the server still completes the request: done remotely, not recorded locally). The
other worker takes the job over when the lease runs out, and the round's release must end
``done`` with one DOI, one published record, no open draft, the new version live, and GitLab
written to once.
"""

from __future__ import annotations

import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from publisher.db.models import Job
from publisher.gitlab import events
from tests.fakes.openwhisk_server import OpenWhiskServer
from tests.fakes.zenodo_server import ZenodoServer
from tests.faults import invariants
from tests.faults.conftest import ReleaseBed, make_bed
from tests.faults.processes import kill9, spawn, stop, tail
from tests.gitlab.conftest import PROJECT_ID, Project
from tests.triggers.conftest import wait_for

ROUNDS = 8
FUNCTION = "hello"
LEASE_S = "2"


def requests_seen(bed: ReleaseBed) -> int:
    """Requests the three test servers received so far (the release's progress, as they see it)."""
    return len(bed.zenodo.fake.seen) + len(bed.openwhisk.controller.requests) + len(bed.project.fake.requests)


class Workers:
    """Two worker subprocesses; the one holding the release job is killed and replaced.

    The survivor takes the job over once the dead worker's lease runs out, while the replacement
    starts (so a round does not wait for a process start-up).
    """

    def __init__(self, bed: ReleaseBed, log: Path) -> None:
        self.bed, self.config, self.log = bed, str(bed.env.config), log
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        process = spawn("tests.gitlab.worker_main", self.config, LEASE_S, log=self.log)
        self.processes[process.pid] = process

    def holder(self) -> int | None:
        """The pid of the worker that holds a running release job (worker ids are ``host:pid:thread``)."""
        with self.bed.sessions() as session:
            running = select(Job.locked_by).where(Job.status == "running", Job.kind == events.RELEASE)
            owner = session.scalar(running)
        return int(owner.split(":")[1]) if owner else None

    def kill_holder(self) -> bool:
        """kill -9 the worker running the job, start a replacement; False when no job was running."""
        pid = self.holder()
        if pid not in self.processes:
            return False
        kill9(self.processes.pop(pid))
        self.start()
        return True

    def stop(self) -> None:
        for process in self.processes.values():
            stop(process)


@pytest.fixture
def bed(
    tmp_path: Path,
    pg_url: str,
    project: Project,
    zenodo_server: ZenodoServer,
    openwhisk: OpenWhiskServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[ReleaseBed]:
    made = make_bed(tmp_path, pg_url, project, zenodo_server, openwhisk, monkeypatch)
    yield made
    made.env.context.engine.dispose()


@pytest.mark.postgres
def test_release_completes_once_after_kill_9(tmp_path: Path, bed: ReleaseBed, rng: random.Random) -> None:
    workers = Workers(bed, tmp_path / "worker.log")
    gitlab = bed.project.fake.projects[PROJECT_ID]
    workers.start()
    workers.start()
    try:

        def finished(version: str, label: str) -> None:
            try:
                wait_for(lambda: bed.step(version) in ("done", "failed"), timeout=45, what=label)
            except AssertionError:
                raise AssertionError(
                    f"{label}: release at {bed.step(version)}\n{tail(workers.log)}"
                ) from None
            record = bed.release(version)
            assert record is not None and record.step == "done", (
                f"{label}: {record.error if record else None}"
            )
            doi = record.data["reservation"]["doi"]
            namespace = record.data["namespace"]
            invariants.one_doi_per_release(bed.zenodo.fake, namespace, FUNCTION, released, [], label)
            invariants.live_version(bed.sessions, namespace, FUNCTION, version, label, bed.openwhisk)
            invariants.written_back_once(gitlab, f"v{version}", doi, label)

        released = ["3.0.0"]
        before = requests_seen(bed)
        bed.tag("3.0.0")
        finished("3.0.0", "the clean first release")
        total = requests_seen(bed) - before
        for n in range(1, ROUNDS + 1):
            version = f"3.{n}.0"
            kill_at = rng.randint(1, total)
            label = f"round {n} ({version}: kill -9 after request {kill_at} of ~{total})"
            released.append(version)
            start = requests_seen(bed)
            bed.tag(version)
            wait_for(
                lambda: requests_seen(bed) - start >= kill_at or bed.step(version) in ("done", "failed"),  # noqa: B023
                timeout=30,
                what=label,
            )
            if not workers.kill_holder():
                label += " (finished before the kill)"
            finished(version, label)
    finally:
        workers.stop()
