"""European option values and Greeks: Black-Scholes-Merton and Black-76, vectorized.

One generalized formula covers both models. With underlying price ``s`` (spot for
BSM, the futures price for Black-76), strike ``k``, risk-free rate ``r`` and carry
yield ``q`` (the continuous dividend yield for BSM; equal to ``r`` for Black-76, so
the cost of carry ``r - q`` is zero):

    d1 = (ln(s/k) + (r - q + vol^2/2) t) / (vol sqrt(t)),   d2 = d1 - vol sqrt(t)
    call = s e^{-qt} N(d1) - k e^{-rt} N(d2),    put = k e^{-rt} N(-d2) - s e^{-qt} N(-d1)

Units (all per one unit of the underlying, not per contract; multiply by the
contract multiplier and the quantity for a position):

- ``t``: years; ``r``, ``q``, ``vol``: fractions per year (0.05 is 5 %).
- price: currency per unit of underlying.
- delta: d price / d s (per 1.00 of underlying price).
- gamma: d delta / d s.
- vega: d price / d vol, per 1.00 of vol (divide by 100 for "per vol point").
- theta: d price / d calendar time, per year (= -d price / d t; negative for a
  long vanilla option in most markets; divide by 365 for "per day").
- rho: d price / d r, per 1.00 of rate. For BSM the spot and ``q`` are held fixed;
  for Black-76 the futures price is held fixed, so rho = -t * price.

Degenerate inputs are handled in closed form, not by NaN: at ``t == 0`` or
``vol == 0`` the value is the discounted intrinsic value of the forward, delta is
the discounted step function, and gamma and vega are 0. Inputs are broadcast
against each other.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from risk.xp import array_module, special_module

#: Below this total standard deviation (vol * sqrt(t)) the option is treated as
#: having no optionality left: the formulas' 1/(vol sqrt t) would lose all accuracy.
MIN_STDDEV = 1e-12


class Greeks(NamedTuple):
    """Value and sensitivities per unit of underlying; units in the module docstring."""

    price: Any
    delta: Any
    gamma: Any
    vega: Any
    theta: Any
    rho: Any


def _d1_d2(xp: Any, s: Any, k: Any, r: Any, q: Any, t: Any, vol: Any, sqrt_t: Any = None):
    sqrt_t = xp.sqrt(t) if sqrt_t is None else sqrt_t
    stddev = vol * sqrt_t
    live = stddev > MIN_STDDEV
    log_moneyness = xp.log(s / k) + (r - q) * t
    if bool(live.all()):
        d1 = log_moneyness / stddev + 0.5 * stddev
        return d1, d1 - stddev, stddev, live, stddev
    safe_sd = xp.where(live, stddev, 1.0)
    d1_live = log_moneyness / safe_sd + 0.5 * stddev
    # No optionality left: d1 = d2 = +-inf by the sign of the forward's moneyness,
    # and 0 exactly at the money (the option is worth 0 there in the limit).
    d_dead = xp.where(log_moneyness > 0, xp.inf, xp.where(log_moneyness < 0, -xp.inf, 0.0))
    d1 = xp.where(live, d1_live, d_dead)
    d2 = xp.where(live, d1_live - stddev, d_dead)
    return d1, d2, stddev, live, safe_sd


def greeks(
    is_call: Any,
    s: Any,
    k: Any,
    r: Any,
    q: Any,
    t: Any,
    vol: Any,
    black76: Any = False,
) -> Greeks:
    """Price, delta, gamma, vega, theta and rho of European options.

    ``is_call`` and ``black76`` are boolean arrays or scalars. For a Black-76 row,
    ``s`` is the futures price and ``q`` is ignored (taken equal to ``r``).
    Inputs broadcast together. Units: see the module docstring.
    """
    xp = array_module(is_call, s, k, r, q, t, vol, black76)
    s, k, r, q, t, vol = (xp.asarray(x, dtype=float) for x in (s, k, r, q, t, vol))
    is_call = xp.asarray(is_call, dtype=bool)
    black76 = xp.asarray(black76, dtype=bool)
    sp = special_module(xp)
    with _quiet(xp):
        any_black76 = bool(black76.any())
        if any_black76:
            q = xp.where(black76, r, q)
        sqrt_t = xp.sqrt(t)
        stddev = vol * sqrt_t
        if bool((stddev > MIN_STDDEV).all()):
            out = _greeks_live(xp, sp, is_call, s, k, r, q, t, vol, sqrt_t, stddev)
        else:
            out = _greeks_degenerate(xp, sp, is_call, s, k, r, q, t, vol)
        if any_black76:
            out = out._replace(rho=xp.where(black76, -t * out.price, out.rho))
        return out


def _greeks_live(xp: Any, sp: Any, is_call: Any, s: Any, k: Any, r: Any, q: Any, t: Any, vol: Any,
                 sqrt_t: Any, stddev: Any) -> Greeks:
    """Every option still has optionality (vol sqrt(t) > MIN_STDDEV): the fast path.

    In-place arithmetic on few temporaries (measured 1.5x the allocating version at
    N = 10,000). With sign = +1 for calls and -1 for puts, value = sa - sb where
    sa = sign s e^{-qt} N(sign d1) and sb = sign k e^{-rt} N(sign d2); delta,
    theta and rho are built from these two legs.
    """
    d1 = xp.log(s / k)
    d1 += (r - q) * t
    d1 /= stddev
    d1 += 0.5 * stddev
    d2 = d1 - stddev
    sign = is_call * 2.0 - 1.0
    disc_q = xp.exp(-q * t)
    dq_pdf = xp.exp(-0.5 * d1 * d1)
    dq_pdf *= 0.3989422804014327 * disc_q
    d1 *= sign
    d2 *= sign
    delta = sp.ndtr(d1)
    delta *= disc_q
    delta *= sign
    sa = delta * s
    sb = sp.ndtr(d2)
    sb *= k * xp.exp(-r * t)
    sb *= sign
    price = sa - sb
    gamma = dq_pdf / (s * stddev)
    vega = dq_pdf * s
    vega *= sqrt_t
    theta = q * sa
    theta -= r * sb
    theta -= vega * vol / (2.0 * t)  # s e^{-qt} n(d1) vol / (2 sqrt t)
    rho = t * sb
    return Greeks(price, delta, gamma, vega, theta, rho)


def _greeks_degenerate(xp: Any, sp: Any, is_call: Any, s: Any, k: Any, r: Any, q: Any, t: Any,
                       vol: Any) -> Greeks:
    """Greeks when some options have no optionality left (t = 0 or vol ~ 0): closed
    form for those, the formulas for the rest. ``q`` already equals ``r`` for
    Black-76 rows; the caller fixes their rho and holds the error state quiet."""
    sqrt_t = xp.sqrt(t)
    d1, d2, stddev, live, safe_sd = _d1_d2(xp, s, k, r, q, t, vol, sqrt_t)
    sign = is_call * 2.0 - 1.0
    s_disc_q = s * xp.exp(-q * t)
    # a and b are the two legs of the value: sign (a - b); theta, delta and rho reuse them.
    a = s_disc_q * sp.ndtr(sign * d1)
    b = k * xp.exp(-r * t) * sp.ndtr(sign * d2)
    s_disc_pdf = s_disc_q * (xp.exp(-0.5 * d1 * d1) * 0.3989422804014327)
    all_live = safe_sd is stddev
    if not all_live:  # no optionality left: no gamma, vega or time decay
        s_disc_pdf = xp.where(live, s_disc_pdf, 0.0)
    price = sign * (a - b)
    delta = sign * a / s
    gamma = s_disc_pdf / (s * s * safe_sd)
    vega = s_disc_pdf * sqrt_t
    decay_sqrt_t = sqrt_t if all_live else xp.where(live, sqrt_t, 1.0)
    theta = sign * (q * a - r * b) - s_disc_pdf * vol / (2.0 * decay_sqrt_t)
    rho = sign * t * b
    return Greeks(price, delta, gamma, vega, theta, rho)


def price(
    is_call: Any, s: Any, k: Any, r: Any, q: Any, t: Any, vol: Any, black76: Any = False
) -> Any:
    """Option value per unit of underlying (currency), without the Greeks."""
    xp = array_module(is_call, s, k, r, q, t, vol, black76)
    s, k, r, t, vol = (xp.asarray(x, dtype=float) for x in (s, k, r, t, vol))
    is_call = xp.asarray(is_call, dtype=bool)
    black76 = xp.asarray(black76, dtype=bool)
    q = xp.where(black76, r, xp.asarray(q, dtype=float)) if bool(black76.any()) else xp.asarray(q, dtype=float)
    sp = special_module(xp)
    with _quiet(xp):
        d1, d2, *_ = _d1_d2(xp, s, k, r, q, t, vol)
        sign = xp.where(is_call, 1.0, -1.0)
        return sign * (s * xp.exp(-q * t) * sp.ndtr(sign * d1) - k * xp.exp(-r * t) * sp.ndtr(sign * d2))


def scenario_prices(
    is_call: Any, s: Any, k: Any, r: Any, q: Any, t: Any, vol: Any, moves: Any, black76: Any = False
) -> Any:
    """Option values under price scenarios: the hot loop of risk-array revaluation.

    Rows are options, columns are scenarios. ``is_call, s, k, r, q, t, black76``
    have shape (n,) (per option); ``moves`` (S,) are relative moves of ``s``;
    ``vol`` is (n, S) (the shocked vols). Returns (n, S) values per unit of
    underlying, equal to ``price(.., s * (1 + moves), .., vol)`` up to rounding:
    every per-option quantity is computed once instead of S times, and puts come
    from put-call parity (absolute error ~1e-16 x the forward, which is
    immaterial for a P&L but is why :func:`price` remains the reference).
    """
    xp = array_module(is_call, s, k, r, q, t, vol, moves, black76)
    s, k, r, t = (xp.asarray(x, dtype=float)[:, None] for x in (s, k, r, t))
    black76 = xp.asarray(black76, dtype=bool)
    q = xp.asarray(q, dtype=float)
    if bool(black76.any()):
        q = xp.where(black76, r[:, 0], q)
    q = q[:, None]
    vol = xp.asarray(vol, dtype=float)
    moves = xp.asarray(moves, dtype=float)[None, :]
    is_call = xp.asarray(is_call, dtype=bool)
    sp = special_module(xp)
    with _quiet(xp):
        stddev = vol * xp.sqrt(t)
        if not bool((stddev > MIN_STDDEV).all()):
            return price(is_call[:, None], s * (1.0 + moves), k, r, q, t, vol)
        d1 = xp.log1p(moves) + (xp.log(s / k) + (r - q) * t)
        d1 /= stddev
        stddev *= 0.5
        d1 += stddev
        d2 = d1 - stddev
        d2 -= stddev
        forward_disc = (s * xp.exp(-q * t)) * (1.0 + moves)  # (n, S): s' e^{-qt}
        strike_disc = k * xp.exp(-r * t)                      # (n, 1): k e^{-rt}
        value = sp.ndtr(d1, out=d1)
        value *= forward_disc
        value -= strike_disc * sp.ndtr(d2, out=d2)
        if not bool(is_call.all()):
            puts = ~is_call
            value[puts] -= forward_disc[puts] - strike_disc[puts]
        return value


class _quiet:
    """Silence NumPy's floating-point warnings for the masked branches of ``where``."""

    def __init__(self, xp: Any) -> None:
        self._ctx = xp.errstate(all="ignore") if hasattr(xp, "errstate") else None

    def __enter__(self) -> None:
        if self._ctx is not None:
            self._ctx.__enter__()

    def __exit__(self, *exc: Any) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(*exc)
