"""`riskd bench fpga --json` (quick): one JSON object whose figures agree with the designs
(graph latencies, the Greeks error bound) and whose software timings were measured."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("amaranth", reason="amaranth is in the [test] extra (FPGA overlay simulation)")
pytest.importorskip("pynq", reason="pynq is in the [test] extra (the overlay's driver layer)")

from daemon.cli import main  # noqa: E402
from fpga_overlay import greeks_core as gc  # noqa: E402
from fpga_overlay import risk_filter as rf  # noqa: E402


def test_bench_fpga_quick_prints_one_json_object(capsys) -> None:
    assert main(["bench", "fpga", "--json", "--quick"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 1
    r = json.loads(lines[0])
    assert r["greeks_latency_cycles"] == gc.greeks_graph().latency <= 100
    assert 0.9 <= r["greeks_results_per_cycle"] <= 1.0
    assert r["filter_latency_cycles"] == rf.filter_graph().latency <= r["filter_latency_bound_cycles"] == 17
    assert r["filter_start_to_done_cycles"]["max"] <= r["filter_latency_bound_cycles"]
    for name in ("price", "delta", "vega"):
        assert 0.0 < r[f"max_rel_err_{name}"] <= gc.ERROR_BOUND[name][1]
    assert r["software_greeks_ns_per_option"]["p50"] > 0 and r["software_check_us"]["p99"] > 0
    assert r["clock_mhz"] > 0 and r["simulated"] is True
