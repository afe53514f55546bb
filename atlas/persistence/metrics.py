"""Prometheus metrics of persistence, read from the engine when Prometheus scrapes."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from atlas.persistence.engine import Histogram, Persistence


def _histogram(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, documentation, buckets=histogram.cumulative(), sum_value=histogram.total)


class PersistenceCollector(Collector):
    """atlas_aof_fsync_seconds, atlas_snapshot_duration_seconds and the AOF's state."""

    def __init__(self, persistence: Persistence) -> None:
        self.persistence = persistence

    def collect(self) -> Iterator[Metric]:
        p = self.persistence
        yield _histogram("atlas_aof_fsync_seconds", "Time spent in AOF fsyncs.", p.fsync_seconds)
        yield _histogram("atlas_snapshot_duration_seconds", "Time a snapshot (AOF rewrite) took.", p.snapshot_seconds)
        yield GaugeMetricFamily(
            "atlas_aof_size_bytes", "Size of the AOF file being appended.", value=p.aof.size if p.aof else 0
        )
        yield GaugeMetricFamily(
            "atlas_aof_write_ok",
            "1 while AOF writes succeed, 0 while writes are refused.",
            value=int(p.write_error is None),
        )
        yield GaugeMetricFamily(
            "atlas_snapshot_in_progress", "1 while a background snapshot runs.", value=int(p.child is not None)
        )
        yield CounterMetricFamily("atlas_snapshots", "Snapshots completed.", value=p.snapshots_done)
