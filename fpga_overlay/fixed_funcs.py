"""Elementary functions as lookup table + cubic polynomial, on dataflow nodes.

Each function unit normalizes or offsets its argument, splits it into a segment
index (the table address) and a 32-bit position inside the segment, and evaluates
a cubic fitted per segment (Chebyshev nodes, float64) by Horner's rule in fixed
point. Arguments are clamped to the unit's range first: out-of-range values
saturate to the value at the end of the range (the "saturation ends").

:class:`Fx` pairs a node with its number of fractional bits so the algorithm code
can say what it means (value = node / 2**frac).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from fpga_overlay import dataflow as df

#: Bits of the in-segment position fed to the polynomial.
POS_BITS = 32
#: Guard bits of the polynomial coefficients over the unit's output precision.
COEF_GUARD = 6


@dataclass(frozen=True)
class Fx:
    """A fixed-point value: ``node / 2**frac``."""

    node: df.Node
    frac: int

    def __add__(self, other: "Fx") -> "Fx":
        a, b = align(self, other)
        return Fx(df.add(a.node, b.node), a.frac)

    def __sub__(self, other: "Fx") -> "Fx":
        a, b = align(self, other)
        return Fx(df.sub(a.node, b.node), a.frac)

    def __neg__(self) -> "Fx":
        return Fx(-self.node, self.frac)

    def to(self, frac: int) -> "Fx":
        """The same value with ``frac`` fractional bits (rounded when fewer)."""
        if frac == self.frac:
            return self
        if frac < self.frac:
            return Fx(df.shr(self.node, self.frac - frac), frac)
        return Fx(df.mul(self.node, df.const(1 << (frac - self.frac)), 0), frac)


def align(a: Fx, b: Fx) -> tuple[Fx, Fx]:
    frac = max(a.frac, b.frac)
    return a.to(frac), b.to(frac)


def fx_const(value: float, frac: int) -> Fx:
    return Fx(df.const(round(value * (1 << frac))), frac)


def fmul(a: Fx, b: Fx, frac: int) -> Fx:
    """a x b rounded to ``frac`` fractional bits (exact when frac >= a.frac + b.frac)."""
    shift = a.frac + b.frac - frac
    if shift >= 0:
        return Fx(df.mul(a.node, b.node, shift), frac)
    return Fx(df.mul(df.mul(a.node, b.node, 0), df.const(1 << -shift), 0), frac)


def fclamp(a: Fx, lo: float, hi: float) -> Fx:
    return Fx(df.clamp(a.node, math.ceil(lo * (1 << a.frac)), math.floor(hi * (1 << a.frac))), a.frac)


def fmux(sel: df.Node, a: Fx, b: Fx) -> Fx:
    a, b = align(a, b)
    return Fx(df.mux(sel, a.node, b.node), a.frac)


# ----- tables ---------------------------------------------------------------------
def fit_table(f: Callable[[np.ndarray], np.ndarray], x0: float, h: float, n_seg: int,
              coef_frac: int) -> list[list[int]]:
    """Cubic coefficients [c0, c1, c2, c3] per segment, ints scaled by 2**coef_frac.

    Segment j covers [x0 + j h, x0 + (j+1) h); the cubic's variable is the position
    in the segment, 0 <= p < 1. Fitted by least squares on 16 Chebyshev nodes
    (close to minimax for a smooth f).
    """
    nodes = 0.5 - 0.5 * np.cos((2 * np.arange(16) + 1) * np.pi / 32)
    tables: list[list[int]] = [[], [], [], []]
    for j in range(n_seg):
        y = f(x0 + (j + nodes) * h)
        c3, c2, c1, c0 = np.polyfit(nodes, y, 3)
        for i, c in enumerate((c0, c1, c2, c3)):
            tables[i].append(int(round(float(c) * (1 << coef_frac))))
    return tables


def _position(u: df.Node, shift: int) -> df.Node:
    """The POS_BITS bits of ``u`` below bit ``shift`` (zero-filled when fewer exist)."""
    if shift >= POS_BITS:
        return df.bits(u, shift - POS_BITS, POS_BITS)
    return df.mul(df.bits(u, 0, shift), df.const(1 << (POS_BITS - shift)), 0)


def poly_unit(seg: df.Node, pos: df.Node, tables: list[list[int]], coef_frac: int, out_frac: int) -> Fx:
    """Horner's rule: ((c3 p + c2) p + c1) p + c0 with p = pos / 2**POS_BITS."""
    c = [df.rom(seg, t) for t in tables]
    acc = c[3]
    for k in (2, 1, 0):
        acc = df.add(df.mul(acc, pos, POS_BITS), c[k])
    return Fx(acc, coef_frac).to(out_frac)


def segmented(u: df.Node, u_frac: int, seg_per_unit_log2: int, n_seg: int, f, x0: float,
              out_frac: int) -> Fx:
    """f(x0 + u / 2**u_frac) for u >= 0 covering n_seg segments of width 2**-seg_per_unit_log2."""
    shift = u_frac - seg_per_unit_log2
    seg = df.bits(u, shift, n_seg.bit_length() - 1)
    pos = _position(u, shift)
    coef_frac = out_frac + COEF_GUARD
    tables = fit_table(f, x0, 2.0 ** -seg_per_unit_log2, n_seg, coef_frac)
    return poly_unit(seg, pos, tables, coef_frac, out_frac)


# ----- the units ------------------------------------------------------------------
LN2 = math.log(2.0)
LOG_SEG = 7    # 128 segments on [1, 2)
SQRT_SEG = 6   # 64 segments on [1, 2) and 64 on [2, 4)
RECIP_SEG = 7  # 128 segments on [1, 2)
CDF_SEG = 6    # 1/64 wide on [0, 8): 512 segments
CDF_MAX = 8.0
EXP_SEG = 6    # 1/64 wide on [-4, 4): 512 segments
EXP_MIN, EXP_MAX = -4.0, 4.0


def _normalize(x: Fx) -> tuple[df.Node, df.Node, int]:
    """(p, m, top): p = position of x's leading one, m = x shifted so it sits at bit ``top``."""
    if x.node.lo <= 0:
        raise ValueError("normalize: the argument must be clamped to > 0")
    top = x.node.width - 1
    p = df.clamp(df.msb(x.node), x.node.lo.bit_length() - 1, top)
    m = df.shl_var(x.node, df.clamp(df.sub(df.const(top), p), 0, top), below=1 << (top + 1))
    return p, df.clamp(m, 1 << top, (1 << (top + 1)) - 1), top


def ln(x: Fx, out_frac: int) -> Fx:
    """Natural log of x > 0 (the caller clamps x to its range)."""
    p, m, top = _normalize(x)
    mant = segmented(df.bits(m, 0, top), top, LOG_SEG, 1 << LOG_SEG, np.log, 1.0, out_frac)
    exponent = Fx(df.mul(df.sub(p, df.const(x.frac)), df.const(round(LN2 * (1 << out_frac))), 0), out_frac)
    return exponent + mant


def sqrt(x: Fx, out_frac: int) -> Fx:
    """Square root of x > 0: sqrt(mantissa or 2 x mantissa) from the table, times 2**(exponent // 2)."""
    p, m, top = _normalize(x)
    odd = df.bits(df.add(p, df.const(x.frac)), 0, 1)  # exponent p - frac is odd
    shift = top - SQRT_SEG
    seg = df.add(df.mul(odd, df.const(1 << SQRT_SEG), 0), df.bits(m, shift, SQRT_SEG))
    pos = _position(m, shift)
    coef_frac = out_frac + COEF_GUARD
    h = 2.0 ** -SQRT_SEG
    even_t = fit_table(np.sqrt, 1.0, h, 1 << SQRT_SEG, coef_frac)
    odd_t = fit_table(lambda v: np.sqrt(2.0 * v), 1.0, h, 1 << SQRT_SEG, coef_frac)
    g = poly_unit(seg, pos, [e + o for e, o in zip(even_t, odd_t)], coef_frac, out_frac)
    # x = mant 2**e with e = p - frac; sqrt(x) = g 2**floor(e/2) = (g << amount) 2**half_lo.
    half_lo = math.floor((p.lo - x.frac) / 2)
    amount = df.bits(df.add(p, df.const(-x.frac - 2 * half_lo)), 1, 6)  # floor(e/2) - half_lo >= 0
    return Fx(df.shl_var(g.node, amount), out_frac - half_lo)


def recip(x: Fx, out_frac: int) -> Fx:
    """1 / x for x > 0: 1/mantissa from the table, shifted by the exponent."""
    p, m, top = _normalize(x)
    g = segmented(df.bits(m, 0, top), top, RECIP_SEG, 1 << RECIP_SEG, lambda v: 1.0 / v, 1.0, out_frac)
    p_hi = x.node.hi.bit_length() - 1
    # 1/x = g 2**(frac - p) = (g << (p_hi - p)) 2**(frac - p_hi)
    return Fx(df.shl_var(g.node, df.clamp(df.sub(df.const(p_hi), p), 0, p_hi)), out_frac + p_hi - x.frac)


def _pdf(v: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * v * v) / math.sqrt(2.0 * math.pi)


def ndtr_pdf(d: Fx, out_frac: int) -> tuple[Fx, Fx]:
    """(N(d), phi(d)) for d clamped to (-8, 8): one table address, two coefficient sets."""
    from scipy.special import ndtr

    ulp = 2.0 ** -d.frac
    d = fclamp(d, -CDF_MAX + ulp, CDF_MAX - ulp)
    nonneg = df.ge(d.node, df.const(0))
    a = Fx(df.abs_(d.node), d.frac)
    shift = d.frac - CDF_SEG
    seg = df.bits(a.node, shift, CDF_SEG + 3)
    pos = _position(a.node, shift)
    coef_frac = out_frac + COEF_GUARD
    n_seg = int(CDF_MAX) << CDF_SEG
    cdf = poly_unit(seg, pos, fit_table(ndtr, 0.0, 2.0 ** -CDF_SEG, n_seg, coef_frac), coef_frac, out_frac)
    pdf = poly_unit(seg, pos, fit_table(_pdf, 0.0, 2.0 ** -CDF_SEG, n_seg, coef_frac), coef_frac, out_frac)
    one = fx_const(1.0, out_frac)
    return fmux(nonneg, cdf, one - cdf), pdf


def exp(x: Fx, out_frac: int) -> Fx:
    """e**x for x clamped to [-4, 4)."""
    x = fclamp(x, EXP_MIN, EXP_MAX - 2.0 ** -x.frac)
    u = x - fx_const(EXP_MIN, x.frac)
    n_seg = int(EXP_MAX - EXP_MIN) << EXP_SEG
    return segmented(df.clamp(u.node, 0, (n_seg << (x.frac - EXP_SEG)) - 1), x.frac, EXP_SEG, n_seg,
                     np.exp, EXP_MIN, out_frac)
