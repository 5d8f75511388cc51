"""Prometheus metrics of the HTTP collector (``streamcdp collect``), served at its ``/metrics``.

A registry of its own: a collector process runs no worker, and a worker serves no collector metrics.
Labels are bounded sets: the API path (unknown paths count as ``other``), the status code, the event
family and the contract's reason codes.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

registry = CollectorRegistry(auto_describe=True)

requests = Counter(
    "streamcdp_collector_requests_total",
    "HTTP requests answered, by API path and status.",
    ["path", "status"],
    registry=registry,
)
events_accepted = Counter(
    "streamcdp_collector_events_accepted_total",
    "Events stored on their inbound topic (acknowledged by the broker), by family.",
    ["family"],
    registry=registry,
)
events_rejected = Counter(
    "streamcdp_collector_events_rejected_total",
    "Events that broke the contract, by reason: single calls answered 400, batch events dead-lettered.",
    ["reason"],
    registry=registry,
)
produce_seconds = Histogram(
    "streamcdp_collector_produce_seconds",
    "One request's events sent until the broker acknowledged all of them.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=registry,
)
in_flight_requests = Gauge("streamcdp_collector_in_flight_requests", "Requests being handled now.", registry=registry)
broker_available = Gauge(
    "streamcdp_collector_broker_available",
    "1 while the broker acknowledges, 0 while it is unreachable.",
    registry=registry,
)
