"""Prometheus metrics of the GitLab integration (default registry, served by ``GET /metrics``).

Queue depth and the age of the oldest queued job are read from the database at scrape time, so
they are right whichever process did the work.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from publisher.db.queue import Queue

DELIVERIES = Counter(
    "faaspub_webhook_deliveries_total", "Webhook deliveries received, by outcome.", ["source", "outcome"]
)
STAGE_SECONDS = Histogram(
    "faaspub_release_stage_seconds",
    "Duration of GitLab release, preview and staging stages.",
    ["stage"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
STAGE_FAILURES = Counter(
    "faaspub_release_stage_failures_total", "Failed attempts of a stage, by stage.", ["stage"]
)


JOB_STATUSES = ("queued", "running", "done", "dead")


class QueueCollector(Collector):
    """Reads queue depth per status and the oldest queued job's age when Prometheus scrapes."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "faaspub_queue_jobs", "Jobs in the durable queue, by status.", labels=["status"]
        )
        # Every status, even at zero: an autoscaler reading queued jobs must see 0, not no series.
        counts = {status: 0 for status in JOB_STATUSES} | self.queue.depth()
        for status, count in sorted(counts.items()):
            depth.add_metric([status], count)
        yield depth
        yield GaugeMetricFamily(
            "faaspub_queue_oldest_age_seconds",
            "Age of the oldest queued job.",
            value=self.queue.oldest_queued_age_s(),
        )


_registered: list[QueueCollector] = []


def watch_queue(queue: Queue) -> None:
    """Expose ``queue`` on the default registry (the latest call wins; one per process)."""
    if _registered:
        _registered[0].queue = queue
        return
    collector = QueueCollector(queue)
    REGISTRY.register(collector)
    _registered.append(collector)
