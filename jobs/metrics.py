"""The worker's Prometheus metrics, served on --metrics-listen (default 127.0.0.1:9092).

They live in a registry of their own: the gateway imports the jobs app too, and its /metrics
should not show a worker's counters at zero.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.db import DatabaseError, connection
from django.db.models import Count
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from jobs.models import Job, JobStatus

logger = logging.getLogger(__name__)

DEPTH_STATUSES = (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.DEAD)


class QueueDepthCollector(Collector):
    """worker_job_queue_depth{queue,status}: PENDING, RUNNING and DEAD jobs per queue, read from the
    database at each scrape."""

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "worker_job_queue_depth", "Jobs per queue and status (PENDING, RUNNING, DEAD).", labels=["queue", "status"]
        )

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        try:
            rows = (
                Job.objects.filter(status__in=DEPTH_STATUSES)
                .values_list("queue", "status")
                .annotate(count=Count("id"))
                .order_by()
            )
            for queue_name, status, count in rows:
                family.add_metric([queue_name, status], count)
        except DatabaseError as exc:
            logger.warning("queue depth unavailable: %s", exc, extra={"action": "metrics_depth_failed"})
        finally:
            connection.close()  # each scrape is served by a thread of its own
        yield family


class WorkerMetrics:
    """The counters and histograms a worker updates as it runs jobs."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.processed = Counter(
            "jobs_processed_total",
            "Attempts finished by this worker, by task and outcome (completed, retried, dead, lost).",
            ["task", "outcome"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "job_duration_seconds",
            "Time a task ran, per attempt.",
            ["task"],
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0),
            registry=self.registry,
        )
        self.pickup_latency = Histogram(
            "job_pickup_latency_seconds",
            "Time from a job becoming due (run_at) to a worker starting it.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=self.registry,
        )
        self.registry.register(QueueDepthCollector())
