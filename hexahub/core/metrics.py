"""Prometheus metrics shared by every domain.

Domains define their own series here or beside their code, always on REGISTRY, so that
/metrics shows everything from one place. Route labels use the route's template
(`/api/items/{id}`), never the raw path, to keep the number of series bounded.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

HTTP_REQUESTS = Counter(
    "hexahub_http_requests_total",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "hexahub_http_request_duration_seconds",
    "Time from receiving a request to sending the last byte of its response.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
HTTP_IN_FLIGHT = Gauge(
    "hexahub_http_requests_in_flight", "Requests being handled now.", registry=REGISTRY
)
TASKS = Counter(
    "hexahub_tasks_total",
    "Background task attempts by task name and outcome (succeeded, retried, dead).",
    ["task", "outcome"],
    registry=REGISTRY,
)
TASK_DURATION = Histogram(
    "hexahub_task_duration_seconds",
    "Wall time of one background task attempt.",
    ["task"],
    registry=REGISTRY,
)


def render_latest() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
