"""A running ``faaspub serve`` decides who is asking before it reads a body, on every route, and
keeps answering while GitLab does not."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.security.serve import MIB, Served, answer_before_body, post_unread, serving

ROUTES = ["/api/v1/functions/hello/invoke", "/hooks/gitlab", "/hooks/s3", "/api/v1/releases"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(Path(tmp_path_factory.mktemp("serve"))) as running:
        yield running


@pytest.mark.parametrize("path", ROUTES)
def test_an_unauthenticated_request_is_refused_before_its_body_is_read(served: Served, path: str) -> None:
    # A body within every limit, of which only the first 64 KiB ever arrive.
    assert answer_before_body(served.service.url, path, size=1 * MIB) == 401


def test_a_150_mb_body_without_a_token_leaves_the_memory_alone(served: Served) -> None:
    idle = served.rss_mb()
    status, sent = post_unread(served.service.url, "/api/v1/functions/hello/invoke", 150 * MIB)
    assert status == 401
    assert sent <= 32 * MIB  # the answer came while most of the body was still unsent
    assert served.rss_mb() - idle < 32, (idle, served.rss_mb())


def test_job_token_checks_against_a_silent_gitlab_do_not_stall_other_requests(served: Served) -> None:
    url = served.service.url
    answers: list[tuple[int, str]] = []
    lock = threading.Lock()

    def notify(i: int) -> None:
        reply = requests.post(
            f"{url}/api/v1/releases", json={}, headers={"JOB-TOKEN": f"glcbt-flood-{i}"}, timeout=120
        )
        with lock:
            answers.append((reply.status_code, reply.json()["detail"]))

    with ThreadPoolExecutor(60) as pool:
        pending = [pool.submit(notify, i) for i in range(60)]
        # Authenticated reads go on while the checks wait for GitLab.
        listing = requests.get(
            f"{url}/api/v1/functions", headers={"Authorization": f"Bearer {served.token}"}, timeout=60
        )
        with lock:
            finished_before = list(answers)
        for future in pending:
            future.result()
    assert listing.status_code == 200
    # Nothing that waited for GitLab had to finish first: the read did not queue behind the checks.
    assert all(detail.startswith("too many JOB-TOKEN checks") for _, detail in finished_before), (
        finished_before
    )
    assert len(answers) == 60 and {status for status, _ in answers} == {503}
    waited = [detail for _, detail in answers if detail.startswith("cannot ask GitLab")]
    assert 0 < len(waited) <= 20  # the checks' own pool and queue, no more
