"""Latency budget per stage: HDR recording, merging, breach alerts and /metrics.

Units: recorded values in ns, reported figures in us (see daemon/latency.py).
"""

from __future__ import annotations

import logging
import math
import threading
import time
import timeit
import urllib.request

import msgspec
import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from actors.latency import (END_TO_END, FIX_PARSE, HIGHEST_NS, REPRICE, ROUTE, STAGES, BudgetBreach, BudgetMonitor,
                            LatencyBudgets, StageRecorder, _index_ns)
from daemon.metrics import Metrics

# HDR with 3 significant digits: a reported value is at most one bucket above the
# true one, and buckets are at most 1/1024 of the value wide (2**-10 relative).
HDR_REL = 2.0 ** -10


class FakeClock:
    """Monotonic seconds under the test's control (the recorder's window clock)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _samples_ns(n: int, seed: int = 7) -> np.ndarray:
    # Lognormal around ~8 us with a long tail: the shape of real stage latencies.
    rng = np.random.default_rng(seed)
    return np.maximum(rng.lognormal(mean=9.0, sigma=0.9, size=n), 1).astype(np.int64)


def _feed(recorder: StageRecorder, stage: str, samples: np.ndarray) -> None:
    for ns in samples.tolist():
        recorder.record_value_ns(stage, ns)


def _comparable(snapshot: dict) -> dict:
    # NaN != NaN: spell empty quantiles as None so two snapshots compare by value.
    return {stage: tuple(None if isinstance(v, float) and math.isnan(v) else v
                         for v in msgspec.structs.astuple(stats)) for stage, stats in snapshot.items()}


def _nearest_rank_us(samples: np.ndarray, percentile: float) -> float:
    # HdrHistogram's rank rule: the round(p * n)-th smallest sample, at least the 1st.
    ordered = np.sort(samples)
    rank = max(int(percentile * len(samples) / 100 + 0.5), 1)
    return float(ordered[rank - 1]) / 1000.0


# --------------------------------------------------------------------------- budgets

def test_budget_defaults_match_architecture() -> None:
    budgets = LatencyBudgets()
    assert budgets.as_dict() == {"fix_parse": 15.0, "route": 80.0, "position_update": 25.0, "risk_publish": 80.0,
                                 "pretrade": 25.0, "reprice": 5000.0, "liquidation_decision": 200.0,
                                 "end_to_end": 500.0}
    assert tuple(budgets.as_dict()) == STAGES
    assert (budgets.check_interval_s, budgets.min_samples) == (1.0, 100)
    assert budgets.budget_us("nonexistent") is None
    assert budgets.budget_us("check_interval_s") is None  # not a stage


def test_budgets_decode_from_config_and_reject_bad_values() -> None:
    budgets = msgspec.convert({"route": 60, "min_samples": 10}, LatencyBudgets)
    assert budgets.route == 60.0 and budgets.fix_parse == 15.0 and budgets.min_samples == 10
    with pytest.raises(msgspec.ValidationError, match="rout"):
        msgspec.convert({"rout": 60}, LatencyBudgets)  # typo: unknown field
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"pretrade": 0}, LatencyBudgets)
    with pytest.raises(msgspec.ValidationError, match="window_s"):
        msgspec.convert({"window_s": 0.5, "check_interval_s": 1.0}, LatencyBudgets)


# --------------------------------------------------------------------------- recorder

def test_fast_index_matches_hdrh() -> None:
    template = HdrHistogram(1, HIGHEST_NS, 3)
    values = [0, 1, 2, 1023, 1024, 2047, 2048, 2049, 4095, 4096, 123_456, 10**9, HIGHEST_NS]
    values += _samples_ns(2000).tolist()
    for ns in values:
        assert _index_ns(ns) == template._counts_index_for(ns), ns


def test_percentiles_match_numpy_and_hdrh() -> None:
    samples = _samples_ns(200_000)
    recorder = StageRecorder()
    reference = HdrHistogram(1, HIGHEST_NS, 3)
    _feed(recorder, FIX_PARSE, samples)
    for ns in samples.tolist():
        reference.record_value(ns)
    stats = recorder.snapshot()[FIX_PARSE]
    assert stats.count == stats.window_count == len(samples)
    for percentile, got in ((50.0, stats.p50_us), (99.0, stats.p99_us), (99.9, stats.p999_us)):
        # Against numpy: HDR's nearest rank lies between numpy's "lower" and "higher"
        # order statistics around p, and HDR rounds up by at most one bucket.
        lower = float(np.percentile(samples, percentile, method="lower")) / 1000.0
        higher = float(np.percentile(samples, percentile, method="higher")) / 1000.0
        assert lower <= got <= higher * (1 + HDR_REL) + 1e-3, (percentile, got, lower, higher)
        # Against the exact nearest-rank sample: equal to 3 significant digits.
        exact = _nearest_rank_us(samples, percentile)
        assert exact <= got <= exact * (1 + HDR_REL) + 1e-3, (percentile, got, exact)
        # Against hdrh itself: identical.
        assert got == reference.get_value_at_percentile(percentile) / 1000.0
    assert stats.max_us == reference.get_max_value() / 1000.0
    assert samples.max() / 1000.0 <= stats.max_us <= samples.max() / 1000.0 * (1 + HDR_REL) + 1e-3
    # And against numpy's default (linear) percentile, the everyday meaning of p99.
    for percentile, got in ((50.0, stats.p50_us), (99.0, stats.p99_us), (99.9, stats.p999_us)):
        assert got == pytest.approx(np.percentile(samples, percentile) / 1000.0, rel=2e-3)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=HIGHEST_NS), min_size=1, max_size=300))
def test_percentiles_property(samples: list[int]) -> None:
    recorder = StageRecorder()
    for ns in samples:
        recorder.record_value_ns(ROUTE, ns)
    stats = recorder.snapshot()[ROUTE]
    array = np.array(samples, dtype=np.int64)
    for percentile, got in ((50.0, stats.p50_us), (99.0, stats.p99_us), (99.9, stats.p999_us)):
        exact = _nearest_rank_us(array, percentile)
        assert exact <= got <= exact * (1 + HDR_REL) + 1e-3


def test_empty_stage_reports_nan_and_no_breach() -> None:
    stats = StageRecorder().snapshot()
    assert tuple(stats) == STAGES
    assert stats[FIX_PARSE].count == 0 and math.isnan(stats[FIX_PARSE].p99_us)
    assert not stats[FIX_PARSE].breached and stats[FIX_PARSE].budget_us == 15.0


def test_stage_without_budget_is_recorded_and_listed_after_known_stages() -> None:
    recorder = StageRecorder()
    recorder.record("zmq_floor", 100, 2100)
    stats = recorder.snapshot()
    assert list(stats)[-1] == "zmq_floor"
    assert stats["zmq_floor"].count == 1 and stats["zmq_floor"].budget_us is None
    assert stats["zmq_floor"].p50_us == pytest.approx(2.0, rel=HDR_REL)


def test_merge_of_encoded_recorders_equals_one_recorder_fed_both() -> None:
    first, second = _samples_ns(30_000, seed=1), _samples_ns(20_000, seed=2) * 3
    actor_a, actor_b, both = StageRecorder(), StageRecorder(), StageRecorder()
    _feed(actor_a, FIX_PARSE, first)
    _feed(actor_b, FIX_PARSE, second)
    _feed(actor_b, ROUTE, second)
    _feed(both, FIX_PARSE, first)
    _feed(both, FIX_PARSE, second)
    _feed(both, ROUTE, second)
    daemon = StageRecorder()
    daemon.merge_encoded(actor_a.encode())
    daemon.merge_encoded(actor_b.encode())
    assert _comparable(daemon.snapshot()) == _comparable(both.snapshot())

    # encode() ships deltas: samples recorded after the first shipment arrive once.
    extra = _samples_ns(5_000, seed=3)
    _feed(actor_a, FIX_PARSE, extra)
    _feed(both, FIX_PARSE, extra)
    daemon.merge_encoded(actor_a.encode())
    daemon.merge_encoded(actor_b.encode())  # nothing new: merges nothing
    assert _comparable(daemon.snapshot()) == _comparable(both.snapshot())
    assert daemon.snapshot()[FIX_PARSE].count == len(first) + len(second) + len(extra)
    # The sender keeps its own full view.
    assert actor_a.snapshot()[FIX_PARSE].count == len(first) + len(extra)


def test_encoding_carries_standard_hdr_histoblobs() -> None:
    samples = _samples_ns(1000)
    recorder = StageRecorder()
    _feed(recorder, ROUTE, samples)
    version, blobs, anomalies, _ = msgspec.msgpack.decode(recorder.encode(cumulative=True, hdr=True))
    histogram = HdrHistogram.decode(blobs[ROUTE])
    assert histogram.get_total_count() == len(samples)
    assert histogram.get_value_at_percentile(99.0) / 1000.0 == recorder.snapshot()[ROUTE].p99_us
    # cumulative=True does not move the incremental mark: the next encode has everything.
    _, blobs, _, _ = msgspec.msgpack.decode(recorder.encode(hdr=True))
    assert HdrHistogram.decode(blobs[ROUTE]).get_total_count() == len(samples)


def test_sparse_and_hdr_encodings_merge_to_the_same_histogram() -> None:
    """The actors' default (sparse buckets) and the standard HDR form carry the same
    samples: merged into fresh recorders, every percentile agrees with the source."""
    samples = _samples_ns(5000)
    source = StageRecorder()
    _feed(source, ROUTE, samples)
    via_sparse, via_hdr = StageRecorder(), StageRecorder()
    via_sparse.merge_encoded(source.encode(cumulative=True))
    via_hdr.merge_encoded(source.encode(cumulative=True, hdr=True))
    expected = source.snapshot()[ROUTE]
    for merged in (via_sparse, via_hdr):
        got = merged.snapshot()[ROUTE]
        assert (got.count, got.p50_us, got.p99_us, got.p999_us, got.max_us) == (
            expected.count, expected.p50_us, expected.p99_us, expected.p999_us, expected.max_us)
    bad = msgspec.msgpack.encode([2, {}, {}, {"route": [np.array([5, 3], "<i4").tobytes(),
                                                          np.array([1, 1], "<i8").tobytes()]}])
    with pytest.raises(ValueError, match="route"):
        StageRecorder().merge_encoded(bad)  # indices out of order


def test_merge_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        StageRecorder().merge_encoded(b"not a histogram")
    bad = msgspec.msgpack.encode([1, {"route": b"garbage"}, {}])
    recorder = StageRecorder()
    with pytest.raises(ValueError, match="route"):
        recorder.merge_encoded(bad)
    assert recorder.snapshot()[ROUTE].count == 0


def test_anomalies_counted_not_recorded() -> None:
    recorder = StageRecorder()
    recorder.record(ROUTE, 2_000, 1_000)                 # end before start
    recorder.record_value_ns(ROUTE, -5)
    recorder.record_value_ns(ROUTE, HIGHEST_NS + 1)      # over 60 s
    recorder.record(ROUTE, 0, 10**15)                    # absurd
    recorder.record(ROUTE, 1_000, 6_000)                 # a real 5 us sample
    recorder.record_value_ns(ROUTE, 0)                   # 0 ns is legitimate (clock granularity)
    stats = recorder.snapshot()[ROUTE]
    assert recorder.anomalies == 4 and stats.anomalies == 4
    assert stats.count == 2 and stats.max_us == pytest.approx(5.0, rel=HDR_REL)
    merged = StageRecorder()
    merged.merge_encoded(recorder.encode())
    assert merged.anomalies == 4
    recorder.reset()
    assert recorder.anomalies == 0 and recorder.snapshot()[ROUTE].count == 0


def test_window_drops_old_samples_but_count_is_cumulative() -> None:
    clock = FakeClock()
    recorder = StageRecorder(LatencyBudgets(window_s=10.0), clock=clock)
    _feed(recorder, ROUTE, np.full(500, 400_000))           # 400 us
    assert recorder.snapshot()[ROUTE].p99_us == pytest.approx(400.0, rel=HDR_REL)
    clock.t += 11.0
    _feed(recorder, ROUTE, np.full(500, 20_000))            # 20 us
    stats = recorder.snapshot()[ROUTE]
    assert stats.p99_us == pytest.approx(20.0, rel=HDR_REL) and stats.max_us == pytest.approx(20.0, rel=HDR_REL)
    assert stats.window_count == 500 and stats.count == 1000
    cumulative = StageRecorder(LatencyBudgets(window_s=10.0), cumulative=True, clock=clock)
    _feed(cumulative, ROUTE, np.full(500, 400_000))
    clock.t += 11.0
    assert cumulative.snapshot()[ROUTE].window_count == 500


def test_window_memory_bounded_under_frequent_snapshots() -> None:
    clock = FakeClock()
    recorder = StageRecorder(LatencyBudgets(window_s=6.0), clock=clock)
    for step in range(3000):                                 # a snapshot every 10 ms for 30 s
        clock.t += 0.01
        recorder.record_value_ns(ROUTE, 10_000 if step < 2000 else 30_000)
        recorder.snapshot()
    stats = recorder.snapshot()[ROUTE]
    # The last 6 s (600 samples, all 30 us) plus at most one 0.1 s slot of older ones.
    assert 600 <= stats.window_count <= 610 and stats.count == 3000
    assert stats.p50_us == pytest.approx(30.0, rel=HDR_REL)
    assert len(recorder._states[ROUTE].window_ring) <= 61   # coalesced into ~60 slots


def test_one_writer_one_reader_lose_nothing() -> None:
    recorder = StageRecorder()
    n = 200_000
    done = threading.Event()
    reader_went = threading.Event()

    def writer() -> None:
        for i in range(n):
            recorder.record(FIX_PARSE, 0, 1000 + (i % 5000))
            if i % 20_000 == 19_999:
                # Make sure the reader runs mid-stream, whatever the scheduler does.
                reader_went.clear()
                reader_went.wait(5.0)
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    snapshots = 0
    while not done.is_set():
        recorder.snapshot()
        recorder.encode()
        snapshots += 1
        reader_went.set()
    thread.join()
    assert recorder.snapshot()[FIX_PARSE].count == n
    assert snapshots > 1


def test_record_cost() -> None:
    recorder = StageRecorder()
    recorder.record(FIX_PARSE, 0, 1)  # first record allocates the stage's buffer
    number = 200_000
    record = recorder.record
    best = min(timeit.repeat(lambda: record(FIX_PARSE, 1_000, 13_345), number=number, repeat=5)) / number
    empty = min(timeit.repeat(lambda: None, number=number, repeat=5)) / number
    start = time.perf_counter()
    snapshot = recorder.snapshot()
    snapshot_ms = (time.perf_counter() - start) * 1e3
    print(f"\nStageRecorder.record: {best * 1e9:.0f} ns per call "
          f"({(best - empty) * 1e9:.0f} ns net of the lambda call); snapshot of 8 stages: {snapshot_ms:.2f} ms")
    assert snapshot[FIX_PARSE].count == 5 * number + 1


# --------------------------------------------------------------------------- monitor

def _monitor_fixture(min_samples: int = 100) -> tuple[FakeClock, StageRecorder, BudgetMonitor, list[BudgetBreach]]:
    clock = FakeClock()
    budgets = LatencyBudgets(min_samples=min_samples, window_s=10.0)
    alerts: list[BudgetBreach] = []
    recorder = StageRecorder(budgets, clock=clock)
    monitor = BudgetMonitor(budgets, alerts.append, wall_clock=lambda: 1.7e9 + clock.t)
    return clock, recorder, monitor, alerts


def test_breach_fires_once_on_crossing_and_once_on_clearing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="riskd.latency")
    clock, recorder, monitor, alerts = _monitor_fixture()
    _feed(recorder, FIX_PARSE, np.full(150, 5_000))          # 5 us: under the 15 us budget
    assert monitor.check(recorder.snapshot()) == [] and alerts == []

    _feed(recorder, FIX_PARSE, np.full(300, 40_000))         # 40 us: p99 over budget
    breaches = monitor.check(recorder.snapshot())
    assert [b.stage for b in breaches] == [FIX_PARSE] and len(alerts) == 1
    alert = alerts[0]
    assert alert.state == "breached" and alert.budget_us == 15.0 and alert.count == 450
    assert alert.p99_us == pytest.approx(40.0, rel=HDR_REL) and alert.at_wall_time == 1.7e9 + clock.t
    assert FIX_PARSE in monitor.active

    for _ in range(5):                                       # the breach persists: no flood
        clock.t += 1.0
        _feed(recorder, FIX_PARSE, np.full(100, 40_000))
        assert [b.stage for b in monitor.check(recorder.snapshot())] == [FIX_PARSE]
    assert len(alerts) == 1

    clock.t += 11.0                                          # the slow samples leave the window
    _feed(recorder, FIX_PARSE, np.full(500, 5_000))
    assert monitor.check(recorder.snapshot()) == []
    assert len(alerts) == 2 and alerts[1].state == "cleared" and alerts[1].stage == FIX_PARSE
    assert alerts[1].p99_us == pytest.approx(5.0, rel=HDR_REL) and not monitor.active
    for _ in range(3):
        clock.t += 1.0
        _feed(recorder, FIX_PARSE, np.full(100, 5_000))
        assert monitor.check(recorder.snapshot()) == []
    assert len(alerts) == 2

    # One log line per transition, with structured fields.
    records = [r for r in caplog.records if r.name == "riskd.latency"]
    assert [r.event for r in records] == ["latency_budget_breached", "latency_budget_cleared"]
    assert records[0].levelno == logging.WARNING and records[0].stage == FIX_PARSE
    assert records[0].budget_us == 15.0 and records[0].p99_us == pytest.approx(40.0, rel=HDR_REL)
    assert records[0].samples == 450


def test_min_samples_respected() -> None:
    clock, recorder, monitor, alerts = _monitor_fixture(min_samples=100)
    _feed(recorder, ROUTE, np.full(99, 1_000_000))           # 1 ms against an 80 us budget
    snapshot = recorder.snapshot()
    assert not snapshot[ROUTE].breached and monitor.check(snapshot) == [] and alerts == []
    recorder.record_value_ns(ROUTE, 1_000_000)               # the 100th sample
    snapshot = recorder.snapshot()
    assert snapshot[ROUTE].breached
    assert [b.stage for b in monitor.check(snapshot)] == [ROUTE] and len(alerts) == 1


def test_breach_clears_when_window_empties_and_not_when_samples_thin_out() -> None:
    clock, recorder, monitor, alerts = _monitor_fixture(min_samples=100)
    _feed(recorder, REPRICE, np.full(200, 9_000_000))       # 9 ms against 5 ms
    monitor.check(recorder.snapshot())
    clock.t += 11.0
    _feed(recorder, REPRICE, np.full(10, 9_000_000))        # few, but still slow: stays breached
    assert [b.stage for b in monitor.check(recorder.snapshot())] == [REPRICE] and len(alerts) == 1
    clock.t += 11.0                                          # no traffic at all: clears
    assert monitor.check(recorder.snapshot()) == []
    assert [a.state for a in alerts] == ["breached", "cleared"] and alerts[1].count == 0


def test_failing_alert_callback_does_not_stop_monitoring(caplog: pytest.LogCaptureFixture) -> None:
    def explode(_: BudgetBreach) -> None:
        raise RuntimeError("sink down")

    recorder = StageRecorder()
    monitor = BudgetMonitor(LatencyBudgets(), explode)
    _feed(recorder, END_TO_END, np.full(200, 2_000_000))
    assert [b.stage for b in monitor.check(recorder.snapshot())] == [END_TO_END]
    assert any(getattr(r, "event", None) == "latency_alert_error" for r in caplog.records)


def test_monitor_run_loop_checks_periodically() -> None:
    alerts: list[BudgetBreach] = []
    budgets = LatencyBudgets(check_interval_s=0.01, window_s=10.0)
    recorder = StageRecorder(budgets)
    _feed(recorder, ROUTE, np.full(200, 500_000))
    stop = threading.Event()
    thread = threading.Thread(target=BudgetMonitor(budgets, alerts.append).run, args=(recorder.snapshot, stop))
    thread.start()
    deadline = time.monotonic() + 5.0
    while not alerts and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(timeout=5.0)
    assert [a.stage for a in alerts] == [ROUTE] and not thread.is_alive()


# --------------------------------------------------------------------------- /metrics

def _parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def test_metrics_over_http() -> None:
    recorder = StageRecorder()
    samples = _samples_ns(5_000)
    _feed(recorder, ROUTE, samples)
    _feed(recorder, FIX_PARSE, np.full(200, 40_000))        # breaching the 15 us budget
    recorder.record_value_ns(ROUTE, -1)
    metrics = Metrics()
    metrics.add_stage_source(recorder)
    fills = metrics.counter("fills_total", "Fills applied.", ["account"])
    fills.labels("ACC1").inc(7)
    assert metrics.counter("fills", "Fills applied.", ["account"]) is fills   # same metric again
    with pytest.raises(ValueError):
        metrics.gauge("fills_total", "clash", ["account"])
    with pytest.raises(ValueError):
        metrics.gauge("stage_budget_us", "taken by the stage collector")
    metrics.gauge("account_margin_ratio", "Equity over maintenance margin.", ["account"]).labels("ACC1").set(1.25)

    server, port = metrics.serve()
    try:
        assert server.server_address[0] == "127.0.0.1" and port > 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert response.status == 200
            body = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()

    values = _parse(body)
    stats = recorder.snapshot()
    route = stats[ROUTE]
    for quantile, expected in (("0.5", route.p50_us), ("0.99", route.p99_us), ("0.999", route.p999_us)):
        assert values[("riskd_stage_latency_us", (("quantile", quantile), ("stage", "route")))] == expected
    assert values[("riskd_stage_latency_max_us", (("stage", "route"),))] == route.max_us
    assert values[("riskd_stage_count_total", (("stage", "route"),))] == len(samples)
    assert values[("riskd_stage_anomalies_total", (("stage", "route"),))] == 1
    assert values[("riskd_stage_budget_us", (("stage", "route"),))] == 80.0
    assert values[("riskd_stage_breached", (("stage", "route"),))] == float(route.breached)
    assert values[("riskd_stage_breached", (("stage", "fix_parse"),))] == 1.0
    for stage in STAGES:
        assert ("riskd_stage_budget_us", (("stage", stage),)) in values
    assert math.isnan(values[("riskd_stage_latency_us", (("quantile", "0.99"), ("stage", "pretrade")))])
    assert values[("riskd_fills_total", (("account", "ACC1"),))] == 7.0
    assert values[("riskd_account_margin_ratio", (("account", "ACC1"),))] == 1.25
    # render() is the same exposition, for tests and `riskd status`.
    assert ("riskd_fills_total", (("account", "ACC1"),)) in _parse(metrics.render().decode())


def test_metrics_registry_is_private_and_sources_can_be_named() -> None:
    from prometheus_client import REGISTRY

    first, second = Metrics(), Metrics()
    first.counter("lost_fills", "Fills lost.")                # no clash across instances
    second.counter("lost_fills", "Fills lost.")
    assert REGISTRY.get_sample_value("riskd_lost_fills_total") is None
    a, b = StageRecorder(), StageRecorder()
    a.record_value_ns(ROUTE, 10_000)
    b.record_value_ns(ROUTE, 20_000)
    first.add_stage_source(a, "ingest")
    first.add_stage_source(b.snapshot, "position-0")
    with pytest.raises(ValueError):
        first.add_stage_source(a, "ingest")
    values = _parse(first.render().decode())
    assert values[("riskd_stage_count_total", (("source", "ingest"), ("stage", "route")))] == 1
    assert values[("riskd_stage_count_total", (("source", "position-0"), ("stage", "route")))] == 1


def test_broken_source_does_not_fail_the_scrape() -> None:
    def broken() -> dict:
        raise RuntimeError("actor gone")

    metrics = Metrics()
    metrics.add_stage_source(broken, "dead")
    metrics.counter("fills", "Fills.").inc()
    assert ("riskd_fills_total", ()) in _parse(metrics.render().decode())
