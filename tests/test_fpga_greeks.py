"""The FPGA Greeks core (issue 8): Amaranth simulation vs the bit-exact model (identical
bits), and the model vs risk/pricing.py's float64 Greeks within the documented bound.

Every lookup-table segment of every function unit is swept (three points per
segment) and both saturation ends are driven, in the simulated hardware and the
model; the float64 functions of NumPy/SciPy are the independent reference.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("amaranth", reason="amaranth is in the [test] extra (FPGA overlay simulation)")

from scipy.special import ndtr  # noqa: E402

from fpga_overlay import dataflow as df  # noqa: E402
from fpga_overlay import fixed_funcs as ff  # noqa: E402
from fpga_overlay import greeks_core as gc  # noqa: E402
from fpga_overlay.fixed_funcs import Fx  # noqa: E402
from fpga_overlay.hdl_dataflow import DataflowPipeline  # noqa: E402
from fpga_overlay.sim_stream import run_stream  # noqa: E402


def _saturation_cases() -> dict[str, np.ndarray]:
    """Inputs past every end of the hardware's ranges, and d1/d2 and the exponentials
    driven past their table ends (|d| > 8: t = 1 day, vol 1 %, k = 2 s; |qt| > 4)."""
    base = dict(is_call=1, s=100.0, k=100.0, t=1.0, vol=0.2, r=0.03, q=0.01)
    variants = [
        dict(s=1e-4), dict(s=5e6), dict(k=1e-4), dict(k=5e6), dict(t=1e-5), dict(t=40.0),
        dict(vol=1e-4), dict(vol=7.0), dict(r=0.6), dict(r=-0.6), dict(q=0.6), dict(q=-0.6),
        dict(t=1 / 365, vol=0.01, k=200.0), dict(t=1 / 365, vol=0.01, k=50.0),
        dict(t=15.9, r=0.25, q=-0.25), dict(t=15.9, r=-0.25, q=0.25), dict(t=15.9, q=0.25),
    ]
    rows = [{**base, **v, "is_call": c} for v in variants for c in (0, 1)]
    cols = {key: [row[key] for row in rows] for key in base}
    fields = gc.quantize(cols["is_call"], cols["s"], cols["k"], cols["t"], cols["vol"], cols["r"], cols["q"])
    limits = {"s": 2**52 - 1, "k": 2**52 - 1, "t": 2**36 - 1, "vol": 2**34 - 1}
    for name, hi in limits.items():  # the raw field widths: the driver rejects larger values
        fields[name] = np.minimum(fields[name], hi)
    for name in ("r", "q"):
        fields[name] = np.clip(fields[name], -(2**34), 2**34 - 1)
    return fields


def test_core_matches_model_bit_for_bit_one_option_per_clock() -> None:
    graph = gc.greeks_graph()
    assert graph.latency <= 100
    domain = gc.domain_sample(200, seed=11)
    sat = _saturation_cases()
    fields = {k: np.concatenate([domain[k], sat[k]]) for k in gc.INPUTS}
    n = len(fields["s"])
    result = run_stream(DataflowPipeline(graph), fields)
    want = gc.model(fields)
    for name in gc.OUTPUTS:
        assert result.outputs[name] == [int(v) for v in want[name]], name
    # full throughput: n records take n cycles plus the pipeline's fill
    assert result.latency == graph.latency
    assert result.cycles <= n + graph.latency + 1


def test_core_stalls_lose_nothing() -> None:
    graph = gc.greeks_graph()
    fields = gc.domain_sample(120, seed=12)
    result = run_stream(DataflowPipeline(graph), fields, stall_seed=3)
    want = gc.model(fields)
    for name in gc.OUTPUTS:
        assert result.outputs[name] == [int(v) for v in want[name]], name


def test_model_within_documented_bound_inside_domain() -> None:
    fields = gc.domain_sample(30000, seed=13)
    assert len(fields["s"]) == 30000
    got = gc.to_float(gc.model(fields))
    errs = gc.errors(gc.reference(fields), got, gc.dequantize_inputs(fields)["s"])
    for name, (_, bound) in gc.ERROR_BOUND.items():
        assert errs[name] <= bound, (name, errs[name], bound)
    # the target on price, delta and vega
    assert max(errs["price"], errs["delta"], errs["vega"]) <= 1e-4


def test_saturation_is_the_value_at_the_range_end() -> None:
    sat = _saturation_cases()
    clamped = dict(sat)
    lo_hi = {"s": gc.S_RANGE, "k": gc.S_RANGE, "t": gc.T_RANGE, "vol": gc.VOL_RANGE, "r": gc.RATE_RANGE,
             "q": gc.RATE_RANGE}
    for name, (lo, hi) in lo_hi.items():
        ulp = 0 if name in ("r", "q") else 1
        clamped[name] = np.clip(sat[name], math.ceil(lo * 2**32), math.floor(hi * 2**32) - ulp)
    a, b = gc.model(sat), gc.model(clamped)
    for name in gc.OUTPUTS:
        assert list(a[name]) == list(b[name])
    # a deep in-the-money 1-day call at 1 % vol: d1 saturates at +8, price = forward - strike
    f = gc.quantize([1], [100.0], [50.0], [1 / 365], [0.01], [0.0], [0.0])
    out = gc.to_float(gc.model(f))
    assert out["price"][0] == pytest.approx(50.0, rel=1e-9)  # forward - strike
    assert out["delta"][0] == pytest.approx(1.0, abs=1e-9)
    assert abs(out["gamma"][0]) < 1e-9


# ----- every table segment of every function unit ------------------------------------------
def _unit(kind: str):
    """(graph, input frac, output frac, float function, (abs or rel, bound)): the bound is the
    cubic's approximation error over one segment plus the 2**-32 position and 2**-40 output quanta."""
    if kind == "ln":
        x = df.input_("x", 1, 2**52 - 1)
        return df.Graph([x], {"y": ff.ln(Fx(x, 32), 40).node}), 32, 40, np.log, ("abs", 1e-11)
    if kind == "sqrt":
        x = df.input_("x", 2**22, 2**36 - 1)
        y = ff.sqrt(Fx(x, 32), 40)
        return df.Graph([x], {"y": y.node}), 32, y.frac, np.sqrt, ("rel", 3e-11)
    if kind == "recip":
        x = df.input_("x", 2**27, 2**44 - 1)
        y = ff.recip(Fx(x, 40), 40)
        return df.Graph([x], {"y": y.node}), 40, y.frac, lambda v: 1.0 / v, ("rel", 4e-11)
    if kind == "ndtr":
        x = df.input_("x", -(2**45), 2**45)
        n, p = ff.ndtr_pdf(Fx(x, 40), 40)
        return df.Graph([x], {"y": n.node, "pdf": p.node}), 40, 40, ndtr, ("abs", 2e-11)
    x = df.input_("x", -(2**44), 2**44)
    return df.Graph([x], {"y": ff.exp(Fx(x, 40), 40).node}), 40, 40, np.exp, ("rel", 6e-11)


def _segment_points(kind: str) -> np.ndarray:
    """Three raw inputs in every table segment (start, middle, last value) plus inputs
    past both ends of the unit's range."""
    pts: list[int] = []
    if kind in ("ln", "recip"):  # segments of the mantissa in [1, 2), at two exponents
        seg, frac = (ff.LOG_SEG, 32) if kind == "ln" else (ff.RECIP_SEG, 40)
        for e in (0, -3):
            for j in range(1 << seg):
                lo = (1.0 + j / (1 << seg)) * 2.0**e
                hi = (1.0 + (j + 1) / (1 << seg)) * 2.0**e
                pts += [round(lo * 2**frac), round((lo + hi) / 2 * 2**frac), round(hi * 2**frac) - 1]
    elif kind == "sqrt":  # mantissa segments at an even and an odd exponent
        for e in (0, 1, -5):
            for j in range(1 << ff.SQRT_SEG):
                lo = (1.0 + j / (1 << ff.SQRT_SEG)) * 2.0**e
                hi = (1.0 + (j + 1) / (1 << ff.SQRT_SEG)) * 2.0**e
                pts += [round(lo * 2**32), round((lo + hi) / 2 * 2**32), round(hi * 2**32) - 1]
    elif kind == "ndtr":
        h = 2.0**-ff.CDF_SEG
        for j in range(int(ff.CDF_MAX) << ff.CDF_SEG):
            for v in (j * h, (j + 0.5) * h, (j + 1) * h - 2.0**-40):
                pts += [round(v * 2**40), -round(v * 2**40)]
        pts += [round(9.5 * 2**40), -round(9.5 * 2**40), 2**45, -(2**45)]
    else:
        h = 2.0**-ff.EXP_SEG
        for j in range(int(ff.EXP_MAX - ff.EXP_MIN) << ff.EXP_SEG):
            lo = ff.EXP_MIN + j * h
            pts += [round(lo * 2**40), round((lo + h / 2) * 2**40), round((lo + h) * 2**40) - 1]
        pts += [round(-6.0 * 2**40), round(7.0 * 2**40), -(2**44), 2**44]
    return np.asarray(pts, dtype=np.int64)


@pytest.mark.parametrize("kind", ["ln", "sqrt", "recip", "ndtr", "exp"])
def test_every_table_segment_and_both_saturation_ends(kind: str) -> None:
    graph, in_frac, out_frac, f, (metric, bound) = _unit(kind)
    raw = _segment_points(kind)
    raw = np.clip(raw, graph.inputs[0].lo, graph.inputs[0].hi)
    want = df.evaluate(graph, {"x": raw})
    got = run_stream(DataflowPipeline(graph), {"x": raw}).outputs
    for name in graph.outputs:
        assert got[name] == [int(v) for v in want[name]], name
    x = raw.astype(float) / 2.0**in_frac
    lo_end, hi_end = {"ndtr": (-ff.CDF_MAX, ff.CDF_MAX), "exp": (ff.EXP_MIN, ff.EXP_MAX)}.get(kind, (-np.inf, np.inf))
    inside = (x > lo_end) & (x < hi_end)
    y = np.asarray([int(v) for v in want["y"]], dtype=float) / 2.0**out_frac
    ref = f(x[inside])
    err = np.abs(y[inside] - ref) / (np.abs(ref) if metric == "rel" else 1.0)
    assert err.max() <= bound, (kind, err.max())
    if kind == "ndtr":
        pdf = np.asarray([int(v) for v in want["pdf"]], dtype=float) / 2.0**40
        assert np.abs(pdf[inside] - np.exp(-0.5 * x[inside] ** 2) / math.sqrt(2 * math.pi)).max() <= 1.5 * bound
    if not np.all(inside):  # saturation: past either end, the value at that end
        end_lo = df.evaluate(graph, {"x": np.asarray([round(lo_end * 2**in_frac) + 1])})["y"][0]
        end_hi = df.evaluate(graph, {"x": np.asarray([round(hi_end * 2**in_frac) - 1])})["y"][0]
        below, above = x <= lo_end, x >= hi_end
        assert below.any() and above.any()
        assert all(v == end_lo for v in want["y"][below]) and all(v == end_hi for v in want["y"][above])
