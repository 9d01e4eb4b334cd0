"""Bounded input of a real ``faaspub serve`` (issue 16).

* ``security.unauth_large_body_rss_delta_mb``: resident memory of the service after a 150 MB body
  without a token was sent to each route that takes a body (invoke, GitLab and S3 webhooks, the CI
  release notification), minus its memory when idle. Goal: within 32 MB. Before the fix the same
  request to the API took the service from 113 MB to 564 MB.
* ``security.authenticated_get_during_job_token_flood_ms``: an authenticated ``GET
  /api/v1/functions`` while 60 CI release notifications wait on a GitLab that never answers (it took
  89 s before the job-token checks got their own pool).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.security.serve import MIB, Served, post_unread, serving  # noqa: E402

ROUTES = ("/api/v1/functions/hello/invoke", "/hooks/gitlab", "/hooks/s3", "/api/v1/releases")
BODY = 150 * MIB
GOAL_MB = 32


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min), 2 cores"


def large_bodies(served: Served) -> dict[str, Any]:
    time.sleep(1.0)  # the service's start-up work (schema, first requests) has settled
    idle = served.rss_mb()
    answers = {path: post_unread(served.service.url, path, BODY) for path in ROUTES}
    after = served.rss_mb()
    return {
        "metric": "security.unauth_large_body_rss_delta_mb",
        "id": "security.unauth_large_body_rss_delta_mb",
        "value": round(after - idle, 1),
        "unit": "MB",
        "goal": f"<= {GOAL_MB} MB over idle",
        "command": "faaspub serve; one 150 MB POST without a token to each of " + ", ".join(ROUTES),
        "detail": {
            "idle_rss_mb": round(idle, 1),
            "after_rss_mb": round(after, 1),
            "answers": {
                path: {"status": status, "sent_mb": sent // MIB} for path, (status, sent) in answers.items()
            },
            "before_fix": "113 MB -> 564 MB for the same request to the API (issue 16)",
        },
        "load": _load(),
    }


def job_token_flood(served: Served) -> dict[str, Any]:
    url = served.service.url

    def notify(i: int) -> int:
        reply = requests.post(
            f"{url}/api/v1/releases", json={}, headers={"JOB-TOKEN": f"glcbt-bench-{i}"}, timeout=120
        )
        return reply.status_code

    with ThreadPoolExecutor(60) as pool:
        pending = [pool.submit(notify, i) for i in range(60)]
        time.sleep(0.5)  # the notifications are in flight
        started = time.perf_counter()
        listing = requests.get(
            f"{url}/api/v1/functions", headers={"Authorization": f"Bearer {served.token}"}, timeout=120
        )
        elapsed_ms = (time.perf_counter() - started) * 1000
        statuses = [future.result() for future in pending]
    return {
        "metric": "security.authenticated_get_during_job_token_flood_ms",
        "id": "security.authenticated_get_during_job_token_flood_ms",
        "value": round(elapsed_ms, 1),
        "unit": "ms",
        "command": "GET /api/v1/functions while 60 POST /api/v1/releases wait on a GitLab that never answers",
        "detail": {"get_status": listing.status_code, "notification_statuses": sorted(set(statuses))},
        "before_fix": "89 s (issue 16)",
        "load": _load(),
    }


def run(quick: bool = True) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="faaspub-bench-security-") as tmp, serving(Path(tmp)) as served:
        return [large_bodies(served), job_token_flood(served)]


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
