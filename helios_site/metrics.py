"""Prometheus metrics of the gateway. Under gunicorn they live in PROMETHEUS_MULTIPROC_DIR
(set by `manage.py rungateway`), so /metrics sums every worker process, whichever one answers."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "helios_requests_total",
    "HTTP requests answered by the gateway.",
    ["method", "route", "status"],
)
REQUEST_DURATION = Histogram(
    "helios_request_duration_seconds",
    "Time from the first middleware to the response, in seconds.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
