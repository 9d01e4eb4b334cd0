"""The durable job queue on SQLite and on the real PostgreSQL: leases, retries, dead letters, races."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete

from publisher.db.engine import make_engine, session_factory, transaction, upgrade
from publisher.db.models import Job
from publisher.db.queue import Queue


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    url = f"sqlite:///{tmp_path}/q.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    engine = make_engine(url)
    upgrade(engine)
    with engine.begin() as connection:  # the PostgreSQL database is shared by the session's tests
        connection.execute(delete(Job))
    return engine


def test_enqueue_is_idempotent_by_key(engine: Engine) -> None:
    factory = session_factory(engine)
    with transaction(factory) as s:
        first = Queue.enqueue(s, "release", {"v": 1}, key="project-1:v1.0.0")
        again = Queue.enqueue(s, "release", {"v": 2}, key="project-1:v1.0.0")
    assert first is not None and again is None
    assert Queue(factory, "w").depth() == {"queued": 1}


def test_enqueue_is_undone_with_the_callers_transaction(engine: Engine) -> None:
    factory = session_factory(engine)
    with pytest.raises(RuntimeError), transaction(factory) as s:
        Queue.enqueue(s, "release", {}, key="first-write-of-the-transaction")
        raise RuntimeError("the delivery could not be stored")
    assert Queue(factory, "w").depth() == {}


def test_claim_complete_retry_and_dead_letter(engine: Engine) -> None:
    factory = session_factory(engine)
    queue = Queue(factory, "w1")
    with transaction(factory) as s:
        Queue.enqueue(s, "deliver", {"n": 1}, max_attempts=2)
    job = queue.claim()
    assert job is not None and job.attempts == 1 and queue.claim() is None  # leased: nobody else gets it
    assert queue.retry(job, "backend down", delay_s=0) is True
    job = queue.claim()
    assert job is not None and job.attempts == 2
    assert queue.retry(job, "backend still down", delay_s=0) is False
    assert queue.depth() == {"dead": 1}


def test_expired_lease_is_claimed_again(engine: Engine) -> None:
    factory = session_factory(engine)
    with transaction(factory) as s:
        Queue.enqueue(s, "release", {})
    crashed = Queue(factory, "crashed").claim(lease_s=-1)  # a worker that died holding the job
    assert crashed is not None
    survivor = Queue(factory, "survivor").claim()
    assert survivor is not None and survivor.id == crashed.id and survivor.attempts == 2


def test_concurrent_workers_never_run_a_job_twice(engine: Engine) -> None:
    factory = session_factory(engine)
    with transaction(factory) as s:
        for i in range(60):
            Queue.enqueue(s, "deliver", {"i": i})
    seen: Counter[int] = Counter()
    lock = threading.Lock()

    def work(name: str) -> None:
        queue = Queue(factory, name)
        idle = 0
        while idle < 20:
            job = queue.claim()
            if job is None:
                idle += 1
                continue
            with lock:
                seen[job.payload["i"]] += 1
            queue.complete(job.id)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(60)) and set(seen.values()) == {1}
