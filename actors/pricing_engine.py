"""Ticks in, risk models out: the pricing actor's state, without sockets or Ray.

Ticks only update :class:`actors.market_data.MarketState` and mark their
underlying dirty; :meth:`PricingEngine.reprice` then revalues, in one pass, the
underlyings ticked since the last call (so a burst of ticks costs one
revaluation), reusing the other underlyings' risk arrays; every
``full_interval_s`` it revalues everything (time decay moves all of them).

Between revaluations the fast path estimates each instrument's mark move from
the last full valuation's Greeks (delta-gamma-vega: dV = delta dS + gamma dS^2 / 2
+ vega dvol, per unit). At each full revaluation the estimate is compared with
the exact marks, and the error is kept for export (``fast_path_error``).

``greeks``: the FPGA overlay's Greeks path (actors.fpga_greeks.FpgaGreeks, only
when an overlay is open): after each revaluation it puts the options' Greeks
through the overlay's Greeks core (they then feed the fast path) or compares them.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any, Callable

import msgspec
import numpy as np

from actors.market_data import MarketState, Tick
from risk.instruments import InstrumentTable, pricing_inputs
from risk.model import RiskModel
from risk.params import MarginParams


class FastPathError(msgspec.Struct):
    """Delta-gamma-vega mark estimate vs the full revaluation that followed it.

    ``max_abs``: largest |estimate - exact| per unit (currency); ``max_rel``: the
    same relative to the instrument's underlying price (fraction); ``checks``:
    full revaluations compared so far.
    """

    max_abs: float = 0.0
    max_rel: float = 0.0
    last_max_abs: float = 0.0
    checks: int = 0


class PricingEngine:
    """Market state and the latest risk model for a set of underlyings."""

    def __init__(self, table: InstrumentTable, params: MarginParams, state: MarketState, *,
                 history_returns: np.ndarray | None = None, full_interval_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, greeks: Any = None) -> None:
        self.table = table
        self.greeks = greeks
        self.params = params
        self.state = state
        self.history_returns = history_returns
        self.full_interval_s = full_interval_s
        self._clock = clock
        self.model: RiskModel | None = None
        self.version = 0
        self.dirty: set[str] = set()
        self.malformed = 0
        self._last_full = -float("inf")
        self.fast_path_error = FastPathError()

    def on_tick(self, tick: Tick) -> str | None:
        """Apply a tick; returns an error message for a malformed one (it is dropped)."""
        try:
            self.dirty |= self.state.apply(tick)
        except ValueError as exc:
            self.malformed += 1
            return str(exc)
        return None

    def full_due(self) -> bool:
        """Is a full revaluation due (none yet, or the full interval elapsed)?"""
        return self.model is None or self._clock() - self._last_full >= self.full_interval_s

    def reprice(self, as_of: dt.datetime) -> RiskModel | None:
        """Revalue what changed (or everything when the full interval elapsed); None if nothing to do."""
        now = self._clock()
        full = self.model is None or now - self._last_full >= self.full_interval_s
        if not full and not self.dirty:
            return None
        market = self.state.snapshot(as_of)
        if full:
            estimate = self.fast_marks(market) if self.model is not None else None
            model = RiskModel(self.table, market, self.params, self.history_returns)
            self._last_full = now
            if estimate is not None:
                self._record_error(estimate, model)
        else:
            changed = {self.table.underlying_index[u] for u in self.dirty}
            model = RiskModel(self.table, market, self.params, self.history_returns, previous=self.model,
                              changed=changed)
        if self.greeks is not None:
            self.greeks.apply(model)
        self.dirty.clear()
        self.model = model
        self.version += 1
        return model

    def fast_marks(self, market: object) -> np.ndarray:
        """Delta-gamma-vega estimate of every mark at ``market`` from the current model's Greeks (per unit)."""
        assert self.model is not None
        base = self.model
        now = pricing_inputs(self.table, market)  # type: ignore[arg-type]
        ds = now.s - base.inputs.s
        dvol = np.where(self.table.is_option, np.nan_to_num(now.vol - base.inputs.vol), 0.0)
        v = base.valuation
        return v.mark + v.delta * ds + 0.5 * v.gamma * ds * ds + v.vega * dvol

    def _record_error(self, estimate: np.ndarray, exact: RiskModel) -> None:
        diff = np.abs(estimate - exact.valuation.mark)
        worst = float(diff.max()) if diff.size else 0.0
        rel = float((diff / exact.inputs.s).max()) if diff.size else 0.0
        e = self.fast_path_error
        e.last_max_abs = worst
        e.max_abs = max(e.max_abs, worst)
        e.max_rel = max(e.max_rel, rel)
        e.checks += 1
