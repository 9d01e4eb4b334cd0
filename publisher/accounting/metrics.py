"""Prometheus counters of usage per namespace and function, read from the activation records.

They are computed at scrape time from the database (like the queue gauges), so runs count whichever
process carried them out (``faaspub serve``, a worker, ``faaspub invoke``), and the counters equal
the totals of ``GET /api/v1/accounting``. Activation records are never deleted, so the totals only
grow, as Prometheus counters must.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from publisher.accounting.usage import usage

LABELS = ["namespace", "function"]


class UsageCollector(Collector):
    """``faaspub_function_{runs,failures,gb_seconds,bytes_read}_total{namespace, function}``."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[CounterMetricFamily]:
        families = {
            "runs": CounterMetricFamily("faaspub_function_runs", "Finished activations.", labels=LABELS),
            "failures": CounterMetricFamily(
                "faaspub_function_failures", "Activations that did not succeed.", labels=LABELS
            ),
            "gb_seconds": CounterMetricFamily(
                "faaspub_function_gb_seconds",
                "Memory limit (GB) times run duration (s), summed over activations.",
                labels=LABELS,
            ),
            "bytes_read": CounterMetricFamily(
                "faaspub_function_bytes_read",
                "Bytes of the files whose storage events triggered activations.",
                labels=LABELS,
            ),
        }
        with self.sessions() as session:
            totals = usage(session, by_day=False)
        for row in totals:
            labels = [row.namespace, row.function]
            families["runs"].add_metric(labels, row.runs)
            families["failures"].add_metric(labels, row.failures)
            families["gb_seconds"].add_metric(labels, row.gb_seconds)
            families["bytes_read"].add_metric(labels, row.bytes_read)
        yield from families.values()


_registered: list[UsageCollector] = []


def watch_usage(sessions: sessionmaker[Session]) -> None:
    """Expose the usage counters of ``sessions``' database (the latest call wins; one per process)."""
    if _registered:
        _registered[0].sessions = sessions
        return
    collector = UsageCollector(sessions)
    REGISTRY.register(collector)
    _registered.append(collector)
