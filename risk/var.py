"""Parametric VaR (delta-normal, delta-gamma) and historical VaR / expected shortfall.

Covariance estimation and repair live in :mod:`risk.covariance`.

Conventions used throughout (the caller must match them):

- Risk factors are the underlyings' *relative* returns ``r_i = dS_i / S_i`` over
  one horizon (0.01 is a 1 % move). A covariance ``cov`` is the covariance of
  those returns over that same horizon: the VaR horizon *is* the covariance's
  horizon. A 1-day covariance of i.i.d. returns becomes an h-day one by
  multiplying by ``h`` (square-root-of-time on volatilities); returns over
  overlapping h-day windows (:func:`risk.history.returns`) give it directly.
- ``dollar_delta`` (vector ``d``, currency per 1.00 relative move of each factor):
  ``d_i = sum over positions on underlying i of q * delta * S_i * multiplier``.
  A 1 % move of factor ``i`` changes the P&L by about ``0.01 * d_i``. The classic
  weights form is the same thing: with portfolio value ``V`` and exposure weights
  ``w`` (fractions of ``V``), ``d = w * V``.
- ``dollar_gamma`` (matrix ``G``, currency per (1.00 relative move)^2):
  ``G_ii = sum of q * gamma * S_i^2 * multiplier``; a second-order P&L is
  ``d'r + 1/2 r'Gr``. Options on a single underlying make ``G`` diagonal (a 1-D
  vector is accepted as that diagonal); cross-gamma terms are accepted as a full
  matrix.
- ``confidence`` is a fraction (0.99, not 99).
- VaR and expected shortfall are returned as *positive losses* in currency and
  are floored at 0: a book whose quantile is a gain has no VaR.

Covariances that are not positive semi-definite (PSD) are never used as they are:
:func:`delta_normal_var` and :func:`delta_gamma_var` run :func:`repair_psd` on a
raw matrix and report it in their :class:`VarResult`. To repair once and price many
portfolios, pass the :class:`PsdRepair` itself as ``cov``: it is trusted as
repaired and its flags are copied into every result.

Array functions work on NumPy or CuPy inputs (see :mod:`risk.xp`); scalar results
are Python floats (one device-to-host sync per call on CuPy).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import msgspec
import numpy as np
from scipy.special import ndtri

from risk.covariance import PsdRepair, as_square_matrix, as_vector, repair_psd
from risk.xp import array_module

class VarResult(msgspec.Struct, frozen=True):
    """A parametric VaR and what was done to the covariance to get it.

    ``var``: positive loss in currency at the requested confidence, over the
    covariance's horizon, floored at 0. ``psd_repaired``, ``min_eigenvalue``
    (smallest correlation eigenvalue before repair) and ``n_clipped``: copied
    from the :class:`PsdRepair` of the covariance used.
    """

    var: float
    psd_repaired: bool
    min_eigenvalue: float
    n_clipped: int


class DeltaGammaVarResult(VarResult, frozen=True):
    """:class:`VarResult` plus the moments the Cornish-Fisher quantile used.

    ``mean`` and ``stdev`` are of the P&L (currency, gain positive); ``skewness``
    and ``excess_kurtosis`` are of the P&L (dimensionless; the loss's skewness is
    the opposite). ``cf_monotone`` is False when the Cornish-Fisher map stops being
    increasing between the median and the requested quantile: the expansion has
    then broken down and ``var`` should not be trusted (use full revaluation or
    historical simulation for that book). True is necessary, not sufficient: a
    very skewed book can pass it and still be off by 10 % or more.
    """

    mean: float
    stdev: float
    skewness: float
    excess_kurtosis: float
    cf_monotone: bool


# --------------------------------------------------------------------------- helpers


def _check_confidence(confidence: float) -> float:
    c = float(confidence)
    if not (0.0 < c < 1.0):
        raise ValueError(f"confidence must be a fraction in (0, 1), e.g. 0.99; got {confidence!r}")
    return c


def _resolve_cov(cov: Any) -> PsdRepair:
    if isinstance(cov, PsdRepair):
        return cov
    return repair_psd(cov)


def delta_normal_var(dollar_delta: Any, cov: Any, confidence: float) -> VarResult:
    """Delta-normal VaR: ``z * sqrt(d' C d)``, a positive loss in currency.

    ``dollar_delta``: vector ``d`` (n,), currency per 1.00 relative move of each
    factor (sum of q * delta * S * multiplier; or ``w * V`` in the weights form).
    ``cov``: (n, n) covariance of the factors' relative returns over the VaR
    horizon, or a :class:`PsdRepair` (used as is, no second repair).
    ``confidence``: fraction, e.g. 0.99; ``z`` is the standard normal quantile.

    A raw ``cov`` goes through :func:`repair_psd`; the result says whether it was
    repaired. The P&L is taken to be zero-mean (no drift over a short horizon), so
    the result is ``z * stdev``; it is floored at 0, which matters only for
    confidence < 0.5.
    """
    c = _check_confidence(confidence)
    repair = _resolve_cov(cov)
    xp = array_module(dollar_delta, repair.matrix)
    cm = xp.asarray(repair.matrix, dtype=xp.float64)
    d = as_vector(xp, dollar_delta, cm.shape[0], "dollar_delta")
    # VaR is homogeneous in d: work on d / max|d| so d'Cd neither over- nor
    # underflows for books of any size.
    size = float(xp.max(xp.abs(d)))
    if size == 0.0:
        stdev = 0.0
    else:
        unit = d / size
        # Rounding can make d'Cd of a singular PSD matrix a hair negative.
        stdev = size * math.sqrt(max(float(unit @ (cm @ unit)), 0.0))
    z = float(ndtri(c))
    return VarResult(
        var=max(z * stdev, 0.0),
        psd_repaired=repair.repaired,
        min_eigenvalue=repair.min_eigenvalue_before,
        n_clipped=repair.n_clipped,
    )


def _cornish_fisher_slope_positive(z: float, skew: float, exkurt: float) -> bool:
    # d/dz of the Cornish-Fisher map is the quadratic a z^2 + b z + c; check that it
    # stays > 0 on [0, z] (the median up to the quantile used).
    a = exkurt / 8.0 - skew * skew / 6.0
    b = skew / 3.0
    c = 1.0 - exkurt / 8.0 + 5.0 * skew * skew / 36.0
    lo, hi = (0.0, z) if z >= 0 else (z, 0.0)
    points = [lo, hi]
    if a != 0.0:
        vertex = -b / (2.0 * a)
        if lo < vertex < hi:
            points.append(vertex)
    return all(a * p * p + b * p + c > 0.0 for p in points)


#: Factor counts up to which delta-gamma VaR runs on Python floats: below ~10
#: factors NumPy's per-call overhead (~1 us a call, ~40 calls) dwarfs the
#: arithmetic, and a pre-trade what-if of a VaR account computes it four times.
SMALL_N = 8


@functools.lru_cache(maxsize=64)
def _normal_quantile(confidence: float) -> float:
    return float(ndtri(confidence))


def _small_inputs(xp: Any, dollar_delta: Any, dollar_gamma: Any, repair: PsdRepair
                  ) -> tuple[list[float], list[float], list[list[float]]] | None:
    """(d, diagonal of G, C) as Python floats when the small path applies (NumPy,
    n <= SMALL_N, G given as its diagonal), else None."""
    if xp is not np:
        return None
    matrix = repair.matrix
    n = matrix.shape[0]
    if n > SMALL_N or np.ndim(dollar_gamma) > 1 or np.ndim(dollar_delta) > 1:
        return None
    d = np.asarray(dollar_delta, dtype=np.float64).reshape(-1).tolist()
    g = np.asarray(dollar_gamma, dtype=np.float64).reshape(-1).tolist()
    if len(d) != n:
        raise ValueError(f"dollar_delta must have shape ({n},) to match the covariance; got ({len(d)},)")
    if len(g) != n:
        raise ValueError(f"dollar_gamma must have shape ({n},) to match the covariance; got ({len(g)},)")
    if not all(math.isfinite(x) for x in d):
        raise ValueError("dollar_delta has NaN or infinite entries")
    if not all(math.isfinite(x) for x in g):
        raise ValueError("dollar_gamma has NaN or infinite entries")
    return d, g, np.asarray(matrix, dtype=np.float64).tolist()


def _dg_cumulants_small(d: list[float], g: list[float], c: list[list[float]]
                        ) -> tuple[float, float, float, float, float]:
    """:func:`_dg_cumulants` for a diagonal G on Python floats (same scalings, same formulas)."""
    n = len(d)
    var_scale = max(c[i][i] for i in range(n))
    if var_scale > 0.0:
        root = math.sqrt(var_scale)
        c = [[x / var_scale for x in row] for row in c]
        d = [x * root for x in d]
        g = [x * var_scale for x in g]
    size = max(max(abs(x) for x in d), max(abs(x) for x in g))
    if size > 0.0:
        d = [x / size for x in d]
        g = [x / size for x in g]
    else:
        size = 1.0
    r = range(n)
    m = [[g[i] * c[i][j] for j in r] for i in r]  # M = G C with G diagonal
    m2 = [[math.fsum(m[i][k] * m[k][j] for k in r) for j in r] for i in r]
    tr_m = math.fsum(m[i][i] for i in r)
    tr_m2 = math.fsum(m2[i][i] for i in r)
    tr_m3 = math.fsum(m2[i][j] * m[j][i] for i in r for j in r)
    tr_m4 = math.fsum(m2[i][j] * m2[j][i] for i in r for j in r)
    u = [math.fsum(c[i][k] * d[k] for k in r) for i in r]  # C d
    v = [g[i] * u[i] for i in r]  # G C d
    cv = [math.fsum(c[i][k] * v[k] for k in r) for i in r]
    d_c_d = math.fsum(d[i] * u[i] for i in r)
    d_cgc_d = math.fsum(u[i] * v[i] for i in r)
    d_cgcgc_d = math.fsum(v[i] * cv[i] for i in r)
    k1 = 0.5 * tr_m
    k2 = max(d_c_d + 0.5 * tr_m2, 0.0)
    k3 = 3.0 * d_cgc_d + tr_m3
    k4 = 12.0 * d_cgcgc_d + 3.0 * tr_m4
    return k1, k2, k3, k4, size


def _dg_cumulants(xp: Any, dollar_delta: Any, dollar_gamma: Any, repair: PsdRepair
                  ) -> tuple[float, float, float, float, float]:
    """The first four cumulants of the scaled quadratic P&L, and the scale ``size``."""
    cm = xp.asarray(repair.matrix, dtype=xp.float64)
    n = cm.shape[0]
    d = as_vector(xp, dollar_delta, n, "dollar_delta")
    g = xp.asarray(dollar_gamma, dtype=xp.float64)
    if g.ndim <= 1:
        g = xp.diag(as_vector(xp, g, n, "dollar_gamma"))
    else:
        g = as_square_matrix(xp, g, "dollar_gamma")
        if g.shape[0] != n:
            raise ValueError(f"dollar_gamma must be ({n}, {n}) to match the covariance; got {g.shape}")
        g = 0.5 * (g + g.T)

    # P&L is jointly homogeneous in (d, G), and r -> r/s rescales (d, G, C) to
    # (s d, s^2 G, C/s^2): bring everything to order 1 so that the k2^1.5 and k2^2
    # below cannot underflow, then scale the currency amounts back.
    var_scale = float(xp.max(xp.diagonal(cm)))
    if var_scale > 0.0:
        cm = cm / var_scale
        d = d * math.sqrt(var_scale)
        g = g * var_scale
    size = max(float(xp.max(xp.abs(d))), float(xp.max(xp.abs(g))))
    if size > 0.0:
        d = d / size
        g = g / size
    else:
        size = 1.0

    m = g @ cm
    m2 = m @ m
    # tr(AB) = sum(A * B'): avoids forming M^3 and M^4.
    tr_m = float(xp.trace(m))
    tr_m2 = float(xp.trace(m2))
    tr_m3 = float(xp.sum(m2 * m.T))
    tr_m4 = float(xp.sum(m2 * m2.T))
    u = cm @ d  # C d
    v = g @ u  # G C d
    d_c_d = float(d @ u)
    d_cgc_d = float(u @ v)
    d_cgcgc_d = float(v @ (cm @ v))

    k1 = 0.5 * tr_m
    k2 = max(d_c_d + 0.5 * tr_m2, 0.0)
    k3 = 3.0 * d_cgc_d + tr_m3
    k4 = 12.0 * d_cgcgc_d + 3.0 * tr_m4

    return k1, k2, k3, k4, size


def delta_gamma_var(dollar_delta: Any, dollar_gamma: Any, cov: Any, confidence: float) -> DeltaGammaVarResult:
    """Delta-gamma VaR by the moments of the quadratic P&L and Cornish-Fisher.

    Model: P&L = d'r + 1/2 r'Gr with r ~ N(0, C) (relative returns over the
    horizon). ``dollar_delta`` d (n,) as in :func:`delta_normal_var`;
    ``dollar_gamma`` G, currency per (1.00 relative move)^2 (q * gamma * S^2 *
    multiplier), an (n, n) matrix (symmetrized; only its symmetric part matters) or
    an (n,) vector taken as its diagonal; ``cov`` C as in :func:`delta_normal_var`
    (raw matrix repaired, or a :class:`PsdRepair`); ``confidence`` a fraction.

    Method. The P&L cumulants are exact for a quadratic form in normals; with
    M = G C:

        k1 = tr(M) / 2
        k2 = d'Cd + tr(M^2) / 2
        k3 = 3 d'CGCd + tr(M^3)
        k4 = 12 d'CGCGCd + 3 tr(M^4)

    The loss quantile is then the Cornish-Fisher expansion to fourth order,
    ``-k1 + sqrt(k2) * w`` with, for z = N^-1(confidence), S the loss skewness
    (-k3/k2^1.5) and K the excess kurtosis (k4/k2^2):

        w = z + (z^2-1) S/6 + (z^3-3z) K/24 - (2z^3-5z) S^2/36

    With G = 0 all higher cumulants vanish and this is delta-normal VaR (equal to
    rounding, ~1e-15 relative).

    Limits. (1) The quadratic Taylor P&L is local: large moves, vega, theta and
    jumps are not in it; scenario revaluation is the reference. (2) Cornish-Fisher
    is an asymptotic expansion: good for mild skewness/kurtosis, poor for books
    dominated by gamma (e.g. delta-hedged short straddles, where the P&L is close
    to a scaled chi-square) and at deep quantiles; it can even stop being monotone,
    which ``cf_monotone`` reports. (3) Normal returns: no fat tails beyond what
    gamma creates. The mean k1 is included (a long-gamma book has a positive
    expected P&L), and VaR is floored at 0. Cost: two n x n matrix products, plus
    the eigendecomposition of :func:`repair_psd` when ``cov`` is a raw matrix.
    """
    c = _check_confidence(confidence)
    repair = _resolve_cov(cov)
    xp = array_module(dollar_delta, dollar_gamma, repair.matrix)
    small = _small_inputs(xp, dollar_delta, dollar_gamma, repair)
    if small is not None:
        k1, k2, k3, k4, size = _dg_cumulants_small(*small)
    else:
        k1, k2, k3, k4, size = _dg_cumulants(xp, dollar_delta, dollar_gamma, repair)
    z = _normal_quantile(c)
    stdev = math.sqrt(k2)
    if stdev == 0.0:
        # Degenerate P&L (no exposure to any factor with variance): a constant.
        return DeltaGammaVarResult(
            var=max(-k1 * size, 0.0),
            psd_repaired=repair.repaired,
            min_eigenvalue=repair.min_eigenvalue_before,
            n_clipped=repair.n_clipped,
            mean=k1 * size,
            stdev=0.0,
            skewness=0.0,
            excess_kurtosis=0.0,
            cf_monotone=True,
        )
    skew_pnl = k3 / stdev**3
    exkurt = k4 / (k2 * k2)
    skew_loss = -skew_pnl
    w = (
        z
        + (z * z - 1.0) * skew_loss / 6.0
        + (z**3 - 3.0 * z) * exkurt / 24.0
        - (2.0 * z**3 - 5.0 * z) * skew_loss * skew_loss / 36.0
    )
    var = (-k1 + stdev * w) * size
    return DeltaGammaVarResult(
        var=max(var, 0.0),
        psd_repaired=repair.repaired,
        min_eigenvalue=repair.min_eigenvalue_before,
        n_clipped=repair.n_clipped,
        mean=k1 * size,
        stdev=stdev * size,
        skewness=skew_pnl,
        excess_kurtosis=exkurt,
        cf_monotone=_cornish_fisher_slope_positive(z, skew_loss, exkurt),
    )

# --------------------------------------------------------------------------- historical simulation


def var_es_from_pnl(pnl_samples: Any, confidence: float) -> tuple[float, float]:
    """Historical-simulation VaR and expected shortfall from scenario P&Ls.

    ``pnl_samples``: (N,) scenario P&Ls in currency, *gain positive*.
    ``confidence``: fraction, e.g. 0.99. Returns ``(var, es)``, both positive
    losses in currency, each floored at 0 (0 when the tail holds no loss).

    Quantile convention: with losses L = -pnl sorted from worst, and
    ``k = ceil((1 - confidence) * N)`` (at least 1; (1-c)*N is rounded to 9
    decimals first so 0.99 with N = 100 gives k = 1, not 2 by float error), VaR is
    the k-th worst loss and ES is the mean of the k worst losses (the tail that
    VaR opens; count-based, so ties at the VaR level are counted once each up to
    k). Hence ES >= VaR always.
    """
    c = _check_confidence(confidence)
    if type(pnl_samples) is np.ndarray and pnl_samples.dtype == np.float64 and pnl_samples.ndim == 1:
        return _var_es_numpy(pnl_samples, c)  # the pre-trade hook's path: no dispatch
    xp = array_module(pnl_samples)
    pnl = xp.asarray(pnl_samples, dtype=xp.float64)
    if pnl.ndim != 1 or pnl.shape[0] == 0:
        raise ValueError(f"pnl_samples must be a non-empty vector; got shape {pnl.shape}")
    if not bool(xp.all(xp.isfinite(pnl))):
        raise ValueError("pnl_samples has NaN or infinite entries")
    n = pnl.shape[0]
    k = max(1, math.ceil(round((1.0 - c) * n, 9)))
    # partition, not sort: O(N); afterwards the last k entries are the k worst losses.
    losses = xp.partition(-pnl, n - k)
    tail = losses[n - k :]
    var = float(losses[n - k])
    es = float(xp.mean(tail))
    return max(var, 0.0), max(es, 0.0)


def _var_es_numpy(pnl: np.ndarray, c: float) -> tuple[float, float]:
    """:func:`var_es_from_pnl` for a float64 NumPy vector: the same operations (mean =
    the add-reduce sum / k, as np.mean does it) without the array-module dispatch."""
    n = pnl.shape[0]
    if n == 0:
        raise ValueError(f"pnl_samples must be a non-empty vector; got shape {pnl.shape}")
    if not np.isfinite(pnl).all():
        raise ValueError("pnl_samples has NaN or infinite entries")
    k = max(1, math.ceil(round((1.0 - c) * n, 9)))
    losses = np.partition(-pnl, n - k)
    var = float(losses[n - k])
    es = float(np.add.reduce(losses[n - k:]) / k)
    return max(var, 0.0), max(es, 0.0)
