"""Covariance of risk-factor returns: EWMA estimation, PSD repair, stress helpers.

Returns are the underlyings' relative returns over one horizon (0.01 is a 1 %
move); a covariance is that of those returns over the same horizon. A matrix that
is not positive semidefinite is never used as is: :func:`repair_psd` repairs its
correlation matrix (variances unchanged) and says so, and the VaR functions in
:mod:`risk.var` accept the resulting :class:`PsdRepair` directly.

Array functions work on NumPy or CuPy inputs (see :mod:`risk.xp`).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import msgspec

from risk.xp import array_module

#: RiskMetrics' decay for daily returns: weight half-life of about 11 days, an
#: effective memory of 1/(1-0.94) ~ 17 observations.
DEFAULT_EWMA_LAMBDA = 0.94


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


def _check_lambda(lam: float) -> float:
    value = float(lam)
    if not (0.0 < value < 1.0):
        raise ValueError(f"EWMA lambda must be in (0, 1) (0.94 is RiskMetrics' daily value); got {lam!r}")
    return value


def as_square_matrix(xp: Any, matrix: Any, name: str) -> Any:
    """``matrix`` as a finite square float64 array of ``xp``; ValueError naming ``name`` if not."""
    m = xp.asarray(matrix, dtype=xp.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty square matrix; got shape {m.shape}")
    if not bool(xp.all(xp.isfinite(m))):
        raise ValueError(f"{name} has NaN or infinite entries")
    return m

def as_vector(xp: Any, vector: Any, n: int, name: str) -> Any:
    """``vector`` as a finite float64 array of shape (n,); ValueError naming ``name`` if not."""
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
    c = as_square_matrix(xp, cov, "cov")
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

# --------------------------------------------------------------------------- EWMA covariance


def ewma_update(cov: Any, returns: Any, lam: float = DEFAULT_EWMA_LAMBDA) -> Any:
    """One EWMA step: ``lam * C + (1 - lam) * r r'``; returns a new matrix.

    ``cov``: (n, n) current estimate; ``returns``: one vector (n,) of relative
    returns (fractions) over the covariance's horizon; ``lam`` in (0, 1). The mean
    is taken as zero (RiskMetrics): over a day it is noise next to the variance.
    A NaN return is rejected, since it would poison the state for good.
    """
    xp = array_module(cov, returns)
    c = as_square_matrix(xp, cov, "cov")
    r = as_vector(xp, returns, c.shape[0], "returns")
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
        c = as_square_matrix(xp, seed_cov, "seed_cov")
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
    c = as_square_matrix(xp, cov, "cov")
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
    c = as_square_matrix(xp, cov, "cov")
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
