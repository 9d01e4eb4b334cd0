"""What the service shows anyone: no results, logs, paths or deliveries without a token; safe pages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from publisher.db.engine import transaction
from publisher.db.models import Function, WebhookDelivery
from tests.catalogue.conftest import Seeded, bearer, make_context, seed
from tests.catalogue.test_api import seed_events
from webhooks.app import create_app

SECRET_RESULT = "result-of-run-3"  # what the seeded activation past0003 returned and logged


@pytest.fixture()
def public(tmp_path: Path) -> Iterator[tuple[Seeded, TestClient]]:
    """A catalogue in its default, public mode, with runs, storage events and webhook deliveries."""
    context = make_context(tmp_path)
    seeded = seed(context)
    seed_events(seeded, count=2, dead=1)
    with transaction(context.sessions) as session:
        session.add(WebhookDelivery(source="gitlab", event="Pipeline Hook", outcome="queued", detail="d1"))
        session.execute(update(Function).values(source_url="javascript:alert(document.cookie)"))
    with transaction(context.sessions) as session:
        from publisher.db.models import ActivationRecord

        row = session.get(ActivationRecord, "past0003")
        assert row is not None
        row.result, row.logs = {"out": SECRET_RESULT}, [f"wrote /srv/faaspub/data/{SECRET_RESULT}"]
    with TestClient(create_app(context)) as client:
        yield seeded, client
    context.engine.dispose()


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/activations?logs=true",
        "/api/v1/activations/past0003",
        "/activations/past0003",
        "/api/v1/deliveries",
        "/deliveries",
        "/api/v1/events",
        "/api/v1/events/dead",
    ],
)
def test_results_logs_paths_and_deliveries_need_a_token(public: tuple[Seeded, TestClient], url: str) -> None:
    seeded, client = public
    anonymous = client.get(url)
    assert anonymous.status_code == 401, anonymous.text[:300]
    for leaked in (SECRET_RESULT, "/incoming/f1.txt", "Pipeline Hook", "line 3"):
        assert leaked not in anonymous.text
    # The same request with a token of the namespace (deliveries: an operator's) is answered.
    token = seeded.tokens["*:read" if "deliveries" in url else "local:read"]
    assert client.get(url, headers=bearer(token)).status_code == 200


def test_metrics_can_be_restricted(tmp_path: Path) -> None:
    (tmp_path / "metrics-token").write_text("scrape-token-81f\n")
    context = make_context(tmp_path, metrics_token_file=str(tmp_path / "metrics-token"))
    with TestClient(create_app(context)) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers=bearer("wrong")).status_code == 401
        answer = client.get("/metrics", headers=bearer("scrape-token-81f"))
        assert answer.status_code == 200 and "faaspub_" in answer.text
    context.engine.dispose()


def test_pages_forbid_framing_and_foreign_code_and_never_link_a_script_url(
    public: tuple[Seeded, TestClient],
) -> None:
    _, client = public
    page = client.get("/functions/local/hello")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
    assert "default-src 'none'" in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "javascript:" not in page.text  # the recorded source URL is not rendered as a link


def test_a_large_body_without_a_token_is_refused_before_it_is_read(
    public: tuple[Seeded, TestClient],
) -> None:
    seeded, client = public
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(200):  # 200 MiB, if anyone read it
            sent += 1
            yield b"x" * (1 << 20)

    answer = client.post("/api/v1/functions/hello/invoke", content=body())
    assert answer.status_code == 401 and "token" in answer.json()["error"]
    assert sent <= 2  # the service answered before reading (the test client stops sending then)
    too_large = client.post(
        "/api/v1/functions/hello/invoke",
        content=b"{}",
        headers={**bearer(seeded.tokens["local:invoke"]), "Content-Length": str(150 << 20)},
    )
    assert too_large.status_code == 413
    assert seeded.backend.calls == []
