"""Market simulator: GBM with jumps per underlying and a moving implied vol surface.

One job: generate deterministic :class:`~actors.ticks.Tick` streams for tests,
benches and demos. Clock-free: simulated time starts at ``start_ns`` and advances
per :meth:`GbmMarket.step`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

import msgspec
import numpy as np

from actors.ticks import MAX_VOL, Tick, VolPoint, _is_int, _is_real, _to_us
from risk.instruments import SECONDS_PER_YEAR

__all__ = ["GbmUnderlying", "GbmMarket"]


class GbmUnderlying(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Simulation parameters of one underlying for :class:`GbmMarket`.

    Price: ``spot`` (initial, currency per unit), ``vol`` (diffusion vol, fraction per
    year), ``rate`` / ``dividend_yield`` (fractions per year, constant, sent on every
    tick), jumps: ``jump_intensity`` (expected jumps per year, Poisson),
    ``jump_mean`` / ``jump_std`` (of the log price jump; -0.05 = about -5 %).

    Vol surface: ``atm_vol`` (initial ATM implied vol, fraction/yr; default ``vol``),
    ``vol_long_run`` (long-run mean of the ATM vol; default the initial ATM vol),
    ``vol_mean_reversion`` (kappa, per year: half-life ln2/kappa years),
    ``vol_of_vol`` (std of log ATM vol per sqrt(year)), ``spot_vol_correlation``
    (between the price's and the log-vol's Brownian shocks; negative = leverage),
    ``vol_jump_beta`` (log ATM vol rises by beta x |log jump| on a down jump),
    ``skew`` (vol = atm + skew x ln(K/F) / sqrt(T), T in years: vol x sqrt(year)),
    ``vol_floor`` / ``vol_cap`` (fractions/yr bounding every vol), ``expiries``
    (surface expiry dates), ``moneyness`` (strikes as K/F, strictly ascending),
    ``expiry_time_utc`` (time of day the expiries expire; match the reference data).
    """

    id: str
    spot: float
    vol: float
    rate: float = 0.0
    dividend_yield: float = 0.0
    jump_intensity: float = 0.0
    jump_mean: float = 0.0
    jump_std: float = 0.0
    atm_vol: float | None = None
    vol_long_run: float | None = None
    vol_mean_reversion: float = 4.0
    vol_of_vol: float = 0.5
    spot_vol_correlation: float = -0.5
    vol_jump_beta: float = 2.0
    skew: float = -0.1
    vol_floor: float = 0.01
    vol_cap: float = 5.0
    expiries: tuple[dt.date, ...] = ()
    moneyness: tuple[float, ...] = (0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2)
    expiry_time_utc: dt.time = dt.time(21, 0)

    def __post_init__(self) -> None:
        # Messages start with the field name, as in risk.params, so config errors can point at it.
        def finite(name: str) -> float:
            value = getattr(self, name)
            if not _is_real(value) or not math.isfinite(value):
                raise ValueError(f"{name}: must be a finite number (underlying {self.id!r}), got {value!r}")
            return float(value)

        if not self.id:
            raise ValueError("id: must be non-empty")
        for name in ("spot", "vol"):
            if finite(name) <= 0.0:
                raise ValueError(f"{name}: must be > 0 (underlying {self.id!r})")
        for name in ("rate", "dividend_yield", "jump_mean", "skew"):
            finite(name)
        for name in ("jump_intensity", "jump_std", "vol_mean_reversion", "vol_of_vol", "vol_jump_beta"):
            if finite(name) < 0.0:
                raise ValueError(f"{name}: must be >= 0 (underlying {self.id!r})")
        if not -1.0 <= finite("spot_vol_correlation") <= 1.0:
            raise ValueError(f"spot_vol_correlation: must be in [-1, 1] (underlying {self.id!r})")
        if not 0.0 < finite("vol_floor") < finite("vol_cap") <= MAX_VOL:
            raise ValueError(f"vol_floor, vol_cap: need 0 < vol_floor < vol_cap <= {MAX_VOL:g}"
                             f" (underlying {self.id!r})")
        for name in ("atm_vol", "vol_long_run"):
            if getattr(self, name) is not None and not self.vol_floor <= finite(name) <= self.vol_cap:
                raise ValueError(f"{name}: must be within [vol_floor, vol_cap] (underlying {self.id!r})")
        if any(not _is_real(m) or not math.isfinite(m) or m <= 0.0 for m in self.moneyness):
            raise ValueError(f"moneyness: every K/F must be finite and > 0 (underlying {self.id!r})")
        if any(b <= a for a, b in zip(self.moneyness, self.moneyness[1:])):
            raise ValueError(f"moneyness: must be strictly ascending (underlying {self.id!r})")
        if len(set(self.expiries)) != len(self.expiries):
            raise ValueError(f"expiries: duplicate date (underlying {self.id!r})")


class GbmMarket:
    """Simulated market: GBM with jumps per underlying and a moving vol surface.

    Log price per step of dt years: ``(-vol^2/2 - lambda k) dt + vol sqrt(dt) Z + J``,
    Z correlated across underlyings by ``correlation`` (identity if None), J the sum
    of N ~ Poisson(lambda dt) normal log jumps, k = E[e^J1] - 1: the compensator
    makes the price a martingale (drift 0 in price).

    ATM vol: log vol is Ornstein-Uhlenbeck toward ``vol_long_run`` (centred so that
    the long-run *mean vol*, not its log, is ``vol_long_run``), exact discretisation,
    plus ``vol_jump_beta`` x |J| when J < 0; clamped to [vol_floor, vol_cap]. Surface
    points: vol = clamp(atm + skew ln(K/F) / sqrt(T)) at K = F x moneyness for every
    configured expiry still alive, F = S e^{(r-q)T}.

    Deterministic for a seed (numpy PCG64; every step draws the same random numbers
    whatever the parameters, so a path with jumps off shares its diffusion with one
    with jumps on). Wall-clock independent: time starts at ``start_ns`` (wall-clock
    ns since the epoch, the ticks' event time) and advances by ``dt_s`` per step.
    """

    def __init__(self, underlyings: Sequence[GbmUnderlying], *, seed: int, start_ns: int,
                 correlation: Sequence[Sequence[float]] | np.ndarray | None = None) -> None:
        if not underlyings:
            raise ValueError("underlyings: at least one is needed")
        ids = [u.id for u in underlyings]
        if len(set(ids)) != len(ids):
            raise ValueError(f"underlyings: duplicate id in {ids}")
        if not _is_int(start_ns) or start_ns < 0:
            raise ValueError(f"start_ns: must be an integer >= 0, got {start_ns!r}")
        n = len(underlyings)
        self.specs = tuple(underlyings)
        corr = np.eye(n) if correlation is None else np.array(correlation, dtype=float)
        if corr.shape != (n, n):
            raise ValueError(f"correlation: must be {n}x{n} (one row per underlying), got shape {corr.shape}")
        if not np.all(np.isfinite(corr)) or not np.allclose(corr, corr.T, atol=1e-12, rtol=0.0):
            raise ValueError("correlation: must be finite and symmetric")
        if not np.allclose(np.diag(corr), 1.0, atol=1e-12, rtol=0.0) or np.any(np.abs(corr) > 1.0):
            raise ValueError("correlation: diagonal must be 1 and every entry in [-1, 1]")
        try:
            self._chol = np.linalg.cholesky(corr)
        except np.linalg.LinAlgError:
            raise ValueError("correlation: not positive definite") from None
        self.correlation = corr
        self._rng = np.random.Generator(np.random.PCG64(seed))
        f = lambda name: np.array([float(getattr(u, name)) for u in underlyings])  # noqa: E731
        self._vol, self._lam = f("vol"), f("jump_intensity")
        self._jm, self._js = f("jump_mean"), f("jump_std")
        self._rate, self._div = f("rate"), f("dividend_yield")
        self._kappa, self._eta = f("vol_mean_reversion"), f("vol_of_vol")
        self._rho, self._beta = f("spot_vol_correlation"), f("vol_jump_beta")
        self._floor, self._cap = f("vol_floor"), f("vol_cap")
        atm0 = np.array([u.atm_vol if u.atm_vol is not None else min(max(u.vol, u.vol_floor), u.vol_cap)
                         for u in underlyings])
        theta = np.array([u.vol_long_run if u.vol_long_run is not None else a for u, a in zip(underlyings, atm0)])
        # Stationary log-vol variance is eta^2/(2 kappa); E[e^x] = e^{mu + var/2}.
        with np.errstate(divide="ignore", invalid="ignore"):
            half_var = np.where(self._kappa > 0, self._eta ** 2 / (4.0 * self._kappa), 0.0)
        self._log_theta = np.log(theta) - half_var
        self._comp = self._lam * (np.exp(self._jm + 0.5 * self._js ** 2) - 1.0)
        self._log_s = np.log(f("spot"))
        self._log_atm = np.log(atm0)
        self._now_ns = int(start_ns)
        self._seq = 0
        self._jumps = np.zeros(n, dtype=np.int64)
        self._expiry_ns = [[(e, _to_us(dt.datetime.combine(e, u.expiry_time_utc.replace(tzinfo=None),
                                                             tzinfo=dt.timezone.utc)) * 1000)
                            for e in sorted(u.expiries)] for u in underlyings]
        self._log_m = [np.log(np.array(u.moneyness, dtype=float)) for u in underlyings]

    @property
    def now_ns(self) -> int:
        """Simulated wall-clock time, ns since the epoch."""
        return self._now_ns

    @property
    def prices(self) -> dict[str, float]:
        """Current price per underlying, currency per unit."""
        return {u.id: float(x) for u, x in zip(self.specs, np.exp(self._log_s))}

    @property
    def atm_vols(self) -> dict[str, float]:
        """Current ATM implied vol per underlying, fraction per year."""
        return {u.id: float(x) for u, x in zip(self.specs, np.exp(self._log_atm))}

    @property
    def jump_counts(self) -> dict[str, int]:
        """Number of price jumps so far per underlying."""
        return {u.id: int(c) for u, c in zip(self.specs, self._jumps)}

    def step(self, dt_s: float) -> list[Tick]:
        """Advance ``dt_s`` seconds (> 0) and return one tick per underlying, in
        configuration order, stamped with the new time and consecutive seq numbers."""
        if not _is_real(dt_s) or not math.isfinite(dt_s) or dt_s <= 0.0:
            raise ValueError(f"dt_s: must be finite and > 0 seconds, got {dt_s!r}")
        n = len(self.specs)
        dt_y = dt_s / SECONDS_PER_YEAR
        rng = self._rng
        z = self._chol @ rng.standard_normal(n)
        z_indep = rng.standard_normal(n)
        n_jumps = rng.poisson(self._lam * dt_y)
        z_jump = rng.standard_normal(n)
        jump = n_jumps * self._jm + np.sqrt(n_jumps) * self._js * z_jump
        self._jumps += n_jumps
        self._log_s += (-0.5 * self._vol ** 2 - self._comp) * dt_y + self._vol * math.sqrt(dt_y) * z + jump
        # Exact OU step in log vol; kappa = 0 degenerates to a random walk.
        decay = np.exp(-self._kappa * dt_y)
        with np.errstate(divide="ignore", invalid="ignore"):
            sd = np.where(self._kappa > 0, self._eta * np.sqrt((1.0 - decay ** 2) / (2.0 * self._kappa)),
                          self._eta * math.sqrt(dt_y))
        z_vol = self._rho * z + np.sqrt(1.0 - self._rho ** 2) * z_indep
        x = self._log_theta + (self._log_atm - self._log_theta) * decay + sd * z_vol
        x += self._beta * np.maximum(-jump, 0.0)  # vol spikes on a crash
        self._log_atm = np.clip(x, np.log(self._floor), np.log(self._cap))
        self._now_ns += int(round(dt_s * 1e9))
        return [self._tick(i) for i in range(n)]

    def _tick(self, i: int) -> Tick:
        spec = self.specs[i]
        spot = float(math.exp(self._log_s[i]))
        atm = float(math.exp(self._log_atm[i]))
        points: list[VolPoint] = []
        for expiry, moment_ns in self._expiry_ns[i]:
            t = (moment_ns - self._now_ns) / 1e9 / SECONDS_PER_YEAR
            if t <= 0.0:
                continue
            fwd = spot * math.exp((spec.rate - spec.dividend_yield) * t)
            vols = np.clip(atm + spec.skew * self._log_m[i] / math.sqrt(t), spec.vol_floor, spec.vol_cap)
            iso = expiry.isoformat()
            points.extend(VolPoint(expiry=iso, strike=float(fwd * m), vol=float(v))
                          for m, v in zip(spec.moneyness, vols))
        self._seq += 1
        # Rates are sent on every tick so a subscriber that joins late has full state.
        return Tick(underlying=spec.id, price=spot, rate=spec.rate, dividend_yield=spec.dividend_yield,
                    atm_vol=atm, vol_points=tuple(points), event_time_ns=self._now_ns, seq=self._seq)
