"""Parametric and historical VaR, EWMA covariance, PSD repair and stress helpers.

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

import math
from typing import Any, Sequence

import msgspec
from scipy.special import ndtri

from risk.xp import array_module

#: RiskMetrics' decay for daily returns: weight half-life of about 11 days, an
#: effective memory of 1/(1-0.94) ~ 17 observations.
DEFAULT_EWMA_LAMBDA = 0.94

__all__ = [
    "DEFAULT_EWMA_LAMBDA",
    "DeltaGammaVarResult",
    "EwmaCovariance",
    "PsdRepair",
    "VarResult",
    "conditional_moves",
    "delta_gamma_var",
    "delta_normal_var",
    "ewma_update",
    "repair_psd",
    "scale_correlations",
    "var_es_from_pnl",
]


class PsdRepair(msgspec.Struct, frozen=True):
    """Outcome of :func:`repair_psd`.

    ``matrix``: the symmetric PSD covariance to use (same array module and units as
    the input). ``repaired``: True when eigenvalues were clipped (the caller should
    log it). ``min_eigenvalue_before``: smallest eigenvalue of the input's
    *correlation* matrix (dimensionless; negative means the input was not PSD).
    ``n_clipped``: how many correlation eigenvalues were raised to the floor.
    """

    matrix: Any
    repaired: bool
    min_eigenvalue_before: float
    n_clipped: int


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


def _check_lambda(lam: float) -> float:
    value = float(lam)
    if not (0.0 < value < 1.0):
        raise ValueError(f"EWMA lambda must be in (0, 1) (0.94 is RiskMetrics' daily value); got {lam!r}")
    return value


def _square(xp: Any, matrix: Any, name: str) -> Any:
    m = xp.asarray(matrix, dtype=xp.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty square matrix; got shape {m.shape}")
    if not bool(xp.all(xp.isfinite(m))):
        raise ValueError(f"{name} has NaN or infinite entries")
    return m


def _vector(xp: Any, vector: Any, n: int, name: str) -> Any:
    v = xp.asarray(vector, dtype=xp.float64)
    if v.ndim == 0:
        v = v.reshape(1)
    if v.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match the covariance; got {v.shape}")
    if not bool(xp.all(xp.isfinite(v))):
        raise ValueError(f"{name} has NaN or infinite entries")
    return v


def _set_diagonal(xp: Any, matrix: Any, values: Any) -> None:
    idx = xp.arange(matrix.shape[0])
    matrix[idx, idx] = values


def _resolve_cov(cov: Any) -> PsdRepair:
    if isinstance(cov, PsdRepair):
        return cov
    return repair_psd(cov)


# --------------------------------------------------------------------------- PSD repair


def repair_psd(cov: Any, min_eigenvalue: float = 0.0) -> PsdRepair:
    """Nearest-by-eigenvalue-clipping PSD version of a covariance matrix.

    The matrix is symmetrized ((C + C')/2; asymmetry alone is not reported), turned
    into a correlation matrix, eigen-decomposed, and every correlation eigenvalue
    below ``min_eigenvalue`` is raised to it; the rebuilt matrix is rescaled to a
    unit diagonal and turned back into a covariance with the *original* variances,
    so every factor's volatility is unchanged and only correlations move.

    Working on correlations makes the floor scale-free (dimensionless, in
    [0, 1]) and keeps a low-vol factor from being swamped by a high-vol one.
    The rescaling is a congruence, so the result is exactly PSD up to rounding;
    a positive floor holds only approximately after it.

    A matrix already PSD (smallest correlation eigenvalue >= floor, within a
    rounding tolerance of ~10 n eps) comes back as its symmetric part with
    ``repaired=False``. Factors with zero variance are uncorrelated with the rest
    and keep zero rows. Raises ValueError on a negative variance, NaN/inf, or a
    non-square input. Cost: one n x n symmetric eigendecomposition.
    """
    xp = array_module(cov)
    c = _square(xp, cov, "cov")
    floor = float(min_eigenvalue)
    if not (0.0 <= floor <= 1.0):
        raise ValueError(f"min_eigenvalue is a floor on correlation eigenvalues, in [0, 1]; got {min_eigenvalue!r}")
    n = c.shape[0]
    sym = 0.5 * (c + c.T)
    variances = xp.diagonal(sym).copy()
    if bool(xp.any(variances < 0)):
        bad = int(xp.argmax(variances < 0))
        raise ValueError(f"cov has a negative variance at index {bad}: {float(variances[bad])!r}")
    std = xp.sqrt(variances)
    live = std > 0
    inv_std = xp.where(live, 1.0 / xp.where(live, std, 1.0), 0.0)
    # Outer products first: (a_ij * s_i) * s_j would not be bitwise symmetric.
    corr = sym * (inv_std[:, None] * inv_std[None, :])
    _set_diagonal(xp, corr, 1.0)

    eigenvalues, eigenvectors = xp.linalg.eigh(corr)
    min_before = float(eigenvalues[0])  # eigh sorts ascending
    # Rounding alone leaves a singular but valid correlation matrix ~1e-16 below 0;
    # flagging that as "repaired" would make every call on it noisy.
    tolerance = 10.0 * n * float(xp.finfo(xp.float64).eps) * max(1.0, float(eigenvalues[-1]))
    if min_before >= floor - tolerance:
        return PsdRepair(matrix=sym, repaired=False, min_eigenvalue_before=min_before, n_clipped=0)

    clipped = eigenvalues < floor
    n_clipped = int(xp.count_nonzero(clipped))
    eigenvalues = xp.where(clipped, floor, eigenvalues)
    rebuilt = (eigenvectors * eigenvalues[None, :]) @ eigenvectors.T
    rebuilt = 0.5 * (rebuilt + rebuilt.T)
    # Raising eigenvalues only increases the diagonal (>= 1), so this scale is <= 1.
    rescale = 1.0 / xp.sqrt(xp.diagonal(rebuilt))
    corr_fixed = rebuilt * (rescale[:, None] * rescale[None, :])
    out = corr_fixed * (std[:, None] * std[None, :])
    _set_diagonal(xp, out, variances)  # bit-exact variances, not sqrt(v)^2
    return PsdRepair(matrix=out, repaired=True, min_eigenvalue_before=min_before, n_clipped=n_clipped)


# --------------------------------------------------------------------------- parametric VaR


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
    d = _vector(xp, dollar_delta, cm.shape[0], "dollar_delta")
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
    cm = xp.asarray(repair.matrix, dtype=xp.float64)
    n = cm.shape[0]
    d = _vector(xp, dollar_delta, n, "dollar_delta")
    g = xp.asarray(dollar_gamma, dtype=xp.float64)
    if g.ndim <= 1:
        g = xp.diag(_vector(xp, g, n, "dollar_gamma"))
    else:
        g = _square(xp, g, "dollar_gamma")
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

    z = float(ndtri(c))
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


# --------------------------------------------------------------------------- EWMA covariance


def ewma_update(cov: Any, returns: Any, lam: float = DEFAULT_EWMA_LAMBDA) -> Any:
    """One EWMA step: ``lam * C + (1 - lam) * r r'``; returns a new matrix.

    ``cov``: (n, n) current estimate; ``returns``: one vector (n,) of relative
    returns (fractions) over the covariance's horizon; ``lam`` in (0, 1). The mean
    is taken as zero (RiskMetrics): over a day it is noise next to the variance.
    A NaN return is rejected, since it would poison the state for good.
    """
    xp = array_module(cov, returns)
    c = _square(xp, cov, "cov")
    r = _vector(xp, returns, c.shape[0], "returns")
    weight = _check_lambda(lam)
    return weight * c + (1.0 - weight) * (r[:, None] * r[None, :])


class EwmaCovariance:
    """Stateful EWMA covariance of relative returns (RiskMetrics recursion).

    ``lam`` comes from config; 0.94 (:data:`DEFAULT_EWMA_LAMBDA`) is RiskMetrics'
    daily value. Seed it with a covariance (``EwmaCovariance(seed_cov, lam)``) or
    with the first ``n_seed`` returns (:meth:`from_returns`, equal-weighted,
    zero-mean second moment). The estimate is PSD by construction (a positive
    combination of PSD terms), but VaR functions still check it.
    """

    __slots__ = ("_cov", "_lam", "_n_updates")

    def __init__(self, seed_cov: Any, lam: float = DEFAULT_EWMA_LAMBDA) -> None:
        xp = array_module(seed_cov)
        c = _square(xp, seed_cov, "seed_cov")
        self._lam = _check_lambda(lam)
        self._cov = 0.5 * (c + c.T)
        self._n_updates = 0

    @classmethod
    def from_returns(cls, returns: Any, n_seed: int, lam: float = DEFAULT_EWMA_LAMBDA) -> EwmaCovariance:
        """Seed from rows ``[0, n_seed)`` of ``returns`` (T, n), then fold in the rest.

        The seed is ``R'R / n_seed`` (zero mean, like the recursion). With
        ``n_seed < n`` it is singular; that is allowed (still PSD).
        """
        xp = array_module(returns)
        r = xp.asarray(returns, dtype=xp.float64)
        if r.ndim != 2 or r.shape[1] == 0:
            raise ValueError(f"returns must be a (T, n) matrix; got shape {r.shape}")
        n_seed = int(n_seed)
        if not (1 <= n_seed <= r.shape[0]):
            raise ValueError(f"n_seed must be in [1, {r.shape[0]}] (rows of returns); got {n_seed}")
        if not bool(xp.all(xp.isfinite(r))):
            raise ValueError("returns has NaN or infinite entries")
        seed = r[:n_seed].T @ r[:n_seed] / n_seed
        state = cls(seed, lam)
        if n_seed < r.shape[0]:
            state.update_many(r[n_seed:])
        return state

    @property
    def lam(self) -> float:
        """The decay factor in (0, 1)."""
        return self._lam

    @property
    def n_updates(self) -> int:
        """Number of return vectors folded in since the seed."""
        return self._n_updates

    @property
    def cov(self) -> Any:
        """A copy of the current (n, n) covariance estimate."""
        return self._cov.copy()

    def update(self, returns: Any) -> Any:
        """Fold in one return vector (n,); returns a copy of the new estimate."""
        self._cov = ewma_update(self._cov, returns, self._lam)
        self._n_updates += 1
        return self.cov

    def update_many(self, returns: Any) -> Any:
        """Fold in the rows of ``returns`` (T, n), oldest first, in one vectorized step.

        Same result as T calls of :meth:`update` (up to rounding), via the closed
        form ``lam^T C + sum_t (1-lam) lam^(T-1-t) r_t r_t'``.
        """
        xp = array_module(self._cov, returns)
        r = xp.asarray(returns, dtype=xp.float64)
        n = self._cov.shape[0]
        if r.ndim != 2 or r.shape[1] != n:
            raise ValueError(f"returns must be a (T, {n}) matrix; got shape {r.shape}")
        if not bool(xp.all(xp.isfinite(r))):
            raise ValueError("returns has NaN or infinite entries")
        t = r.shape[0]
        if t == 0:
            return self.cov
        weights = (1.0 - self._lam) * self._lam ** xp.arange(t - 1, -1, -1, dtype=xp.float64)
        new = self._lam**t * self._cov + (r * weights[:, None]).T @ r
        self._cov = 0.5 * (new + new.T)
        self._n_updates += t
        return self.cov


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


# --------------------------------------------------------------------------- stress helpers


def scale_correlations(cov: Any, factor: float) -> PsdRepair:
    """Stress the correlations: ``c_ij -> clip(c_ij * factor, -1, 1)`` for i != j.

    ``factor`` >= 0 (1.5 for "correlations +50 %", 0 for "all uncorrelated");
    volatilities are unchanged. Scaling can break positive semi-definiteness (e.g.
    three factors all at correlation 0.9 with one at -0.5), so the result goes
    through :func:`repair_psd` and comes back as a :class:`PsdRepair` whose
    ``repaired`` says whether the stressed matrix had to be fixed.
    """
    scale = float(factor)
    if not (math.isfinite(scale) and scale >= 0.0):
        raise ValueError(f"factor must be finite and >= 0; got {factor!r}")
    xp = array_module(cov)
    c = _square(xp, cov, "cov")
    sym = 0.5 * (c + c.T)
    variances = xp.diagonal(sym).copy()
    if bool(xp.any(variances < 0)):
        raise ValueError("cov has a negative variance")
    std = xp.sqrt(variances)
    # Clipping covariances at +-s_i s_j is clipping correlations at +-1, without a
    # division (so zero-vol factors need no special case and factor=1 is exact).
    bound = std[:, None] * std[None, :]
    stressed = xp.clip(sym * scale, -bound, bound)
    _set_diagonal(xp, stressed, variances)
    return repair_psd(stressed)


def conditional_moves(cov: Any, shocked_index: Sequence[int] | Any, shocked_moves: Any) -> Any:
    """Expected move of every factor given moves of some, under r ~ N(0, cov).

    ``shocked_index``: k distinct factor indices; ``shocked_moves``: their relative
    moves (fractions), shape (k,) or (m, k) for m stress scenarios at once.
    Returns (n,) or (m, n): shocked factors keep their given moves, the others get
    ``C_os C_ss^+ r_s``. ``C_ss`` is solved by least squares (pseudo-inverse), so a
    singular block (perfectly correlated shocked factors) is fine; shocks that a
    singular block cannot produce are projected onto what it can.

    ``cov`` is used as given (symmetrized only): pass a repaired matrix
    (:func:`repair_psd`) if it may not be PSD.
    """
    xp = array_module(cov, shocked_moves)
    c = _square(xp, cov, "cov")
    c = 0.5 * (c + c.T)
    n = c.shape[0]
    index = [int(i) for i in (shocked_index.tolist() if hasattr(shocked_index, "tolist") else shocked_index)]
    if len(set(index)) != len(index):
        raise ValueError(f"shocked_index has duplicates: {index}")
    if any(i < 0 or i >= n for i in index):
        raise ValueError(f"shocked_index must be in [0, {n}); got {index}")
    moves = xp.asarray(shocked_moves, dtype=xp.float64)
    single = moves.ndim <= 1
    moves = moves.reshape(1, -1) if single else moves
    if moves.ndim != 2 or moves.shape[1] != len(index):
        raise ValueError(f"shocked_moves must have shape ({len(index)},) or (m, {len(index)}); got {moves.shape}")
    if not bool(xp.all(xp.isfinite(moves))):
        raise ValueError("shocked_moves has NaN or infinite entries")

    out = xp.zeros((moves.shape[0], n), dtype=xp.float64)
    if index:
        s = xp.asarray(index)
        shocked = set(index)
        o = xp.asarray([i for i in range(n) if i not in shocked], dtype=s.dtype)
        out[:, s] = moves
        if o.shape[0]:
            c_ss = c[s[:, None], s[None, :]]
            c_os = c[o[:, None], s[None, :]]
            solution = xp.linalg.lstsq(c_ss, moves.T, rcond=None)[0]  # (k, m)
            out[:, o] = (c_os @ solution).T
    return out[0] if single else out
