"""The Greeks core: Black-Scholes-Merton price, delta, gamma, vega and theta in fixed point.

One option per record; the algorithm is :func:`greeks_graph`, a dataflow graph that
both the hardware (:class:`fpga_overlay.hdl_dataflow.DataflowPipeline`) and the
bit-exact model (:func:`model`) execute.

Record formats (two's complement integers, value = integer / 2**frac):

============  =======  =====  ==============================================
field         bits     frac   range the hardware accepts (saturates outside)
============  =======  =====  ==============================================
s, k          52 u     32     [2**-8, 2**20): per unit of underlying
t             36 u     32     [2**-10, 16): years
vol           34 u     32     [2**-8, 4): fraction per year
r, q          35 s     32     [-0.25, 0.25]: fractions per year
is_call       1                1 call, 0 put
price         64 s     32     currency per unit of underlying
delta         64 s     40     per 1.00 of underlying
gamma         64 s     40     per 1.00 of underlying, squared
vega          64 s     32     per 1.00 of vol (not per vol point)
theta         64 s     32     per year (risk/pricing.py's convention)
============  =======  =====  ==============================================

Units and conventions are risk/pricing.py's (BSM with continuous yield ``q``).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from fpga_overlay import dataflow as df
from fpga_overlay import fixed_funcs as ff
from fpga_overlay.fixed_funcs import Fx

IN_FRAC = 32
#: Internal fractional bits.
FI = 40
OUT_FRAC = {"price": 32, "delta": 40, "gamma": 40, "vega": 32, "theta": 32}
OUTPUTS = tuple(OUT_FRAC)
INPUTS = ("s", "k", "t", "vol", "r", "q", "is_call")

S_RANGE = (2.0 ** -8, 2.0 ** 20)
T_RANGE = (2.0 ** -10, 16.0)
VOL_RANGE = (2.0 ** -8, 4.0)
RATE_RANGE = (-0.25, 0.25)
_INPUT_BITS = {"s": (52, False), "k": (52, False), "t": (36, False), "vol": (34, False),
               "r": (35, True), "q": (35, True), "is_call": (1, False)}
_I64 = (-(1 << 63), (1 << 63) - 1)


def _in(name: str) -> df.Node:
    bits, signed = _INPUT_BITS[name]
    if signed:
        return df.input_(name, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    return df.input_(name, 0, (1 << bits) - 1)


def _range(x: Fx, rng: tuple[float, float]) -> Fx:
    """Clamp to [lo, hi) (hi exclusive for the open ends of the table ranges)."""
    return ff.fclamp(x, rng[0], rng[1] - 2.0 ** -x.frac)


@functools.lru_cache(maxsize=1)
def greeks_graph() -> df.Graph:
    """The Greeks core as a dataflow graph (built once: the tables take ~0.5 s to fit)."""
    raw = {name: _in(name) for name in INPUTS}
    s = _range(Fx(raw["s"], IN_FRAC), S_RANGE)
    k = _range(Fx(raw["k"], IN_FRAC), S_RANGE)
    t = _range(Fx(raw["t"], IN_FRAC), T_RANGE)
    vol = _range(Fx(raw["vol"], IN_FRAC), VOL_RANGE)
    r = ff.fclamp(Fx(raw["r"], IN_FRAC), *RATE_RANGE)
    q = ff.fclamp(Fx(raw["q"], IN_FRAC), *RATE_RANGE)
    call = raw["is_call"]

    sqrt_t = ff.sqrt(t, FI)
    sd = ff.fmul(vol, sqrt_t, FI)                      # vol sqrt(t)
    inv_sd = ff.recip(sd, FI)
    num = ff.ln(s, FI) - ff.ln(k, FI) + ff.fmul(r - q, t, FI)
    d1 = ff.fmul(num, inv_sd, FI) + Fx(sd.node, FI + 1)  # + sd / 2
    d2 = d1 - sd
    cdf1, pdf1 = ff.ndtr_pdf(d1, FI)
    cdf2, _ = ff.ndtr_pdf(d2, FI)
    disc_q = ff.exp(ff.fmul(-q, t, FI), FI)
    disc_r = ff.exp(ff.fmul(-r, t, FI), FI)
    one = ff.fx_const(1.0, FI)
    n1 = ff.fmux(call, cdf1, one - cdf1)               # N(sign d1)
    n2 = ff.fmux(call, cdf2, one - cdf2)               # N(sign d2)
    fwd = ff.fmul(s, disc_q, FI)                       # s e^{-qt}
    strike = ff.fmul(k, disc_r, FI)                    # k e^{-rt}
    leg_a = ff.fmul(fwd, n1, FI)
    leg_b = ff.fmul(strike, n2, FI)
    price = ff.fmux(call, leg_a - leg_b, leg_b - leg_a)
    delta_abs = ff.fmul(disc_q, n1, FI)
    delta = ff.fmux(call, delta_abs, -delta_abs)
    fwd_pdf = ff.fmul(fwd, pdf1, FI)                   # s e^{-qt} phi(d1)
    vega = ff.fmul(fwd_pdf, sqrt_t, FI)
    gamma = ff.fmul(ff.fmul(ff.fmul(disc_q, pdf1, FI), inv_sd, FI), ff.recip(s, FI), FI)
    decay = ff.fmul(ff.fmul(fwd_pdf, ff.fmul(vol, vol, FI), FI), inv_sd, FI)
    carry = ff.fmul(q, leg_a, FI) - ff.fmul(r, leg_b, FI)
    theta = ff.fmux(call, carry, -carry) - Fx(decay.node, FI + 1)  # - decay / 2
    outs = {"price": price, "delta": delta, "gamma": gamma, "vega": vega, "theta": theta}
    nodes = {name: df.clamp(outs[name].to(OUT_FRAC[name]).node, *_I64) for name in OUTPUTS}
    return df.Graph([raw[n] for n in INPUTS], nodes)


# ----- host-side conversion ----------------------------------------------------------
def quantize(is_call, s, k, t, vol, r, q) -> dict[str, np.ndarray]:
    """Float inputs -> the core's integer fields (round to nearest; no range check)."""
    scale = float(1 << IN_FRAC)
    out = {name: np.rint(np.asarray(v, dtype=float) * scale).astype(np.int64)
           for name, v in (("s", s), ("k", k), ("t", t), ("vol", vol), ("r", r), ("q", q))}
    out["is_call"] = np.asarray(is_call, dtype=bool).astype(np.int64)
    n = max(np.size(v) for v in out.values())
    return {name: np.broadcast_to(v, (n,)).copy() for name, v in out.items()}


def dequantize_inputs(fields: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The float values the integer inputs stand for (what the float64 reference sees)."""
    out = {n: np.asarray(fields[n], dtype=np.int64) / float(1 << IN_FRAC) for n in INPUTS if n != "is_call"}
    out["is_call"] = np.asarray(fields["is_call"]).astype(bool)
    return out


def to_float(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Integer outputs (model or hardware) -> floats in risk/pricing.py's units."""
    return {n: np.asarray([int(v) for v in outputs[n]], dtype=float) / math.ldexp(1.0, OUT_FRAC[n])
            for n in OUTPUTS}


def model(fields: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The bit-exact model: integer outputs for integer input fields."""
    return df.evaluate(greeks_graph(), fields)


# ----- the accuracy domain and the documented error bound -----------------------------
class GreeksDomain:
    """The configured domain of the accuracy bound (the hardware accepts the wider
    ranges in the module docstring and saturates beyond them).

    ``s``: per unit; ``moneyness``: k / s; ``t``: years; ``vol``, ``r``, ``q``:
    fractions per year; ``max_z``: the largest |standardized log-moneyness|
    |ln(s/k) + (r - q) t| / (vol sqrt t): past ~3 standard deviations an option's
    value is a vanishing fraction of s and no fixed-point format keeps a relative
    error there.
    """

    s = (1.0, 20000.0)
    moneyness = (0.5, 2.0)
    t = (1.0 / 52.0, 5.0)
    vol = (0.05, 1.5)
    r = (-0.02, 0.15)
    q = (0.0, 0.10)
    max_z = 3.0

    @classmethod
    def contains(cls, s, k, t, vol, r, q) -> np.ndarray:
        s, k, t, vol, r, q = (np.asarray(v, dtype=float) for v in (s, k, t, vol, r, q))
        z = (np.log(s / k) + (r - q) * t) / (vol * np.sqrt(t))
        inside = np.ones(np.shape(s), dtype=bool)
        for v, (lo, hi) in ((s, cls.s), (k / s, cls.moneyness), (t, cls.t), (vol, cls.vol), (r, cls.r), (q, cls.q)):
            inside &= (v >= lo) & (v <= hi)
        return inside & (np.abs(z) <= cls.max_z)


#: Error of every output against risk/pricing.py's float64 Greeks on the same
#: (quantized) inputs, inside :class:`GreeksDomain`: ("rel", bound) is
#: |hw - ref| / |ref|; ("abs_s", bound) is |hw - ref| / s (theta crosses zero
#: inside the domain, where no relative bound exists). Measured maxima over
#: 50,000 random options with the domain's corners are 1/5 to 1/20 of these (table
#: in fpga_overlay/README.md); the price bound is set by the output's 2**-32 quantum
#: at s ~ 1.
ERROR_BOUND = {"price": ("rel", 1e-4), "delta": ("rel", 1e-7), "gamma": ("rel", 5e-6),
               "vega": ("rel", 1e-6), "theta": ("abs_s", 1e-8)}


def errors(ref: dict[str, np.ndarray], got: dict[str, np.ndarray], s: np.ndarray) -> dict[str, float]:
    """Max error of each output in the metric of :data:`ERROR_BOUND`."""
    out = {}
    for name, (kind, _) in ERROR_BOUND.items():
        diff = np.abs(np.asarray(got[name]) - np.asarray(ref[name]))
        scale = np.abs(ref[name]) if kind == "rel" else np.asarray(s)
        out[name] = float(np.max(diff / scale)) if diff.size else 0.0
    return out


def domain_sample(n: int, seed: int) -> dict[str, np.ndarray]:
    """``n`` random float options inside :class:`GreeksDomain` (log-uniform s, t, vol;
    a quarter at the t corners and an eighth at the vol corners), as integer fields."""
    rng = np.random.default_rng(seed)
    d = GreeksDomain
    m = 2 * n + 64
    lu = lambda lo, hi: np.exp(rng.uniform(math.log(lo), math.log(hi), m))  # noqa: E731
    s, t, vol = lu(*d.s), lu(*d.t), lu(*d.vol)
    r, q = rng.uniform(*d.r, m), rng.uniform(*d.q, m)
    t[: m // 4] = np.where(rng.random(m // 4) < 0.5, d.t[0], d.t[1])
    vol[: m // 8] = np.where(rng.random(m // 8) < 0.5, d.vol[0], d.vol[1])
    z = rng.uniform(-d.max_z, d.max_z, m) * 0.999
    k = s * np.exp(-(z * vol * np.sqrt(t) - (r - q) * t))
    fields = quantize(rng.integers(0, 2, m), s, k, t, vol, r, q)
    x = dequantize_inputs(fields)
    keep = np.flatnonzero(GreeksDomain.contains(x["s"], x["k"], x["t"], x["vol"], x["r"], x["q"]))[:n]
    return {name: v[keep] for name, v in fields.items()}


def reference(fields: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """risk/pricing.py's float64 Greeks on the values the integer fields stand for."""
    from risk.pricing import greeks

    x = dequantize_inputs(fields)
    g = greeks(x["is_call"], x["s"], x["k"], x["r"], x["q"], x["t"], x["vol"])
    return {name: np.asarray(getattr(g, name), dtype=float) for name in OUTPUTS}
