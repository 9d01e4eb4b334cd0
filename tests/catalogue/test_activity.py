"""The function page's activity chart: counted by the database (SQLite and PostgreSQL alike, bucket
edges included), kept per function and minute, and citation exports kept per version."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from publisher.catalogue.chart import chart_cache
from publisher.catalogue.citations import exports
from publisher.catalogue.queries import activity, list_activations
from publisher.config import Settings
from publisher.core.context import Context
from publisher.core.pipeline import citation_dict
from publisher.db.engine import transaction
from publisher.db.models import ActivationRecord
from publisher.manifest.load import load_function
from tests.catalogue.conftest import HELLO

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def context(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Context]:
    url = f"sqlite:///{tmp_path / 'a.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    context = Context(Settings.model_validate({"state_dir": str(tmp_path), "database": {"url": url}}))
    yield context
    context.engine.dispose()


def add_runs(context: Context, function: str, runs: list[tuple[datetime, str]]) -> None:
    with transaction(context.sessions) as session:
        for i, (start, status) in enumerate(runs):
            session.add(
                ActivationRecord(
                    id=f"{function}-{i}-{start.timestamp()}",
                    namespace="ns",
                    function=function,
                    version="1.0.0",
                    digest="sha256:" + "0" * 64,
                    start=start,
                    duration_ms=1.0,
                    status=status,
                    result={},
                    logs=[],
                    cause="api",
                )
            )


def test_runs_are_counted_in_the_bucket_they_started_in(context: Context) -> None:
    function = f"fn-{id(context)}"
    hour = timedelta(hours=1)
    add_runs(
        context,
        function,
        [
            (NOW - 24 * hour, "success"),  # the window's first instant: first bucket
            (NOW - 24 * hour - timedelta(microseconds=1), "success"),  # just before: not counted
            (NOW - 23 * hour, "timeout"),  # exactly on an edge: the later bucket
            (NOW - 23 * hour - timedelta(seconds=1), "application_error"),
            (NOW - timedelta(seconds=1), "success"),  # the last bucket
            (NOW, "success"),  # the window ends before now
            (NOW - 2 * hour, "pending"),  # pending is not a failure
        ],
    )
    add_runs(context, function + "-other", [(NOW - hour, "timeout")])
    with context.sessions() as session:
        buckets = activity(session, "ns", function, now=NOW, hours=24, buckets=24)
    assert [b.start for b in buckets] == [NOW - (24 - i) * hour for i in range(24)]
    totals = {i: (b.total, b.failed) for i, b in enumerate(buckets) if b.total}
    assert totals == {0: (2, 1), 1: (1, 1), 22: (1, 0), 23: (1, 0)}


def test_the_chart_is_kept_for_the_minute_and_renewed_after(context: Context) -> None:
    function = f"fn-{id(context)}"
    minute = datetime.now(UTC).replace(second=0, microsecond=0)
    add_runs(context, function, [(minute - timedelta(hours=2), "success")])
    chart = chart_cache(context.sessions)
    first = chart("ns", function, minute)
    assert (first.total, first.failed) == (1, 0) and "1 activations, 0 failed" in first.svg
    add_runs(context, function, [(minute + timedelta(seconds=10), "timeout")])
    assert chart("ns", function, minute) is first  # the same minute: no query
    later = chart("ns", function, minute + timedelta(minutes=1))
    assert (later.total, later.failed) == (2, 1)


def test_citation_exports_are_kept_but_each_caller_gets_its_own() -> None:
    citation = citation_dict(load_function(HELLO, "local"))
    first = exports(citation, "1.0.0", "10.5281/zenodo.1", "python:3.11")
    assert first is not None and "10.5281/zenodo.1" in first["bibtex"]
    first["bibtex"] = "changed"
    first["codemeta"]["name"] = "changed"
    again = exports(citation, "1.0.0", "10.5281/zenodo.1", "python:3.11")
    assert again is not None and again["bibtex"] != "changed" and again["codemeta"]["name"] != "changed"
    # Another version of the same citation is its own entry.
    other = exports(citation, "1.1.0", "10.5281/zenodo.2", "python:3.11")
    assert other is not None and "10.5281/zenodo.2" in other["bibtex"] and "1.1.0" in other["cff"]


def test_activations_of_a_function_name_are_found_by_index(tmp_path: Path) -> None:
    """The API lists a function's runs by name alone (no namespace): an index serves that query."""
    context = Context(Settings.model_validate({"database": {"url": f"sqlite:///{tmp_path / 'a.db'}"}}))
    seen: list[tuple[str, Any]] = []

    def keep(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(context.engine, "before_cursor_execute", keep)
    with context.sessions() as session:
        list_activations(session, function="hello", status="failed")
        ((statement, parameters),) = [(s, p) for s, p in seen if "FROM activations" in s]
        plan = session.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
    context.engine.dispose()
    assert "ix_activations_function_start" in str(plan), plan
