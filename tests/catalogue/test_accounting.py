"""Accounting (issue 20): ``GET /api/v1/accounting``, the usage counters on ``/metrics`` and the
namespace page agree with the activations they are computed from.

Activations are written the way the backends write them (``Catalogue.store_activation``), across
two namespaces, two functions, two UTC days and every kind of outcome; the expected figures are
recomputed here from ``GET /api/v1/activations`` (memory limit x duration, file sizes), not from the
accounting code.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from publisher.accounting.usage import bytes_of
from publisher.backends.catalogue import Catalogue
from publisher.core.types import Activation
from tests.catalogue.conftest import Seeded, bearer
from tests.catalogue.test_api import walk

DAY = datetime(2026, 11, 20, 22, 0, tzinfo=UTC)
RUNS = [
    # namespace, function, start offset (h), duration ms, status, memory MB, bytes read
    ("xfel", "cxi-metadata", 0, 1500.0, "success", 512, 4_000_000),
    ("xfel", "cxi-metadata", 1, 250.0, "application_error", 512, 10),
    ("xfel", "cxi-metadata", 3, 90_000.0, "timeout", 512, None),
    ("xfel", "cxi-metadata", 4, 10.0, "pending", 512, 99),  # unfinished: not counted
    ("xfel", "frame-stats", 5, 333.3, "developer_error", 128, 2048),
    ("local", "hello", 2, 12.0, "success", 128, None),
    ("local", "hello", 26, 20.0, "system_error", 256, 7),
]


@pytest.fixture()
def usage_client(seeded: Seeded, client: TestClient) -> TestClient:
    catalogue = Catalogue(seeded.context.sessions)
    for i, (ns, fn, hours, ms, status, memory, read) in enumerate(RUNS):
        run = Activation(
            id=f"acct{i:03d}",
            function=fn,
            version="1.0.0",
            digest="sha256:" + "0" * 64,
            start=DAY + timedelta(hours=hours),
            duration_ms=ms,
            status=status,  # type: ignore[arg-type]
            memory_mb=memory,
            bytes_read=read,
        )
        catalogue.store_activation(ns, run, new=True)
    return client


PERIOD = {"since": DAY.isoformat(), "until": (DAY + timedelta(days=3)).isoformat()}


def expected_from_activations(client: TestClient, token: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The figures recomputed from the activation listing of the same period."""
    figures: dict[tuple[str, str, str], dict[str, Any]] = defaultdict(
        lambda: {"runs": 0, "failures": 0, "gb_seconds": 0.0, "bytes_read": 0}
    )
    query = "&".join(f"{k}={v.replace('+', '%2B')}" for k, v in PERIOD.items())
    for a in walk(client, f"/api/v1/activations?{query}&limit=2", **bearer(token)):
        if a["status"] == "pending":
            continue
        day = a["start"][:10]
        row = figures[(day, a["namespace"], a["function"])]
        row["runs"] += 1
        row["failures"] += a["status"] != "success"
        row["gb_seconds"] += a["memory_mb"] / 1024 * a["duration_ms"] / 1000
        row["bytes_read"] += a["bytes_read"] or 0
    return dict(figures)


def test_accounting_matches_the_activations(seeded: Seeded, usage_client: TestClient) -> None:
    operator = seeded.tokens["*:read"]
    resp = usage_client.get("/api/v1/accounting", params=PERIOD, headers=bearer(operator))
    assert resp.status_code == 200, resp.text
    items = resp.json()["items"]
    got = {(i["day"], i["namespace"], i["function"]): i for i in items}
    expected = expected_from_activations(usage_client, operator)
    assert set(got) == set(expected)
    for key, want in expected.items():
        assert got[key]["runs"] == want["runs"]
        assert got[key]["failures"] == want["failures"]
        assert got[key]["bytes_read"] == want["bytes_read"]
        assert got[key]["gb_seconds"] == pytest.approx(want["gb_seconds"], rel=1e-9)
    # Spot check against the table above: 512 MB for 1.5 s + 0.25 s + 90 s on 2026-11-20/21 (UTC).
    first = got[("2026-11-20", "xfel", "cxi-metadata")]
    assert first["runs"] == 2 and first["failures"] == 1
    assert first["gb_seconds"] == pytest.approx(0.5 * 1.75)
    assert first["bytes_read"] == 4_000_010
    assert got[("2026-11-21", "xfel", "cxi-metadata")]["runs"] == 1  # the pending run is left out


def test_accounting_needs_an_operator_or_the_namespace_admin(
    seeded: Seeded, usage_client: TestClient
) -> None:
    url = "/api/v1/accounting"
    assert usage_client.get(url, params=PERIOD).status_code == 401
    denied = usage_client.get(url, params=PERIOD, headers=bearer(seeded.tokens["xfel:invoke"]))
    assert denied.status_code == 403 and "operator" in denied.json()["error"]
    admin = bearer(seeded.tokens["xfel:admin"])
    own = usage_client.get(url, params=PERIOD, headers=admin).json()["items"]
    assert own and {i["namespace"] for i in own} == {"xfel"}
    other = usage_client.get(url, params={**PERIOD, "namespace": "local"}, headers=admin)
    assert other.status_code == 403
    bad = usage_client.get(url, params={"since": PERIOD["until"], "until": PERIOD["since"]}, headers=admin)
    assert bad.status_code == 422 and "before" in bad.json()["error"]


def test_metrics_counters_equal_the_totals(seeded: Seeded, usage_client: TestClient) -> None:
    everything = {"since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"}
    items = usage_client.get(
        "/api/v1/accounting", params=everything, headers=bearer(seeded.tokens["*:read"])
    ).json()["items"]
    text = usage_client.get("/metrics").text
    for (ns, fn), fields in _totals(items).items():
        labels = f'function="{fn}",namespace="{ns}"'
        for name, value in fields.items():
            match = re.search(rf"^faaspub_function_{name}_total\{{{labels}\}} (\S+)$", text, re.M)
            assert match, f"faaspub_function_{name}_total for {ns}/{fn} missing from /metrics"
            assert float(match.group(1)) == pytest.approx(value)


def _totals(items: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, float]]:
    totals: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for i in items:
        for name in ("runs", "failures", "gb_seconds", "bytes_read"):
            totals[(i["namespace"], i["function"])][name] += i[name]
    return totals


def test_namespace_page_shows_the_usage_table(seeded: Seeded, client: TestClient) -> None:
    catalogue = Catalogue(seeded.context.sessions)
    now = datetime.now(UTC)
    catalogue.store_activation(
        "xfel",
        Activation(
            "today1",
            "cxi-metadata",
            "0.3.0",
            "sha256:" + "1" * 64,
            now,
            2000.0,
            "success",
            memory_mb=1024,
            bytes_read=123456,
        ),
        new=True,
    )
    page = client.get("/namespaces/xfel")
    assert page.status_code == 200
    html = page.text
    assert "Usage, last 30 days" in html and "cxi-metadata" in html
    row = re.search(
        rf"<td>{now.date().isoformat()}</td>\s*<th[^>]*><a[^>]*>cxi-metadata</a></th>(.*?)</tr>", html, re.S
    )
    assert row, html
    cells = re.findall(r"<td>([^<]*)</td>", row.group(1))
    assert cells == ["1", "2.000", "0", "123456"]


def test_bytes_read_comes_from_the_storage_event() -> None:
    event = {"specversion": "1.0", "type": "storage.object.created", "data": {"size": 42}}
    assert bytes_of(event) == 42 and bytes_of({"event": event}) == 42
    assert bytes_of({**event, "type": "storage.object.deleted"}) is None
    assert bytes_of({"name": "x"}) is None
    assert bytes_of({**event, "data": {"size": True}}) is None


@pytest.mark.postgres
def test_days_are_utc_days_on_postgresql_too(pg_url: str, tmp_path: Any) -> None:
    from publisher.accounting.usage import usage
    from publisher.config import Settings
    from publisher.core.context import Context

    context = Context(Settings.model_validate({"state_dir": str(tmp_path), "database": {"url": pg_url}}))
    try:
        catalogue = Catalogue(context.sessions)
        for i, (ns, fn, hours, ms, status, memory, read) in enumerate(RUNS):
            run = Activation(
                f"pg{i:03d}",
                fn,
                "1.0.0",
                "sha256:" + "0" * 64,
                DAY + timedelta(hours=hours),
                ms,
                status,
                memory_mb=memory,
                bytes_read=read,
            )  # type: ignore[arg-type]
            catalogue.store_activation(ns, run, new=True)
        with context.sessions() as session:
            rows = {(r.day.isoformat(), r.namespace, r.function): r for r in usage(session, namespace="xfel")}
    finally:
        context.engine.dispose()
    assert set(rows) == {
        ("2026-11-20", "xfel", "cxi-metadata"),
        ("2026-11-21", "xfel", "cxi-metadata"),
        ("2026-11-21", "xfel", "frame-stats"),
    }
    first = rows[("2026-11-20", "xfel", "cxi-metadata")]
    assert (first.runs, first.failures, first.bytes_read) == (2, 1, 4_000_010)
    assert first.gb_seconds == pytest.approx(0.5 * 1.75)
