"""risk.pricing and risk.implied_vol against QuantLib, plus the model identities.

Reference: QuantLib's AnalyticEuropeanEngine on a BlackScholesMertonProcess with flat
continuously compounded curves and a constant vol, all Actual365Fixed. Maturities are
whole days, so both sides use t = days / 365 exactly. QuantLib's units match ours:
vega per 1.00 vol, theta per year, rho per 1.00 rate. The riskd side is one
vectorized call for all cases; QuantLib is looped.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import QuantLib as ql

from risk.implied_vol import implied_vol
from risk.pricing import MIN_STDDEV, greeks, price

RTOL = 1e-9
#: Below this fraction of its natural scale (the spot, for a price) a value counts as
#: near 0 and is held to an absolute RTOL * NEAR_ZERO * scale: the last bits of both
#: sides are then rounding of terms of the scale's size (QuantLib's normal CDF,
#: 0.5 (1 + erf), is only absolutely accurate in the tails).
NEAR_ZERO = 1e-5
EPS = np.finfo(float).eps
TODAY = ql.Date(15, ql.March, 2024)


def _cases(seed: int, n: int) -> dict[str, np.ndarray]:
    """Random options (log-uniform where the range spans decades), corners pinned."""
    rng = np.random.default_rng(seed)
    c = {
        "s": np.exp(rng.uniform(np.log(1.0), np.log(1000.0), n)),
        "m": np.exp(rng.uniform(np.log(0.3), np.log(3.0), n)),  # K / S
        "days": np.rint(np.exp(rng.uniform(0.0, np.log(5 * 365), n))).astype(int),
        "vol": np.exp(rng.uniform(np.log(0.01), np.log(3.0), n)),
        "r": rng.uniform(-0.02, 0.10, n),
        "q": rng.uniform(-0.02, 0.10, n),
        "call": rng.random(n) < 0.5,
    }
    # Every combination of the extremes, so they are tested on every run, not by luck.
    corners = list(itertools.product([0.3, 3.0], [1, 5 * 365], [0.01, 3.0], [-0.02, 0.10], [True, False]))
    for i, (m, days, vol, r, call) in enumerate(corners):
        c["m"][i], c["days"][i], c["vol"][i], c["r"][i], c["q"][i], c["call"][i] = m, days, vol, r, 0.08 - r, call
    c["k"] = c["s"] * c["m"]
    c["t"] = c["days"] / 365.0
    return c


@pytest.fixture(scope="module")
def quantlib() -> "_QuantLib":
    saved = ql.Settings.instance().evaluationDate
    ql.Settings.instance().evaluationDate = TODAY
    yield _QuantLib()
    ql.Settings.instance().evaluationDate = saved


class _QuantLib:
    """One BSM process on mutable quotes; Black-76 reuses the rate curve as dividends."""

    def __init__(self) -> None:
        dc = ql.Actual365Fixed()
        self.spot, self.rate, self.div, self.vol = (ql.SimpleQuote(x) for x in (100.0, 0.0, 0.0, 0.2))
        rate = ql.YieldTermStructureHandle(ql.FlatForward(TODAY, ql.QuoteHandle(self.rate), dc))
        div = ql.YieldTermStructureHandle(ql.FlatForward(TODAY, ql.QuoteHandle(self.div), dc))
        vol = ql.BlackVolTermStructureHandle(
            ql.BlackConstantVol(TODAY, ql.NullCalendar(), ql.QuoteHandle(self.vol), dc))
        self.bsm = ql.BlackScholesMertonProcess(ql.QuoteHandle(self.spot), div, rate, vol)
        # Black-76 as BSM with q = r: the forward equals the "spot" (the futures price).
        self.b76 = ql.BlackScholesMertonProcess(ql.QuoteHandle(self.spot), rate, rate, vol)
        self.engines = {False: ql.AnalyticEuropeanEngine(self.bsm), True: ql.AnalyticEuropeanEngine(self.b76)}

    def option(self, call: bool, s: float, k: float, r: float, q: float, days: int, vol: float, b76: bool):
        for quote, value in ((self.spot, s), (self.rate, r), (self.div, q), (self.vol, vol)):
            quote.setValue(float(value))
        payoff = ql.PlainVanillaPayoff(ql.Option.Call if call else ql.Option.Put, float(k))
        opt = ql.VanillaOption(payoff, ql.EuropeanExercise(TODAY + int(days)))
        opt.setPricingEngine(self.engines[b76])
        return opt

    def greeks(self, c: dict[str, np.ndarray], b76: bool) -> dict[str, np.ndarray]:
        names = ("price", "delta", "gamma", "vega", "theta", "rho", "dividend_rho")
        out: dict[str, list[float]] = {name: [] for name in names}
        for i in range(len(c["s"])):
            opt = self.option(c["call"][i], c["s"][i], c["k"][i], c["r"][i], c["q"][i], c["days"][i], c["vol"][i], b76)
            for name, value in zip(names, (opt.NPV(), opt.delta(), opt.gamma(), opt.vega(), opt.theta(),
                                           opt.rho(), opt.dividendRho())):
                out[name].append(value)
        return {name: np.array(v) for name, v in out.items()}


def _check(name: str, ours: np.ndarray, ref: np.ndarray, scale: np.ndarray | float) -> float:
    """Relative error <= RTOL, or absolute RTOL * NEAR_ZERO * scale for values near 0.

    Returns the largest relative error among the values held to the relative test.
    """
    floor = NEAR_ZERO * scale
    err = np.abs(ours - ref)
    bad = ~(err <= RTOL * np.maximum(np.abs(ref), floor))
    if bad.any():
        i = np.argmax(np.where(bad, err / np.maximum(np.abs(ref), floor), -1.0))
        pytest.fail(f"{name}: {bad.sum()} cases off; worst #{i}: ours {ours[i]!r} QuantLib {ref[i]!r}")
    big = np.abs(ref) >= floor
    return float(np.max(err[big] / np.abs(ref[big]), initial=0.0))


def _natural_scales(s: np.ndarray) -> dict[str, np.ndarray | float]:
    # The size of each Greek in its own units, against which "near 0" is judged:
    # values per unit of underlying scale with the spot, delta is a pure number,
    # gamma scales as 1 / spot.
    return {"price": s, "delta": 1.0, "gamma": 1.0 / s, "vega": s, "theta": s, "rho": s}


def test_bsm_values_and_greeks_match_quantlib(quantlib: _QuantLib) -> None:
    c = _cases(20240315, 1200)
    ours = greeks(c["call"], c["s"], c["k"], c["r"], c["q"], c["t"], c["vol"])
    ref = quantlib.greeks(c, b76=False)
    # The largest gap is theta's, ~5e-10 where theta is near its zero crossing: QuantLib
    # derives theta from value, delta and gamma through the pricing PDE, which cancels
    # there (a 50-digit evaluation agrees with ours to 3e-13 on those cases).
    worst = {name: _check(f"BSM {name}", getattr(ours, name), ref[name], scale)
             for name, scale in _natural_scales(c["s"]).items()}
    print("max relative error vs QuantLib, BSM:", worst)


def test_black76_values_and_greeks_match_quantlib(quantlib: _QuantLib) -> None:
    c = _cases(7601, 600)
    # q must be ignored for Black-76 rows: pass a nonsense one.
    ours = greeks(c["call"], c["s"], c["k"], c["r"], c["q"] + 0.5, c["t"], c["vol"], black76=True)
    ref = quantlib.greeks(c, b76=True)
    scales = _natural_scales(c["s"])
    worst = {name: _check(f"Black-76 {name}", getattr(ours, name), ref[name], scales[name])
             for name in ("price", "delta", "gamma", "vega", "theta")}
    # QuantLib's rho() moves only the risk-free curve and holds the dividend curve
    # fixed; here that curve *is* the rate (q = r keeps the futures price fixed), so
    # Black-76 rho is the derivative with both moving together: rho + dividendRho in
    # QuantLib's terms, which is -t * price. Check both readings against our rho.
    worst["rho"] = _check("Black-76 rho vs -t*NPV", ours.rho, -c["t"] * ref["price"], scales["rho"])
    worst["rho (QL rho + dividendRho)"] = _check(
        "Black-76 rho vs QuantLib rho+dividendRho", ours.rho, ref["rho"] + ref["dividend_rho"], scales["rho"])
    print("max relative error vs QuantLib, Black-76:", worst)


@pytest.mark.parametrize("black76", [False, True])
def test_put_call_parity(black76: bool) -> None:
    c = _cases(11, 5000)
    s, k, r, q, t = c["s"], c["k"], c["r"], c["q"], c["t"]
    call = greeks(True, s, k, r, q, t, c["vol"], black76)
    put = greeks(False, s, k, r, q, t, c["vol"], black76)
    q_eff = r if black76 else q
    sq, kr = s * np.exp(-q_eff * t), k * np.exp(-r * t)
    scale = s + k
    assert np.all(np.abs((call.price - put.price) - (sq - kr)) <= 1e-13 * scale)
    assert np.all(np.abs((call.delta - put.delta) - np.exp(-q_eff * t)) <= 1e-13)
    assert np.all(np.abs(call.gamma - put.gamma) <= 1e-13 * np.maximum(call.gamma, 1.0 / s))
    assert np.all(np.abs(call.vega - put.vega) <= 1e-13 * np.maximum(call.vega, s))
    assert np.all(np.abs((call.theta - put.theta) - (q_eff * sq - r * kr)) <= 1e-12 * scale)
    rho_diff = -t * (sq - kr) if black76 else k * t * np.exp(-r * t)
    assert np.all(np.abs((call.rho - put.rho) - rho_diff) <= 1e-12 * scale)


@pytest.mark.parametrize("black76", [False, True])
def test_expired_and_zero_vol_are_discounted_intrinsic(black76: bool) -> None:
    s = np.array([80.0, 100.0, 120.0] * 2)
    call = np.repeat([True, False], 3)
    r, q = 0.05, 0.03
    at_expiry = greeks(call, s, 100.0, r, q, 0.0, 0.25, black76)
    np.testing.assert_array_equal(at_expiry.price, np.where(call, np.maximum(s - 100, 0), np.maximum(100 - s, 0)))
    np.testing.assert_array_equal(at_expiry.gamma, 0.0)
    np.testing.assert_array_equal(at_expiry.vega, 0.0)
    np.testing.assert_array_equal(at_expiry.delta[[0, 2, 3, 5]], [0.0, 1.0, -1.0, 0.0])

    t = 0.5
    sq = s * np.exp(-(r if black76 else q) * t)
    kr = 100.0 * np.exp(-r * t)
    intrinsic = np.where(call, np.maximum(sq - kr, 0), np.maximum(kr - sq, 0))
    for vol in (0.0, MIN_STDDEV / 10, 1e-9):  # the closed-form branch and just above it
        g = greeks(call, s, 100.0, r, q, t, vol, black76)
        # At the forward's money the time value is sq * stddev / sqrt(2 pi), not 0.
        assert np.all(np.abs(g.price - intrinsic) <= 1e-14 * intrinsic + 1e-12 + 0.4 * sq * vol * np.sqrt(t))
        np.testing.assert_allclose(g.gamma[(sq - kr) ** 2 > 1e-6], 0.0, atol=1e-12)


# ---------------------------------------------------------------- implied volatility


def _price_rounding(c: dict[str, np.ndarray], black76) -> tuple[np.ndarray, np.ndarray]:
    """Legs' present values: the scale of the rounding in a price and its parity twin."""
    q = np.where(black76, c["r"], c["q"])
    return c["s"] * np.exp(-q * c["t"]), c["k"] * np.exp(-c["r"] * c["t"])


def _check_round_trip(c: dict[str, np.ndarray], black76) -> None:
    g = greeks(c["call"], c["s"], c["k"], c["r"], c["q"], c["t"], c["vol"], black76)
    iv = implied_vol(g.price, c["call"], c["s"], c["k"], c["r"], c["q"], c["t"], black76)
    sq, kr = _price_rounding(c, black76)
    leg = np.maximum(sq, kr)
    otm = np.where(c["call"], sq < kr, kr < sq)
    assert not np.isnan(iv).any()

    # Where the price pins the vol down, recover it. A vol error dv moves the price by
    # vega * dv, which must stand out of the price's rounding: relative to the price
    # itself out of the money, at the scale of the legs in the money (the time value
    # sits on a rounded intrinsic value).
    rounding = np.where(otm, g.price, leg)
    pinned = (g.vega * c["vol"] >= 1e-6 * rounding) & (g.price > 1e-250 * c["s"])
    rel = np.abs(iv / c["vol"] - 1)
    assert pinned.mean() > 0.5  # the check above must not be vacuous
    assert np.all(rel[pinned] <= RTOL), f"worst {rel[pinned].max()} at {c['vol'][pinned][np.argmax(rel[pinned])]}"

    # Everywhere, including tiny vega: whatever vol comes back reproduces the price.
    again = price(c["call"], c["s"], c["k"], c["r"], c["q"], c["t"], iv, black76)
    # 8 eps * leg: implied_vol takes an ITM price that close to intrinsic as intrinsic.
    assert np.all(np.abs(again - g.price) <= RTOL * g.price + 8 * EPS * leg)


@pytest.mark.parametrize("black76", [False, True])
def test_implied_vol_round_trip_random(black76: bool) -> None:
    _check_round_trip(_cases(5 + black76, 20000), black76)


def test_implied_vol_round_trip_extremes() -> None:
    grid = np.array(list(itertools.product(
        [0.3, 0.7, 0.97, 1.0, 1.03, 1.5, 3.0],  # K / S
        [1, 7, 365, 5 * 365],  # days
        [0.005, 0.05, 0.5, 3.0, 6.0],  # vol: 0.5 % to 600 %
        [-0.02, 0.10],  # rate
        [False, True],  # call
        [False, True],  # black76
    )), dtype=float)
    m, days, vol, r, call, b76 = grid.T
    c = {"s": np.full(len(m), 50.0), "k": 50.0 * m, "days": days, "t": days / 365.0, "vol": vol,
         "r": r, "q": 0.03 - r, "call": call.astype(bool)}
    _check_round_trip(c, b76.astype(bool))


def test_implied_vol_agrees_with_quantlib(quantlib: _QuantLib) -> None:
    # QuantLib's own solver (Brent, vol capped at 4) on cases where vega is solid: an
    # independent inversion of an independent price.
    c = _cases(99, 600)
    vega = greeks(c["call"], c["s"], c["k"], c["r"], c["q"], c["t"], c["vol"]).vega
    ok = (c["vol"] > 0.05) & (c["vol"] < 3.5) & (vega * c["vol"] > 1e-3 * c["s"])
    c = {name: v[ok] for name, v in c.items()}
    ref_vol = []
    for i in range(len(c["s"])):
        opt = quantlib.option(c["call"][i], c["s"][i], c["k"][i], c["r"][i], c["q"][i], c["days"][i], 0.3, False)
        target = price(c["call"][i], c["s"][i], c["k"][i], c["r"][i], c["q"][i], c["t"][i], c["vol"][i])
        ref_vol.append(opt.impliedVolatility(float(target), quantlib.bsm, 1e-14, 500, 1e-7, 4.0))
    iv = implied_vol(price(c["call"], c["s"], c["k"], c["r"], c["q"], c["t"], c["vol"]),
                     c["call"], c["s"], c["k"], c["r"], c["q"], c["t"])
    assert len(iv) > 80
    np.testing.assert_allclose(iv, ref_vol, rtol=1e-8)


def test_implied_vol_edge_values() -> None:
    s, k, r, q, t = 100.0, 90.0, 0.05, 0.01, 0.5
    sq, kr = s * np.exp(-q * t), k * np.exp(-r * t)
    call_intrinsic, call_upper, put_upper = sq - kr, sq, kr
    cases = [
        # (price, is_call, s, k, t, expected)
        (call_intrinsic, True, s, k, t, 0.0),  # at intrinsic
        (0.0, False, s, k, t, 0.0),  # OTM at intrinsic (worth nothing)
        (call_intrinsic * (1 - 1e-6), True, s, k, t, np.nan),  # below intrinsic
        (-1e-3, False, s, k, t, np.nan),  # negative
        (call_upper, True, s, k, t, np.inf),  # at the upper bound
        (call_upper * (1 + 1e-12), True, s, k, t, np.nan),  # above it
        (put_upper * (1 + 1e-12), False, s, k, t, np.nan),
        (np.nan, True, s, k, t, np.nan),
        (np.inf, True, s, k, t, np.nan),
        (5.0, True, -s, k, t, np.nan),  # negative spot
        (5.0, True, s, 0.0, t, np.nan),  # zero strike
        (5.0, True, s, k, -t, np.nan),  # negative time
        (10.0, True, s, k, 0.0, 0.0),  # expired, at intrinsic s - k
        (12.0, True, s, k, 0.0, np.nan),  # expired, above intrinsic: no vol does it
        (s, True, s, k, 0.0, np.nan),  # expired at the bound: still not intrinsic
    ]
    target, is_call, ss, kk, tt, expected = (np.array(x) for x in zip(*cases))
    got = implied_vol(target, is_call, ss, kk, r, q, tt)
    np.testing.assert_array_equal(got, expected)
    # Black-76 bounds use the futures price discounted at r: q must not matter.
    f_upper = 100.0 * np.exp(-r * t)
    assert implied_vol(f_upper, True, 100.0, 90.0, r, 0.7, t, True) == np.inf
    assert np.isnan(implied_vol(f_upper * (1 + 1e-12), True, 100.0, 90.0, r, 0.7, t, True))
    # Scalars in, a 0-d array out, like risk.pricing.
    assert float(implied_vol(price(True, s, k, r, q, t, 0.2), True, s, k, r, q, t)) == pytest.approx(0.2, rel=1e-12)


def test_implied_vol_at_the_money_with_tiny_vol_is_exact() -> None:
    # At the forward's money b = erf(sig / (2 sqrt 2)) exactly, so this price is right
    # to the last bit; a solver that worked on the distance to the upper bound (1 - b,
    # which loses log10(1/b) digits) would miss by ~eps / b, here ~1e-12.
    from scipy.special import erf

    f, r, days = 80.0, 0.04, np.array([1, 7, 30, 365])
    t = days / 365.0
    vol = np.array([0.005, 0.01, 0.002, 0.001])
    target = f * np.exp(-r * t) * erf(vol * np.sqrt(t) / (2 * np.sqrt(2)))
    iv = implied_vol(target, np.array([True, False, True, False]), f, f, r, 0.0, t, True)
    np.testing.assert_allclose(iv, vol, rtol=1e-14)
