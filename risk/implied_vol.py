"""Implied volatility of European options (Black-Scholes-Merton and Black-76), vectorized.

The inverse of :func:`risk.pricing.price` in ``vol``, with the same conventions: ``t``
in years, ``r``/``q`` and the result as fractions per year (0.20 is 20 %), prices in
currency per unit of underlying; for Black-76 ``s`` is the futures price and ``q`` is
ignored. Array-module agnostic (NumPy or CuPy in, the same out); inputs broadcast.

Method. Put-call parity turns every option into its out-of-the-money twin (no
cancellation between a large intrinsic value and a small time value), which is then
normalized (Jaeckel's notation) to ``b(y, sig) = e^{y/2} N(y/sig + sig/2) - e^{-y/2}
N(y/sig - sig/2)`` with ``y = -|ln(F/K)| <= 0`` and total deviation ``sig = vol
sqrt(t)``; ``b`` rises from 0 to ``e^{y/2}``, convex below ``sig_c = sqrt(-2y)`` and
concave above it. Below ``b(sig_c)`` the solver runs Newton on ``ln b`` in the
variable ``1/sig^2`` (deep OTM prices may be 1e-200: only the log is well scaled, it
is computed through ``erfcx`` so it never underflows, and it is nearly linear in
``1/sig^2``), or in ``ln sig`` nearer the money; above, Newton in ``sig`` on ``ln b``
or on ``ln(e^{y/2} - b)``, whichever of the two is the smaller (near the upper bound
only the distance to it carries information). Every step is kept inside a bracket
that each evaluation tightens, with bisection as the fallback, so it always
converges; from the asymptotic initial guesses it takes 2-5 steps, 7 at most on the
tests' grids (1 day to 5 years, vols 0.5 % to 600 %, K/S 0.3 to 3).

Results outside the solvable set, rather than exceptions:

- NaN: a non-finite input, ``s <= 0``, ``k <= 0``, ``t < 0``, a price below the
  discounted intrinsic value ``max(+-(s e^{-qt} - k e^{-rt}), 0)`` or above the upper
  bound (``s e^{-qt}`` for a call, ``k e^{-rt}`` for a put), or, at ``t == 0``, any
  price other than the intrinsic value.
- 0.0: a price equal to the intrinsic value. For an in-the-money option "equal"
  includes a few ulps of the discounted strike or spot either side, the rounding of
  the parity conversion: a time value below that does not identify any vol.
- +inf: a price exactly equal to the upper bound (with ``t > 0``).
"""

from __future__ import annotations

from typing import Any

from risk.pricing import _quiet
from risk.xp import array_module, special_module

_INV_SQRT_2PI = 0.3989422804014327
_LN_SQRT_2PI = 0.9189385332046728
_INV_SQRT2 = 0.7071067811865476
_EPS = 2.220446049250313e-16
#: Tiniest normalized value used where a logarithm would otherwise see 0.
_TINY = 1e-300


def implied_vol(
    target_price: Any,
    is_call: Any,
    s: Any,
    k: Any,
    r: Any,
    q: Any,
    t: Any,
    black76: Any = False,
    *,
    max_iter: int = 100,
    tol: float = 1e-13,
) -> Any:
    """Volatility (fraction per year) at which the option is worth ``target_price``.

    ``target_price`` is in currency per unit of underlying, ``t`` in years, ``r`` and
    ``q`` fractions per year; ``is_call`` and ``black76`` are booleans (arrays or
    scalars). The iteration stops per element when a step changes the total deviation
    ``vol sqrt(t)`` by less than ``tol`` relative or the residual is down to its own
    rounding, and for all after ``max_iter`` vectorized steps (each only over the
    elements still unconverged). NaN / 0 / inf cases: see the module docstring.
    """
    xp = array_module(target_price, is_call, s, k, r, q, t, black76)
    sp = special_module(xp)
    price, s, k, r, q, t = (xp.asarray(x, dtype=float) for x in (target_price, s, k, r, q, t))
    is_call = xp.asarray(is_call, dtype=bool)
    black76 = xp.asarray(black76, dtype=bool)
    price, s, k, r, q, t, is_call, black76 = xp.broadcast_arrays(price, s, k, r, q, t, is_call, black76)
    q = xp.where(black76, r, q)

    with _quiet(xp):
        finite = xp.isfinite(price) & xp.isfinite(s) & xp.isfinite(k) & xp.isfinite(r)
        finite &= xp.isfinite(q) & xp.isfinite(t)
        # Present values of the deliverables, computed as risk.pricing does, so that
        # its own prices at vol 0 land exactly on the intrinsic value here.
        sq = s * xp.exp(-q * t)
        kr = k * xp.exp(-r * t)
        itm = xp.where(is_call, sq > kr, kr > sq)
        intrinsic = xp.where(itm, xp.abs(sq - kr), 0.0)
        upper = xp.where(is_call, sq, kr)
        # The ITM twin's parity conversion rounds at the scale of the larger leg.
        slack = xp.where(itm, 8.0 * _EPS * xp.maximum(sq, kr), 0.0)
        otm = price - intrinsic

        valid = finite & (s > 0) & (k > 0) & (t >= 0) & (otm >= -slack) & (price <= upper)
        at_intrinsic = valid & (otm <= slack)
        at_upper = valid & ~at_intrinsic & (price == upper) & (t > 0)
        live = valid & ~at_intrinsic & ~at_upper & (t > 0)
        vol = xp.where(at_intrinsic, 0.0, xp.where(at_upper, xp.inf, xp.nan)).reshape(-1)

        i = xp.nonzero(live.ravel())[0]
        if i.size:
            sq, kr, t = sq.ravel()[i], kr.ravel()[i], t.ravel()[i]
            norm = xp.sqrt(sq * kr)
            y = -xp.abs(xp.log(s.ravel()[i] / k.ravel()[i]) + (r.ravel()[i] - q.ravel()[i]) * t)
            beta = otm.ravel()[i] / norm
            gap = (upper.ravel()[i] - price.ravel()[i]) / norm
            vol[i] = _solve(xp, sp, y, beta, gap, max_iter, tol) / xp.sqrt(t)
    return vol.reshape(price.shape)


def _solve(xp: Any, sp: Any, y: Any, beta: Any, gap: Any, max_iter: int, tol: float) -> Any:
    """Total deviation ``sig`` with ``b(y, sig) = beta``, ``e^{y/2} - b = gap`` (1-D)."""
    ln_beta = xp.log(xp.maximum(beta, _TINY))
    ln_gap = xp.log(xp.maximum(gap, _TINY))
    sig_c = xp.sqrt(-2.0 * y)
    hi = 2.0 * sig_c + 40.0  # d1 >= 20 there: b equals its bound to double precision

    lower = (y < 0) & (ln_beta <= _log_b_and_gap(xp, sp, y, xp.maximum(sig_c, 1e-150))[0])
    # Solve on whichever of b and its gap to the bound is the smaller: that one is
    # known to full relative precision (near the money with a tiny sig, b ~ 1e-5
    # while the gap is 1 - 1e-5 and has lost five digits of it).
    on_b = lower | (beta <= gap)

    # Above sig_c: gap ~ (e^{y/2} + e^{-y/2}) N(-sig/2), exact at the money. Where b is
    # the small one, the same guess is written through b to keep its digits.
    cosh = xp.cosh(0.5 * y)
    guess_up = xp.where(
        on_b,
        2.0 / _INV_SQRT2 * sp.erfinv(xp.minimum((beta + xp.sinh(-0.5 * y)) / cosh, 1.0)),
        -2.0 * sp.ndtri(xp.minimum(gap / (2.0 * cosh), 0.5)),
    )
    sig = xp.clip(guess_up, sig_c, hi)
    j = xp.nonzero(lower)[0]
    if j.size:
        # Lower region: b ~ e^{-y^2/2sig^2 - sig^2/8} sig^3 / (y^2 sqrt(2 pi)), solved
        # for sig by fixed-point iteration (the log term varies slowly).
        yj, ln_bj, cj = y[j], ln_beta[j], sig_c[j]
        guess = 0.5 * cj
        for _ in range(3):
            u = xp.log(guess**3 / (yj * yj)) - _LN_SQRT_2PI - guess**2 / 8.0 - ln_bj
            guess = xp.minimum(-yj / xp.sqrt(2.0 * xp.maximum(u, 1e-3)), cj)
        # Near the money those asymptotics fail and the upper guess (made for y = 0)
        # is the better one: keep whichever misses ln(beta) by less.
        alt = xp.clip(guess_up[j], 1e-150, cj)
        miss = xp.abs(_log_b_and_gap(xp, sp, yj, guess)[0] - ln_bj)
        miss_alt = xp.abs(_log_b_and_gap(xp, sp, yj, alt)[0] - ln_bj)
        sig[j] = xp.where(miss_alt < miss, alt, guess)
    sig = xp.where(xp.isfinite(sig) & (sig > 0), sig, 0.5 * hi)

    lo = xp.zeros_like(sig)
    active = xp.arange(sig.size)
    for _ in range(max_iter):
        if not active.size:
            break
        # Only the unconverged elements are worked on: most finish in 3-4 steps.
        ya, sa, la, ha, ob = y[active], sig[active], lo[active], hi[active], on_b[active]
        ln_b, ln_g, noise = _log_b_and_gap(xp, sp, ya, sa)
        # f increases with sig in both regions; f' = vega/b or vega/gap.
        f = xp.where(ob, ln_b - ln_beta[active], ln_gap[active] - ln_g)
        a = -0.5 * (ya / sa) ** 2 - 0.125 * sa * sa  # ln(sqrt(2 pi) * vega)
        fprime = xp.exp(a - xp.where(ob, ln_b, ln_g)) * _INV_SQRT_2PI
        la = xp.where(f < 0, sa, la)
        ha = xp.where(f > 0, sa, ha)
        # Deep below the money ln b ~ -y^2 / (2 sig^2), nearly linear in 1/sig^2 (a
        # plain Newton step in sig crawls up from small sig); nearer the money
        # ln b ~ ln sig + const: Newton in ln sig. Above sig_c, Newton in sig.
        step = xp.where(ya * ya > sa * sa, 1.0 / xp.sqrt(1.0 / (sa * sa) + 2.0 * f / (fprime * sa**3)),
                        sa * xp.exp(-f / (fprime * sa)))
        step = xp.where(lower[active], step, sa - f / fprime)
        # Geometric bisection once lo > 0: roots span many orders of magnitude.
        mid = xp.where(la > 0, xp.sqrt(la * ha), 0.5 * (la + ha))
        # Inclusive: a converged step rounds onto the bracket end it just set.
        new = xp.where((step >= la) & (step <= ha), step, mid)
        sig[active], lo[active], hi[active] = new, la, ha
        # Done when the step is below tol, or the residual is down to the rounding of
        # its own evaluation (beyond that the steps only chase noise).
        done = (xp.abs(new - sa) <= tol * new) | (xp.abs(f) <= 4.0 * xp.where(ob, noise, _EPS))
        active = active[~done]
    return sig


def _log_b_and_gap(xp: Any, sp: Any, y: Any, sig: Any) -> tuple[Any, Any, Any]:
    """``ln b(y, sig)``, ``ln(e^{y/2} - b(y, sig))`` and the rounding error of ``ln b``.

    For ``y <= 0``, ``sig > 0``. Both logs are written as ``a + ln(sum of erfcx
    terms)`` on the side where that sum has no cancellation (``d1 <= 0`` for ``b``,
    ``d1 >= 0`` for the gap), so neither underflows. For ``d1 > 0``, ``b = e^{y/2}
    (N(d1) - N(d2)) + 2 sinh(y/2) N(d2)`` keeps its digits even when it is tiny next
    to the bound (at the money with a tiny ``sig``); for ``d1 <= 0`` the gap is at
    least half the bound, so subtracting ``b`` from it is exact enough. Near the
    money with a tiny ``sig`` the two terms of ``b`` still cancel: the third result,
    eps times their size over their difference, says by how much.
    """
    x1 = (y / sig + 0.5 * sig) * _INV_SQRT2  # d1 / sqrt(2)
    x2 = x1 - sig * _INV_SQRT2  # d2 / sqrt(2), always < 0
    a = -0.5 * (y / sig) ** 2 - 0.125 * sig * sig
    below = x1 <= 0
    e1, e2 = sp.erfcx(xp.where(below, -x1, 0.0)), sp.erfcx(-x2)
    ln_b_low = a + xp.log(0.5 * (e1 - e2))
    ln_g_high = a + xp.log(0.5 * (sp.erfcx(xp.where(below, 0.0, x1)) + e2))
    bound = xp.exp(0.5 * y)
    # d2 < 0 < d1 here: erf(x1) - erf(x2) is a sum of two positive terms.
    up, down = 0.5 * bound * (sp.erf(x1) + sp.erf(-x2)), xp.sinh(0.5 * y) * sp.erfc(-x2)
    b_high = up + down
    ln_b = xp.where(below, ln_b_low, xp.log(xp.maximum(b_high, _TINY)))
    ln_g = xp.where(below, xp.log(xp.maximum(bound - xp.exp(ln_b_low), _TINY)), ln_g_high)
    noise = _EPS * xp.where(below, (e1 + e2) / (e1 - e2), (up - down) / b_high)
    return ln_b, ln_g, noise
