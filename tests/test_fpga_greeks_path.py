"""The pricing actor's Greeks through the overlay (issue 8): actors.fpga_greeks.

On the simulated device (the Greeks IP's AXI4 master reading and writing pynq.allocate
buffers in the Amaranth simulation), a revaluation's Black-Scholes-on-spot options get
the core's Greeks: bit for bit the model's, within the documented bound of
risk/pricing.py's float64 Greeks; Black-76 options (on futures) and options outside
the domain keep their float64 Greeks, counted; shadow mode changes nothing and
exports the errors; a failing device keeps the float64 Greeks; the pricing engine's
fast path uses the overlay's Greeks; the market actor names its Greeks path.
"""

from __future__ import annotations

import time

import msgspec
import numpy as np
import pytest

pytest.importorskip("amaranth", reason="amaranth is in the [test] extra (FPGA overlay simulation)")

from actors.fpga_greeks import FpgaGreeks  # noqa: E402
from actors.fpga_shadow import FpgaSettings  # noqa: E402
from actors.market_data import MarketState  # noqa: E402
from actors.pricing_engine import PricingEngine  # noqa: E402
from fpga_overlay import greeks_core as gc  # noqa: E402
from fpga_overlay.model_backend import ModelBackend  # noqa: E402
from risk.model import RiskModel  # noqa: E402
from risk.pricing import greeks as float64_greeks  # noqa: E402
from tests.test_fpga_decide import FailingBackend  # noqa: E402

SPOT_OPTIONS = ("C6800", "C7000", "C7200", "P6400")  # SPX options: Black-Scholes on spot
ON_FUTURES = ("NQC", "NQP")                          # Black-76: software
DECIDE = FpgaSettings(simulate=True)
SHADOW = FpgaSettings(simulate=True, shadow=True)


def _rows(model: RiskModel, ids) -> np.ndarray:
    return np.array([model.table.index[i] for i in ids])


def _quantized(model: RiskModel, rows: np.ndarray) -> dict[str, np.ndarray]:
    t, x = model.table, model.inputs
    return gc.quantize(t.is_call[rows], x.s[rows], t.strike[rows], x.t[rows], x.vol[rows], x.r[rows], x.q[rows])


def _check_replaced(model: RiskModel, before, greeks: FpgaGreeks) -> None:
    """The spot options' Greeks are the core's (bit-exact model), within the bound of
    float64 on the same inputs; everything else is as before."""
    rows = _rows(model, SPOT_OPTIONS)
    fields = _quantized(model, rows)
    want = gc.to_float(gc.model(fields))
    v = model.valuation
    for name in ("delta", "gamma", "vega", "theta"):
        assert np.array_equal(getattr(v, name)[rows], want[name]), name  # identical bits
    # against risk/pricing.py: on the quantized inputs, and on the model's own inputs
    x = gc.dequantize_inputs(fields)
    ref = float64_greeks(x["is_call"], x["s"], x["k"], x["r"], x["q"], x["t"], x["vol"])
    got = {"price": want["price"], "delta": v.delta[rows], "gamma": v.gamma[rows], "vega": v.vega[rows],
           "theta": v.theta[rows]}
    for reference in ({n: getattr(ref, n) for n in gc.OUTPUTS},
                      {"price": before.mark[rows], "delta": before.delta[rows], "gamma": before.gamma[rows],
                       "vega": before.vega[rows], "theta": before.theta[rows]}):
        errors = gc.errors(reference, got, x["s"])
        for name, (_, bound) in gc.ERROR_BOUND.items():
            assert errors[name] <= bound, (name, errors)
    assert not np.array_equal(v.delta[rows], before.delta[rows])  # the values did change (fixed point)
    others = np.setdiff1d(np.arange(len(model.table)), rows)
    for name in ("mark", "delta", "gamma", "vega", "theta", "dollar_delta", "dollar_gamma", "vega_contract"):
        assert np.array_equal(getattr(v, name)[others], getattr(before, name)[others]), name
    assert np.array_equal(v.mark, before.mark)  # marks stay float64 (equity, risk arrays)
    s, mult = model.inputs.s, model.table.multiplier
    assert np.allclose(v.dollar_delta, v.delta * s * mult, rtol=1e-15, atol=0)
    assert np.allclose(v.dollar_gamma, v.gamma * s**2 * mult, rtol=1e-15, atol=0)
    assert np.allclose(v.vega_contract, v.vega * mult, rtol=1e-15, atol=0)
    state = greeks.state()
    assert state["options"] == len(rows) and state["software_options"] == len(ON_FUTURES)
    for key, (name, (_, bound)) in zip(("max_rel_err_price", "max_rel_err_delta", "max_rel_err_gamma",
                                        "max_rel_err_vega", "max_abs_err_theta_per_s"), gc.ERROR_BOUND.items()):
        assert 0.0 < state[key] <= bound, (key, state)


def test_greeks_through_the_simulated_device_replace_the_float64_ones(book_parts) -> None:
    from fpga_overlay.backend import open_overlay

    backend = open_overlay(None, simulate=True)
    assert type(backend.greeks_ip).__name__ == "GreeksDriver"
    model = RiskModel(*book_parts)
    before = model.valuation
    greeks = FpgaGreeks(DECIDE, backend)
    assert greeks.path == "fpga"
    greeks.apply(model)
    assert greeks.state()["runs"] == 1 and backend.greeks_ip.last_cycles > gc.greeks_graph().latency
    _check_replaced(model, before, greeks)


def test_shadow_keeps_float64_and_exports_the_error(book_parts) -> None:
    model = RiskModel(*book_parts)
    before = model.valuation
    greeks = FpgaGreeks(msgspec.structs.replace(SHADOW, shadow_every=2), ModelBackend())
    assert greeks.path == "fpga-shadow"
    greeks.apply(model)
    assert model.valuation is before  # the software's Greeks decide
    state = greeks.state()
    assert state["runs"] == 1 and state["options"] == len(SPOT_OPTIONS)
    assert 0.0 < state["max_rel_err_delta"] <= gc.ERROR_BOUND["delta"][1]
    greeks.apply(model)  # shadow_every = 2: the second revaluation is not compared
    assert greeks.state()["runs"] == 1


def test_options_outside_the_domain_stay_float64(book_parts) -> None:
    table, market, params = book_parts
    vols = dict(market.option_vols, C7200=2.5)  # > the domain's 1.5
    model = RiskModel(table, msgspec.structs.replace(market, option_vols=vols), params)
    before = model.valuation
    backend = ModelBackend()
    greeks = FpgaGreeks(DECIDE, backend)
    greeks.apply(model)
    c7200 = table.index["C7200"]
    assert model.valuation.delta[c7200] == before.delta[c7200]
    assert greeks.state()["software_options"] == len(ON_FUTURES) + 1 and backend.options == len(SPOT_OPTIONS) - 1


def test_a_failing_device_keeps_the_float64_greeks(book_parts, caplog) -> None:
    model = RiskModel(*book_parts)
    before = model.valuation
    greeks = FpgaGreeks(DECIDE, FailingBackend(TimeoutError("GreeksDriver: ap_done not seen")))
    with caplog.at_level("ERROR", logger="riskd.fpga"):
        greeks.apply(model)
    assert model.valuation is before
    assert greeks.state()["errors"] == 1 and "TimeoutError" in greeks.state()["last_error"]
    assert any("float64 Greeks kept" in r.getMessage() for r in caplog.records)


def test_the_pricing_engines_fast_path_uses_the_overlays_greeks(book_parts) -> None:
    table, market, params = book_parts
    clock = [0.0]
    engine = PricingEngine(table, params, MarketState(table, market.underlyings), full_interval_s=10.0,
                           clock=lambda: clock[0], greeks=FpgaGreeks(DECIDE, ModelBackend()))
    model = engine.reprice(market.as_of)
    rows = _rows(model, SPOT_OPTIONS)
    want = gc.to_float(gc.model(_quantized(model, rows)))
    assert np.array_equal(engine.model.valuation.delta[rows], want["delta"])
    base = model.market  # the engine's own snapshot (its market state has no option vols)
    moved = msgspec.structs.replace(base, underlyings={
        u: msgspec.structs.replace(q, price=q.price * 1.01) for u, q in base.underlyings.items()})
    from risk.instruments import pricing_inputs

    ds = pricing_inputs(table, moved).s - model.inputs.s
    v = engine.model.valuation
    expected = v.mark + v.delta * ds + 0.5 * v.gamma * ds * ds  # vols unchanged
    assert np.allclose(engine.fast_marks(moved), expected, rtol=1e-14, atol=1e-9)


def test_the_market_actor_names_its_greeks_path(book_parts, tmp_path) -> None:
    from actors.bus import ipc_endpoint
    from actors.ray_market import MarketActorImpl
    from tests.test_market_actor import _spec

    actor = MarketActorImpl(_spec(book_parts, tmp_path, ticks_endpoint=ipc_endpoint("ticks", tmp_path),
                                  fpga=FpgaSettings(enabled="on", simulate=True)))
    try:
        deadline = time.monotonic() + 120.0
        while actor.health()["fpga"]["runs"] < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        state = actor.health()["fpga"]
        assert state["path"] == "fpga" and state["runs"] >= 1 and state["errors"] == 0, state
        assert state["options"] >= len(SPOT_OPTIONS) and state["max_rel_err_price"] <= gc.ERROR_BOUND["price"][1]
    finally:
        actor.stop()
    off = FpgaGreeks.open(FpgaSettings(enabled="off"))
    assert off.path == "software" and off.state()["mode"] == "software (fpga off)"
