"""Prometheus metrics of the storage-event bridge (exposed by the service's ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RECEIVED = Counter(
    "faaspub_storage_events_received_total", "Storage events received from a source", ["source"]
)
RECOVERED = Counter(
    "faaspub_storage_events_recovered_total",
    "Events a reconciling listing found that no notification had brought",
    ["source"],
)
DELIVERED = Counter("faaspub_storage_events_delivered_total", "Event deliveries that reached the backend")
RETRIED = Counter("faaspub_storage_events_retried_total", "Event deliveries put back for another attempt")
DEAD_LETTERED = Counter(
    "faaspub_storage_events_dead_lettered_total", "Event deliveries that gave up (dead-letter state)"
)
REJECTED = Counter(
    "faaspub_storage_events_rejected_total", "Input that was not turned into an event", ["reason"]
)
LAG = Histogram(
    "faaspub_event_lag_seconds",
    "Time from the storage event (file close) to the function's start",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)


def reject(reason: str, count: int = 1) -> None:
    """Count input that was dropped; ``reason`` is a short fixed word (bounded label values)."""
    REJECTED.labels(reason=reason).inc(count)
