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

The pre-trade stage is also recorded per decision reason code (stages
``pretrade:<reason>``, exported apart from the stage series)::

    riskd_pretrade_latency_us{reason, quantile}   gauge (check received -> decision sent, us)
    riskd_pretrade_latency_max_us{reason}         gauge
    riskd_pretrade_decisions_total{reason}        counter (decisions since start, what-ifs included)

A quantile of a stage with an empty window is NaN, as in a Prometheus summary.

Account series (opt-in: :meth:`Metrics.add_account_source`), one per account, from
the latest :class:`~actors.messages.AccountRisk` at each scrape (money in the
account's currency)::

    riskd_account_equity{account}                        gauge (cash + unrealized P&L)
    riskd_account_initial_margin{account}                gauge (IM)
    riskd_account_initial_margin_with_orders{account}    gauge (IM with open orders reserved)
    riskd_account_maintenance_margin{account}            gauge (MM)
    riskd_account_margin_ratio{account}                  gauge (MM / equity, fraction; +Inf when equity <= 0)
    riskd_account_tier{account}                          gauge 0..4: normal, margin_call, reduce_only,
                                                         partial_liquidation, full_liquidation (NaN: unknown)

Alert and health series (opt-in: :meth:`Metrics.add_alert_source`,
:meth:`Metrics.add_health_source`)::

    riskd_budget_alerts_total{state="breached"|"cleared"}  counter (latency budget transitions seen)
    riskd_health_value{actor, field}                        gauge (every numeric or boolean leaf of the
                                                            daemon's health dict, booleans as 0/1; units
                                                            are the actor's: mostly counts)

Liquidation series (opt-in: :meth:`Metrics.add_liquidation_source`), from the
liquidation actor's ``metrics()`` at each scrape: ``riskd_liquidation_<key>``, a
counter for keys ending in ``_total`` (rounds, orders, fills, margin calls...),
a gauge otherwise (accounts per tier, ``dry_run`` and ``execution_logged_on`` 0/1).

In ``riskd_health_value`` a leaf at path ``shards -> 0 -> received`` has
``actor="shards.0"`` and ``field="received"`` (the path up to the leaf, dotted).
"""

from __future__ import annotations

import logging
import math
import numbers
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from actors.latency import BudgetBreach, StageRecorder, StageStats
from actors.messages import AccountRisk
from actors.pretrade_endpoint import REASON_STAGE_PREFIX
from risk.tiers import Tier

__all__ = ["Metrics", "StageCollector", "AccountCollector", "AlertCollector", "HealthCollector",
           "SnapshotSource", "NAMESPACE", "QUANTILES", "TIER_CODES"]

log = logging.getLogger("riskd.metrics")

NAMESPACE = "riskd"
#: (label value, StageStats field) of each exported quantile.
QUANTILES: tuple[tuple[str, str], ...] = (("0.5", "p50_us"), ("0.99", "p99_us"), ("0.999", "p999_us"))

#: ``riskd_account_tier`` value of each tier name (the ladder order of risk.tiers.Tier).
TIER_CODES: dict[str, int] = {tier.name.lower(): int(tier) for tier in Tier}
#: At most this many ``riskd_health_value`` series per scrape: a runaway health dict
#: (a list growing per fill, say) must not blow up the exposition.
MAX_HEALTH_SERIES = 2000

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
        yield from self._reason_families(["reason"])

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            sources = list(self._sources.items())
        labelled = any(name for name, _ in sources)
        labels = ["stage", "source"] if labelled else ["stage"]
        latency, latency_max, count, window, budget, breached, anomalies = self._families(labels)
        by_reason, by_reason_max, decisions = self._reason_families(["reason", "source"] if labelled else ["reason"])
        for name, snapshot in sources:
            try:
                stats_by_stage = snapshot()
            except Exception:
                # One broken source must not fail the whole scrape (a 500 loses
                # every other series too).
                log.exception("stage snapshot failed", extra={"event": "metrics_source_error", "source": name})
                continue
            for stage, stats in stats_by_stage.items():
                if stage.startswith(REASON_STAGE_PREFIX):
                    code = stage[len(REASON_STAGE_PREFIX):]
                    reason = [code, name] if labelled else [code]
                    for quantile, field in QUANTILES:
                        by_reason.add_metric(reason + [quantile], getattr(stats, field))
                    by_reason_max.add_metric(reason, stats.max_us)
                    decisions.add_metric(reason, stats.count)
                    continue
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
        yield from (latency, latency_max, count, window, budget, breached, anomalies, by_reason, by_reason_max,
                    decisions)

    @staticmethod
    def _reason_families(labels: list[str]) -> tuple[Metric, ...]:
        # The pre-trade stage split by the decision's reason code (stages "pretrade:<reason>").
        p = NAMESPACE + "_pretrade_"
        return (
            GaugeMetricFamily(p + "latency_us", "Pre-trade check latency (received -> decision sent) by reason "
                              "code, quantile over the recent window (us).", labels=labels + ["quantile"]),
            GaugeMetricFamily(p + "latency_max_us", "Pre-trade check latency maximum by reason code over the "
                              "recent window (us).", labels=labels),
            CounterMetricFamily(p + "decisions", "Pre-trade decisions by reason code since start (what-ifs "
                                "included).", labels=labels),
        )

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


class AccountCollector(Collector):
    """Per-account margin gauges from ``source()`` (the latest AccountRisk of each
    account), read at each scrape so the exposition never lags the daemon's view."""

    def __init__(self, source: Callable[[], Sequence[AccountRisk]]) -> None:
        self._source = source

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        equity, im, im_orders, mm, ratio, tier = families
        try:
            accounts = list(self._source())
        except Exception:
            log.exception("account source failed", extra={"event": "metrics_source_error", "source": "accounts"})
            accounts = []
        for risk in accounts:
            labels = [risk.account]
            equity.add_metric(labels, risk.equity)
            im.add_metric(labels, risk.initial_margin)
            im_orders.add_metric(labels, risk.initial_margin_with_orders)
            mm.add_metric(labels, risk.maintenance_margin)
            ratio.add_metric(labels, risk.margin_ratio)
            # NaN for a tier name we do not know: visible, and never mistaken for normal (0).
            tier.add_metric(labels, float(TIER_CODES.get(risk.tier, math.nan)))
        yield from families

    @staticmethod
    def _families() -> tuple[Metric, ...]:
        p = NAMESPACE + "_account_"
        labels = ["account"]
        return (
            GaugeMetricFamily(p + "equity", "Account equity: cash + unrealized P&L (currency).", labels=labels),
            GaugeMetricFamily(p + "initial_margin", "Account initial margin (currency).", labels=labels),
            GaugeMetricFamily(p + "initial_margin_with_orders",
                              "Account initial margin with open orders reserved (currency).", labels=labels),
            GaugeMetricFamily(p + "maintenance_margin", "Account maintenance margin (currency).", labels=labels),
            GaugeMetricFamily(p + "margin_ratio", "Maintenance margin / equity (fraction; +Inf if equity <= 0).",
                              labels=labels),
            GaugeMetricFamily(p + "tier", "Account tier: 0 normal, 1 margin_call, 2 reduce_only, "
                              "3 partial_liquidation, 4 full_liquidation.", labels=labels),
        )


class AlertCollector(Collector):
    """``riskd_budget_alerts_total{state}``: budget alerts seen in ``source()``.

    ``source()`` returns the recent alerts, most recent last, possibly bounded
    (oldest dropped first). At each scrape the alerts after the last one already
    counted are added, so the counter stays monotonic and exact as long as fewer
    alerts than the source keeps arrive between two scrapes (alerts are state
    transitions: rare).
    """

    def __init__(self, source: Callable[[], Sequence[BudgetBreach]]) -> None:
        self._source = source
        self._lock = threading.Lock()  # scrapes run on concurrent server threads
        self._counts = {"breached": 0, "cleared": 0}
        self._last: BudgetBreach | None = None

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        try:
            alerts = list(self._source())
        except Exception:
            log.exception("alert source failed", extra={"event": "metrics_source_error", "source": "alerts"})
            alerts = None
        with self._lock:
            if alerts:
                start = 0
                if self._last is not None:
                    # The newest alert counted so far; if it was dropped from the
                    # source, everything older went with it and all present are new.
                    for i in range(len(alerts) - 1, -1, -1):
                        if alerts[i] == self._last:
                            start = i + 1
                            break
                for alert in alerts[start:]:
                    self._counts[alert.state] = self._counts.get(alert.state, 0) + 1
                self._last = alerts[-1]
            counts = dict(self._counts)
        family = self._family()
        for state, n in counts.items():
            family.add_metric([state], n)
        yield family

    @staticmethod
    def _family() -> Metric:
        return CounterMetricFamily(NAMESPACE + "_budget_alerts", "Latency budget alerts (transitions) seen.",
                                   labels=["state"])


class HealthCollector(Collector):
    """``riskd_health_value{actor, field}``: the numeric leaves of ``source()``'s dict."""

    def __init__(self, source: Callable[[], Mapping[str, Any]]) -> None:
        self._source = source

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        try:
            health = self._source()
        except Exception:
            log.exception("health source failed", extra={"event": "metrics_source_error", "source": "health"})
            health = {}
        for n, (path, value) in enumerate(_numeric_leaves(health, ())):
            if n >= MAX_HEALTH_SERIES:
                log.warning("health has over %d numeric leaves; the rest are not exported", MAX_HEALTH_SERIES)
                break
            family.add_metric([".".join(path[:-1]), path[-1]], value)
        yield family

    @staticmethod
    def _family() -> Metric:
        return GaugeMetricFamily(NAMESPACE + "_health_value", "Numeric health counters of the daemon's actors "
                                 "(booleans as 0/1).", labels=["actor", "field"])


class LiquidationCollector(Collector):
    """``riskd_liquidation_<key>``: the liquidation actor's flat counters and gauges
    (``ray_liquidation.LiquidationActorImpl.metrics``): a key ending in ``_total`` is
    a counter, any other a gauge (counts of accounts, 0/1 flags)."""

    def __init__(self, source: Callable[[], Mapping[str, Any]]) -> None:
        self._source = source

    def describe(self) -> Iterator[Metric]:
        return iter(())  # the keys are the engine's: known at scrape time only

    def collect(self) -> Iterator[Metric]:
        try:
            values = self._source()
        except Exception:
            log.exception("liquidation source failed",
                          extra={"event": "metrics_source_error", "source": "liquidation"})
            values = {}
        for key, value in sorted(values.items()):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not key.isidentifier():
                continue
            name = f"{NAMESPACE}_liquidation_{key}"
            if key.endswith("_total"):
                family: Metric = CounterMetricFamily(name[:-len("_total")], f"Liquidation engine: {key}.")
            else:
                family = GaugeMetricFamily(name, f"Liquidation engine: {key}.")
            family.add_metric([], float(value))
            yield family


def _numeric_leaves(node: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], float]]:
    """(path, value) of every bool or real-number leaf under ``node`` (depth first)."""
    if isinstance(node, Mapping):
        for key, child in node.items():
            yield from _numeric_leaves(child, path + (str(key),))
    elif isinstance(node, (list, tuple)):
        for i, child in enumerate(node):
            yield from _numeric_leaves(child, path + (str(i),))
    elif isinstance(node, (bool, numbers.Real)) and path:
        yield path, float(node)


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
        self._views: dict[str, Collector] = {}

    def add_stage_source(self, source: SnapshotSource, name: str = "") -> None:
        """Export a recorder's (or snapshot function's) stages; see :class:`StageCollector`."""
        self.stages.add(source, name)

    def add_account_source(self, source: Callable[[], Sequence[AccountRisk]]) -> None:
        """Export ``riskd_account_*`` gauges from ``source()`` (latest AccountRisk per account).

        Once per Metrics: a second call (or a gauge already registered under one of
        these names) raises ``ValueError``.
        """
        self._register_once("accounts", AccountCollector(source))

    def add_alert_source(self, source: Callable[[], Sequence[BudgetBreach]]) -> None:
        """Export ``riskd_budget_alerts_total`` from ``source()`` (recent alerts, most recent last)."""
        self._register_once("alerts", AlertCollector(source))

    def add_health_source(self, source: Callable[[], Mapping[str, Any]]) -> None:
        """Export ``riskd_health_value`` from ``source()`` (the daemon's health dict)."""
        self._register_once("health", HealthCollector(source))

    def add_liquidation_source(self, source: Callable[[], Mapping[str, Any]]) -> None:
        """Export ``riskd_liquidation_<key>`` from ``source()`` (the liquidation actor's metrics)."""
        self._register_once("liquidation", LiquidationCollector(source))

    def _register_once(self, kind: str, collector: Collector) -> None:
        with self._lock:
            if kind in self._views:
                raise ValueError(f"an {kind} source is already registered")
            # The registry refuses a collector whose names are already taken.
            self.registry.register(collector)
            self._views[kind] = collector

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

