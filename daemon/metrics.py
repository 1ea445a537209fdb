"""Prometheus exposition of riskd: per-stage latency against budget, plus the
daemon's own counters and gauges.

Everything lives on a dedicated ``CollectorRegistry`` owned by :class:`Metrics`
(never prometheus-client's global one), so tests, several daemons in one process
and library users never collide.

Stage series, read from :class:`~actors.latency.StageRecorder` snapshots at each
scrape (latencies in microseconds, over the recorder's window)::

    riskd_stage_latency_us{stage, quantile="0.5"|"0.99"|"0.999"}   gauge
    riskd_stage_latency_max_us{stage}                                gauge
    riskd_stage_count_total{stage}                                   counter (samples since start)
    riskd_stage_window_samples{stage}                                gauge (samples behind the quantiles)
    riskd_stage_budget_us{stage}                                     gauge (p99 budget)
    riskd_stage_breached{stage}                                      gauge, 1 = p99 over budget
    riskd_stage_anomalies_total{stage}                               counter (values not recorded)

A quantile of a stage with an empty window is NaN, as in a Prometheus summary.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from actors.latency import StageRecorder, StageStats

__all__ = ["Metrics", "StageCollector", "SnapshotSource", "NAMESPACE", "QUANTILES"]

log = logging.getLogger("riskd.metrics")

NAMESPACE = "riskd"
#: (label value, StageStats field) of each exported quantile.
QUANTILES: tuple[tuple[str, str], ...] = (("0.5", "p50_us"), ("0.99", "p99_us"), ("0.999", "p999_us"))

#: Something that yields per-stage stats: a recorder, or a function returning a snapshot.
SnapshotSource = StageRecorder | Callable[[], Mapping[str, StageStats]]


class StageCollector(Collector):
    """Custom collector: at each scrape, snapshots every registered source.

    A source registered with a non-empty ``source`` name adds a ``source`` label to
    its series, so several recorders can be exported side by side without
    clashing; the usual daemon setup has one (unnamed) aggregate recorder.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: dict[str, Callable[[], Mapping[str, StageStats]]] = {}

    def add(self, source: SnapshotSource, name: str = "") -> None:
        """Export ``source``'s stages; ``name`` becomes its ``source`` label ('' = none)."""
        snapshot = source.snapshot if isinstance(source, StageRecorder) else source
        with self._lock:
            if name in self._sources:
                raise ValueError(f"stage source {name!r} is already registered")
            self._sources[name] = snapshot

    def remove(self, name: str = "") -> None:
        """Stop exporting the source registered under ``name``."""
        with self._lock:
            self._sources.pop(name, None)

    def describe(self) -> Iterator[Metric]:
        # Declares the family names to the registry up front, so a counter or gauge
        # registered later under one of these names is refused instead of clashing.
        yield from self._families(["stage"])

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            sources = list(self._sources.items())
        labelled = any(name for name, _ in sources)
        labels = ["stage", "source"] if labelled else ["stage"]
        latency, latency_max, count, window, budget, breached, anomalies = self._families(labels)
        for name, snapshot in sources:
            try:
                stats_by_stage = snapshot()
            except Exception:
                # One broken source must not fail the whole scrape (a 500 loses
                # every other series too).
                log.exception("stage snapshot failed", extra={"event": "metrics_source_error", "source": name})
                continue
            for stage, stats in stats_by_stage.items():
                base = [stage, name] if labelled else [stage]
                for quantile, field in QUANTILES:
                    latency.add_metric(base + [quantile], getattr(stats, field))
                latency_max.add_metric(base, stats.max_us)
                count.add_metric(base, stats.count)
                window.add_metric(base, stats.window_count)
                if stats.budget_us is not None:
                    budget.add_metric(base, stats.budget_us)
                breached.add_metric(base, 1.0 if stats.breached else 0.0)
                anomalies.add_metric(base, stats.anomalies)
        yield from (latency, latency_max, count, window, budget, breached, anomalies)

    @staticmethod
    def _families(labels: list[str]) -> tuple[Metric, ...]:
        p = NAMESPACE + "_stage_"
        return (
            GaugeMetricFamily(p + "latency_us", "Stage latency quantile over the recent window (us).",
                              labels=labels + ["quantile"]),
            GaugeMetricFamily(p + "latency_max_us", "Stage latency maximum over the recent window (us).",
                              labels=labels),
            CounterMetricFamily(p + "count", "Stage latency samples recorded since start.", labels=labels),
            GaugeMetricFamily(p + "window_samples", "Stage latency samples behind the quantiles.", labels=labels),
            GaugeMetricFamily(p + "budget_us", "Stage p99 latency budget (us).", labels=labels),
            GaugeMetricFamily(p + "breached", "1 while the stage's p99 exceeds its budget.", labels=labels),
            CounterMetricFamily(p + "anomalies", "Stage latencies not recorded (negative or over 60 s).",
                                labels=labels),
        )


class Metrics:
    """The daemon's metrics: a private registry, the stage collector, and helpers
    to register counters and gauges.

    Names passed to :meth:`counter` / :meth:`gauge` get the ``riskd_`` prefix unless
    they already have it; a counter's ``_total`` suffix is added by
    prometheus-client (``counter("fills")`` and ``counter("fills_total")`` both
    export ``riskd_fills_total``). Asking again for the same name returns the same
    metric (so a restarted component re-registers harmlessly); the same name with
    another kind or other labels raises ``ValueError``.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.stages = StageCollector()
        self.registry.register(self.stages)
        self._lock = threading.Lock()
        self._metrics: dict[str, tuple[Counter | Gauge, tuple[str, ...]]] = {}

    def add_stage_source(self, source: SnapshotSource, name: str = "") -> None:
        """Export a recorder's (or snapshot function's) stages; see :class:`StageCollector`."""
        self.stages.add(source, name)

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        """A monotonically increasing counter (e.g. ``fills_total``, ``lost_fills``)."""
        return self._get(Counter, name, help, labels)

    def gauge(self, name: str, help: str, labels: Sequence[str] = ()) -> Gauge:
        """A gauge that goes up and down (e.g. an account's margin ratio)."""
        return self._get(Gauge, name, help, labels)

    def _get(self, kind: type[Counter] | type[Gauge], name: str, help: str, labels: Sequence[str]) -> Counter | Gauge:
        full = name if name.startswith(NAMESPACE + "_") else f"{NAMESPACE}_{name}"
        if kind is Counter and full.endswith("_total"):
            full = full[: -len("_total")]  # one key for "x" and "x_total", as exported
        with self._lock:
            existing = self._metrics.get(full)
            if existing is not None:
                metric, labelnames = existing
                if type(metric) is not kind or labelnames != tuple(labels):
                    raise ValueError(f"metric {full!r} already registered as {type(metric).__name__} "
                                     f"with labels {list(labelnames)}")
                return metric
            # The registry itself refuses names taken by the stage collector.
            metric = kind(full, help, labelnames=tuple(labels), registry=self.registry)
            self._metrics[full] = (metric, tuple(labels))
            return metric

    def render(self) -> bytes:
        """The current exposition (Prometheus text format 0.0.4), as served on /metrics."""
        return generate_latest(self.registry)

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> tuple[WSGIServer, int]:
        """Serve /metrics over HTTP in a daemon thread; return (server, bound port).

        Binds loopback by default: the metrics reveal positions' risk, so exposing
        them beyond the host is an explicit choice (``host="0.0.0.0"``). ``port=0``
        picks any free port. Stop with ``server.shutdown(); server.server_close()``.
        """
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server, int(server.server_address[1])

