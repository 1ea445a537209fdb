"""``riskd bench fpga --json``: the FPGA overlay's figures, measured in simulation, next to
the software path's measured times.

Cycle counts are measured in the Amaranth simulation (the Greeks IP through its AXI
master on the simulated pynq device; the risk filter's ap_start -> ap_done through
AXI4-Lite); times in us at ``clock_mhz`` follow from them (the clock is a design
assumption, justified in fpga_overlay/README.md, not a timing-closed figure). The
errors are the bit-exact model's against risk/'s float64 Greeks inside the
documented domain. The software path is timed here: risk.pricing.greeks per option
(vectorized batch) and actors.pretrade.PreTradeChecker.check per what-if check
(thread CPU time);
so is the host's share of the deciding path (actors/fpga_decide.py: the filter's
record, the software-only checks, the decision) on the same checks, with the
device's answers replayed at no cost: what a check costs the CPU when the overlay
decides, the device's latency (``fpga_check_us``) apart.
"""

from __future__ import annotations

import json
import time
from typing import TextIO

import numpy as np

#: The clock the figures assume, MHz (fpga_overlay/README.md: "Clock").
CLOCK_MHZ = 200.0


def _software_check_us(n: int) -> tuple[dict[str, float], dict[str, float]]:
    """(software hook, deciding path's host share): us per what-if check, p50 / p99 / mean."""
    import datetime as dt

    from actors.fpga_shadow import FpgaPath, FpgaSettings
    from actors.kill_switch import KillSwitches
    from actors.position_shard import PositionShard
    from actors.pretrade import PreTradeChecker
    from actors.pretrade_config import PretradeSettings
    from actors.pretrade_messages import CheckRequest
    from risk.instruments import InstrumentTable, MarketSnapshot, UnderlyingQuote
    from risk.model import RiskModel
    from fpga_overlay.model_backend import ModelBackend
    from risk.params import InstrumentSpec, MarginParams, MarginProfile, PortfolioGrid, TierThresholds, UnderlyingSpec

    expiry = dt.date(2026, 12, 18)
    specs = [InstrumentSpec(id="F", kind="future", underlying="U", multiplier=50.0, expiry=expiry)]
    specs += [InstrumentSpec(id=f"C{k}", kind="option", underlying="U", multiplier=100.0, expiry=expiry,
                             right="call", strike=float(k)) for k in range(90, 111, 5)]
    table = InstrumentTable([UnderlyingSpec(id="U", grid="pm", sector="x")], specs)
    market = MarketSnapshot(as_of=dt.datetime(2026, 11, 20, 21, tzinfo=dt.timezone.utc),
                            underlyings={"U": UnderlyingQuote(price=100.0, rate=0.04, dividend_yield=0.01, vol=0.2)})
    params = MarginParams(grids={"pm": PortfolioGrid(extended_moves=())}, profiles={"p": MarginProfile()},
                          tiers=TierThresholds())
    model = RiskModel(table, market, params)
    shard = PositionShard(0, 1, model)
    shard.add_account("A", params.profiles["p"], 1e6)
    shard.accounts["A"].apply_fill(1, -5.0, float(model.valuation.mark[1]))
    checker = PreTradeChecker(shard, PretradeSettings(), KillSwitches())
    requests = [CheckRequest(f"o{i}", "A", table.ids[i % len(table)], 1 if i % 2 else -1, 3.0,
                             float(model.valuation.mark[i % len(table)]), what_if=True) for i in range(n)]
    software = _time_checks(lambda r: checker.check(r), requests)
    # The deciding path: the model's answers first (what-ifs change nothing), then replayed.
    answers: list = []
    recording = FpgaPath(FpgaSettings(), checker.settings, _Recorder(ModelBackend(), answers))
    for r in requests:
        assert recording.check(checker, r).reason == checker.check(r).reason  # the same decisions
    assert recording.decided == n
    replay = FpgaPath(FpgaSettings(), checker.settings, _Replay(answers))
    host = _time_checks(lambda r: replay.check(checker, r), requests)
    return software, host


class _Recorder:
    """The model backend, its answers kept in order."""

    simulated = True

    def __init__(self, backend, answers: list) -> None:
        self.backend, self.answers = backend, answers

    def check(self, record):
        answer = self.backend.check(record)
        self.answers.append(answer)
        return answer


class _Replay:
    """The recorded answers again, in order, at no cost: the host's share alone."""

    simulated = True

    def __init__(self, answers: list) -> None:
        self._next = iter(answers).__next__

    def check(self, record):
        return self._next()


def _time_checks(check, requests) -> dict[str, float]:
    """CPU time of the calling thread per check, us (a shared machine's preemptions,
    milliseconds long, are not the check's cost)."""
    times = np.empty(len(requests))
    for i, req in enumerate(requests):
        t0 = time.thread_time_ns()
        check(req)
        times[i] = (time.thread_time_ns() - t0) / 1e3
    return {"p50": float(np.percentile(times, 50)), "p99": float(np.percentile(times, 99)),
            "mean": float(times.mean())}


def _software_greeks_ns(n: int, repeats: int) -> dict[str, float]:
    from fpga_overlay import greeks_core as gc
    from risk.pricing import greeks

    x = gc.dequantize_inputs(gc.domain_sample(n, seed=3))
    per = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        greeks(x["is_call"], x["s"], x["k"], x["r"], x["q"], x["t"], x["vol"])
        per.append((time.perf_counter_ns() - t0) / n)
    return {"p50": float(np.percentile(per, 50)), "min": float(min(per)), "batch": n}


def run_bench_fpga(out: TextIO, quick: bool = False) -> int:
    from fpga_overlay import greeks_core as gc
    from fpga_overlay import risk_filter as rf
    from fpga_overlay.backend import open_overlay

    backend = open_overlay(None, simulate=True)
    if backend is None:
        raise RuntimeError("bench fpga needs pynq and amaranth (pip install -e '.[fpga]')")
    n_greeks = 64 if quick else 256
    fields = gc.domain_sample(n_greeks, seed=1)
    got = backend.greeks(fields)
    assert all([int(v) for v in got[k]] == [int(v) for v in gc.model(fields)[k]] for k in gc.OUTPUTS)
    cycles = backend.greeks_ip.last_cycles
    latency = gc.greeks_graph().latency
    # records per cycle once full: the run's cycles minus the fill and the AXI overheads
    per_cycle = n_greeks / (cycles - latency)
    filter_cycles = []
    rng = np.random.default_rng(5)
    for _ in range(4 if quick else 16):
        record = {name: 0 for name in rf.FIELDS}
        record.update(q=int(rng.integers(1, 1 << 40)), price=1 << 38, ref=1 << 38, mult=1 << 16)
        filter_cycles.append(backend.check(record).cycles)
    acc = gc.domain_sample(5000 if quick else 50000, seed=2)
    errs = gc.errors(gc.reference(acc), gc.to_float(gc.model(acc)), gc.dequantize_inputs(acc)["s"])
    sw_option = _software_greeks_ns(20000, 5 if quick else 20)
    sw_check, host_check = _software_check_us(500 if quick else 5000)
    fpga_option_ns = 1e3 / CLOCK_MHZ / per_cycle
    filter_us = max(filter_cycles) / CLOCK_MHZ
    report = {
        "simulated": True,
        "clock_mhz": CLOCK_MHZ,
        "greeks_latency_cycles": latency,
        "greeks_batch": n_greeks,
        "greeks_batch_cycles": cycles,
        "greeks_results_per_cycle": round(per_cycle, 4),
        "greeks_latency_us": latency / CLOCK_MHZ,
        "filter_latency_cycles": rf.filter_graph().latency,
        "filter_start_to_done_cycles": {"min": min(filter_cycles), "max": max(filter_cycles)},
        "filter_scenarios_S": rf.S,
        "filter_lanes": rf.LANES,
        "filter_latency_bound_cycles": rf.latency_bound(),
        "max_rel_err_price": errs["price"],
        "max_rel_err_delta": errs["delta"],
        "max_rel_err_vega": errs["vega"],
        "max_rel_err_gamma": errs["gamma"],
        "max_abs_err_theta_per_s": errs["theta"],
        "accuracy_options": len(acc["s"]),
        "software_greeks_ns_per_option": sw_option,
        "software_check_us": sw_check,
        "fpga_path_host_check_us": host_check,
        "fpga_greeks_ns_per_option": fpga_option_ns,
        "fpga_check_us": filter_us,
        "ratio_software_over_fpga_per_option": sw_option["p50"] / fpga_option_ns,
        "ratio_software_over_fpga_per_check_p50": sw_check["p50"] / filter_us,
    }
    out.write(json.dumps(report) + "\n")
    return 0
