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


def _d1_d2(xp: Any, s: Any, k: Any, r: Any, q: Any, t: Any, vol: Any):
    stddev = vol * xp.sqrt(t)
    live = stddev > MIN_STDDEV
    safe_sd = xp.where(live, stddev, 1.0)
    log_moneyness = xp.log(s / k) + (r - q) * t
    d1_live = (log_moneyness + 0.5 * stddev * stddev) / safe_sd
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
    Units: see the module docstring.
    """
    xp = array_module(is_call, s, k, r, q, t, vol, black76)
    s, k, r, t, vol = (xp.asarray(x, dtype=float) for x in (s, k, r, t, vol))
    is_call = xp.asarray(is_call, dtype=bool)
    black76 = xp.asarray(black76, dtype=bool)
    q = xp.where(black76, r, xp.asarray(q, dtype=float))
    sp = special_module(xp)

    with _quiet(xp):
        d1, d2, stddev, live, safe_sd = _d1_d2(xp, s, k, r, q, t, vol)
        sign = xp.where(is_call, 1.0, -1.0)
        disc_q = xp.exp(-q * t)
        disc_r = xp.exp(-r * t)
        nd1 = sp.ndtr(sign * d1)  # N(d1) for calls, N(-d1) for puts
        nd2 = sp.ndtr(sign * d2)
        pdf_d1 = xp.where(live, xp.exp(-0.5 * d1 * d1) * 0.3989422804014327, 0.0)
        sqrt_t = xp.sqrt(t)

        price = sign * (s * disc_q * nd1 - k * disc_r * nd2)
        delta = sign * disc_q * nd1
        gamma = xp.where(live, disc_q * pdf_d1 / (s * safe_sd), 0.0)
        vega = s * disc_q * pdf_d1 * sqrt_t
        safe_sqrt_t = xp.where(sqrt_t > 0, sqrt_t, 1.0)
        decay = xp.where(live, -s * disc_q * pdf_d1 * vol / (2.0 * safe_sqrt_t), 0.0)
        theta = decay + sign * (q * s * disc_q * nd1 - r * k * disc_r * nd2)
        rho = xp.where(black76, -t * price, sign * k * t * disc_r * nd2)
    return Greeks(price, delta, gamma, vega, theta, rho)


def price(
    is_call: Any, s: Any, k: Any, r: Any, q: Any, t: Any, vol: Any, black76: Any = False
) -> Any:
    """Option value per unit of underlying (currency), without the Greeks."""
    xp = array_module(is_call, s, k, r, q, t, vol, black76)
    s, k, r, t, vol = (xp.asarray(x, dtype=float) for x in (s, k, r, t, vol))
    is_call = xp.asarray(is_call, dtype=bool)
    q = xp.where(xp.asarray(black76, dtype=bool), r, xp.asarray(q, dtype=float))
    sp = special_module(xp)
    with _quiet(xp):
        d1, d2, *_ = _d1_d2(xp, s, k, r, q, t, vol)
        sign = xp.where(is_call, 1.0, -1.0)
        return sign * (s * xp.exp(-q * t) * sp.ndtr(sign * d1) - k * xp.exp(-r * t) * sp.ndtr(sign * d2))


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
