"""``riskd bench pricing``: Greeks, full revaluation and what-if throughput, vs QuantLib.

Prints one JSON object. Each throughput is the median of several timed
repetitions (the machine is shared and noisy); QuantLib's AnalyticEuropeanEngine
prices the same options in the same run, so ``speedup_vs_quantlib`` is measured
side by side. QuantLib is a test dependency: without it those keys are null.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import time
from typing import Any, Callable, TextIO

import numpy as np

from risk.account import Account
from risk.instruments import InstrumentTable, MarketSnapshot, UnderlyingQuote, pricing_inputs
from risk.model import RiskModel
from risk.params import InstrumentSpec, MarginParams, MarginProfile, PortfolioGrid, UnderlyingSpec
from risk.pricing import greeks
from risk.valuation import underlying_risk_arrays

AS_OF = dt.datetime(2026, 11, 20, 21, 0, tzinfo=dt.timezone.utc)


def _random_options(n: int, seed: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "is_call": rng.random(n) < 0.5,
        "s": np.full(n, 100.0),
        "k": 100.0 * np.exp(rng.uniform(-0.5, 0.5, n)),
        "r": rng.uniform(-0.01, 0.06, n),
        "q": rng.uniform(0.0, 0.04, n),
        "days": rng.integers(1, 730, n),
        "vol": rng.uniform(0.05, 0.8, n),
    }


def _textbook_greeks(s: np.ndarray, k: np.ndarray, r: np.ndarray, q: np.ndarray, t: np.ndarray,
                     vol: np.ndarray) -> tuple[np.ndarray, ...]:
    """The floor: a plain NumPy Black-Scholes call price + delta, gamma, vega, theta
    (no puts, no Black-76, no degenerate cases), the ARCHITECTURE.md reference."""
    from scipy.special import ndtr

    sqrt_t = np.sqrt(t)
    sd = vol * sqrt_t
    d1 = (np.log(s / k) + (r - q + 0.5 * vol * vol) * t) / sd
    d2 = d1 - sd
    dq, dr = np.exp(-q * t), np.exp(-r * t)
    nd1, nd2 = ndtr(d1), ndtr(d2)
    pdf = np.exp(-0.5 * d1 * d1) / np.sqrt(2 * np.pi)
    price = s * dq * nd1 - k * dr * nd2
    gamma = dq * pdf / (s * sd)
    vega = s * dq * pdf * sqrt_t
    theta = -s * dq * pdf * vol / (2 * sqrt_t) - r * k * dr * nd2 + q * s * dq * nd1
    return price, dq * nd1, gamma, vega, theta


def _textbook_reval(s: np.ndarray, k: np.ndarray, r: np.ndarray, q: np.ndarray, t: np.ndarray,
                    vol: np.ndarray, moves: np.ndarray) -> np.ndarray:
    """The floor for revaluation: plain broadcast Black-Scholes call prices at
    s x (1 + move), vol x 1.1, minus today's value, (n, S) in one pass."""
    from scipy.special import ndtr

    s2 = s[:, None] * (1.0 + moves[None, :])
    v2 = (vol * 1.1)[:, None] * np.ones_like(moves)[None, :]
    sd = v2 * np.sqrt(t)[:, None]
    d1 = (np.log(s2 / k[:, None]) + ((r - q)[:, None] + 0.5 * v2 * v2) * t[:, None]) / sd
    value = s2 * np.exp(-q * t)[:, None] * ndtr(d1) - (k * np.exp(-r * t))[:, None] * ndtr(d1 - sd)
    base = _textbook_greeks(s, k, r, q, t, vol)[0]
    return value - base[:, None]


def _median_rate(items: int, fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm caches and lazy imports
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return items / statistics.median(times)


def _book(n: int, grid: PortfolioGrid, seed: int = 11) -> tuple[InstrumentTable, MarketSnapshot, MarginParams]:
    rng = np.random.default_rng(seed)
    specs = [InstrumentSpec(id=f"OPT{i}", kind="option", underlying="IDX", multiplier=100.0,
                            expiry=(AS_OF + dt.timedelta(days=int(rng.integers(1, 730)))).date(),
                            right="call" if rng.random() < 0.5 else "put",
                            strike=float(round(100.0 * np.exp(rng.uniform(-0.4, 0.4)), 2)))
             for i in range(n)]
    table = InstrumentTable([UnderlyingSpec(id="IDX", grid="g")], specs)
    market = MarketSnapshot(as_of=AS_OF, underlyings={"IDX": UnderlyingQuote(price=100.0, rate=0.03,
                                                                              dividend_yield=0.01, vol=0.25)})
    params = MarginParams(grids={"g": grid}, profiles={"p": MarginProfile()})
    return table, market, params


def _grid_with(scenarios: int) -> PortfolioGrid:
    """A portfolio grid with exactly ``scenarios`` scenarios (3 vol states x price moves + extended)."""
    buckets = (scenarios // 3 - 1) // 2
    extra = scenarios - (2 * buckets + 1) * 3
    return PortfolioGrid(buckets_per_side=buckets, extended_moves=tuple(0.5 + 0.1 * i for i in range(extra)))


def _quantlib_pass(opts: dict[str, np.ndarray], n: int) -> Callable[[], float] | None:
    """A function timing one QuantLib pass (NPV + 5 Greeks) over ``n`` options; seconds."""
    try:
        import QuantLib as ql
    except ImportError:
        return None
    today = ql.Date(20, 11, 2026)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    built = []
    for i in range(n):
        spot = ql.SimpleQuote(float(opts["s"][i]))
        div = ql.YieldTermStructureHandle(ql.FlatForward(today, float(opts["q"][i]), dc))
        rate = ql.YieldTermStructureHandle(ql.FlatForward(today, float(opts["r"][i]), dc))
        vol = ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), float(opts["vol"][i]), dc))
        process = ql.BlackScholesMertonProcess(ql.QuoteHandle(spot), div, rate, vol)
        payoff = ql.PlainVanillaPayoff(ql.Option.Call if opts["is_call"][i] else ql.Option.Put, float(opts["k"][i]))
        option = ql.VanillaOption(payoff, ql.EuropeanExercise(today + int(opts["days"][i])))
        option.setPricingEngine(ql.AnalyticEuropeanEngine(process))
        built.append((spot, option))
    bump = [0]

    def one_pass() -> float:
        # QuantLib caches results: moving each spot (outside the timed loop) forces a recalculation.
        bump[0] += 1
        for spot, _ in built:
            spot.setValue(100.0 + 1e-6 * bump[0])
        t0 = time.perf_counter()
        for _, option in built:
            option.NPV(), option.delta(), option.gamma(), option.vega(), option.theta(), option.rho()
        return time.perf_counter() - t0

    return one_pass


def _whatif_latency(scenarios: int, samples: int) -> dict[str, float]:
    table, market, params = _book(200, _grid_with(scenarios))
    model = RiskModel(table, market, params)
    assert model.n_scenarios == scenarios
    account = Account("BENCH", params.profiles["p"], model, cash=1e7)
    rng = np.random.default_rng(3)
    for row in rng.choice(len(table), 50, replace=False):
        account.apply_fill(int(row), float(rng.integers(-20, 21) or 1), 1.0)
    rows = rng.integers(0, len(table), samples)
    qty = rng.integers(1, 10, samples) * np.where(rng.random(samples) < 0.5, -1, 1)
    clock = time.perf_counter_ns
    out = np.empty(samples)
    what_if = account.what_if
    for i in range(samples):
        r, q = int(rows[i]), float(qty[i])
        t0 = clock()
        what_if(r, q)
        out[i] = clock() - t0
    out = out[samples // 10:] / 1000.0  # drop warm-up
    return {"whatif_p50_us": float(np.percentile(out, 50)), "whatif_p99_us": float(np.percentile(out, 99)),
            "whatif_samples": int(out.size)}


def run_bench_pricing(as_json: bool, out: TextIO, quick: bool = False) -> int:
    """Run the pricing bench and print one JSON object. ``quick``: fewer repeats (smoke)."""
    repeats = 3 if quick else 31
    n = 10_000
    opts = _random_options(n)
    t = opts["days"] / 365.0
    result: dict[str, Any] = {"n_options": n}
    # Ours and the textbook floor alternate, so both see the same machine.
    ours_rates, floor_rates = [], []
    for _ in range(repeats):
        ours_rates.append(_median_rate(
            n, lambda: greeks(opts["is_call"], opts["s"], opts["k"], opts["r"], opts["q"], t, opts["vol"]), 1))
        floor_rates.append(_median_rate(
            n, lambda: _textbook_greeks(opts["s"], opts["k"], opts["r"], opts["q"], t, opts["vol"]), 1))
    result["greeks_per_s_1e4"] = statistics.median(ours_rates)
    result["floor_greeks_per_s_1e4"] = statistics.median(floor_rates)
    result["ratio_greeks_to_floor"] = result["greeks_per_s_1e4"] / result["floor_greeks_per_s_1e4"]
    for scenarios in (27, 256):
        table, market, params = _book(n, _grid_with(scenarios))
        inputs = pricing_inputs(table, market)
        grid = params.grids["g"]
        ours, floor = [], []
        moves = np.linspace(-0.16, 0.16, scenarios)
        for _ in range(max(3, repeats // 2)):
            ours.append(_median_rate(n * scenarios, lambda: underlying_risk_arrays(table, inputs, 0, grid), 1))
            floor.append(_median_rate(n * scenarios, lambda: _textbook_reval(
                inputs.s, table.strike, inputs.r, inputs.q, inputs.t, inputs.vol, moves), 1))
        result[f"reval_per_s_s{scenarios}"] = statistics.median(ours)
        result[f"floor_reval_per_s_s{scenarios}"] = statistics.median(floor)
        result[f"ratio_reval_to_floor_s{scenarios}"] = statistics.median(ours) / statistics.median(floor)
    result.update(_whatif_latency(256, 20_000 if quick else 200_000))
    # Side by side: each round times riskd and QuantLib back to back, so both see the
    # same machine noise; the speedup is the median of the per-round ratios.
    ql_n = 1000 if quick else 3000
    ql_pass = _quantlib_pass(opts, ql_n)
    result["quantlib_per_s"] = result["speedup_vs_quantlib"] = None
    if ql_pass is not None:
        ql_rates, ratios = [], []
        for _ in range(3 if quick else 9):
            t0 = time.perf_counter()
            greeks(opts["is_call"], opts["s"], opts["k"], opts["r"], opts["q"], t, opts["vol"])
            ours = n / (time.perf_counter() - t0)
            ql_rates.append(ql_n / ql_pass())
            ratios.append(ours / ql_rates[-1])
        result["quantlib_per_s"] = statistics.median(ql_rates)
        result["speedup_vs_quantlib"] = statistics.median(ratios)
    result["targets"] = {"greeks_per_s_1e4": 1e7, "reval_per_s_s27": 2e7, "whatif_p50_us": 5.0,
                         "whatif_p99_us": 15.0, "speedup_vs_quantlib": 50.0}
    out.write(json.dumps(result, indent=None if as_json else 2) + "\n")
    return 0
