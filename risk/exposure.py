"""Linear risk aggregates of positions and of open orders, and initial margin from them.

An :class:`Exposure` is what margin needs to know about a set of positions, kept
as sums that a fill updates in O(S): the scenario P&L vector (all underlyings'
scenarios concatenated), the historical-scenario P&L vector, the dollar delta
and dollar gamma per underlying, and the short-option notional per underlying.

A :class:`Reservation` is what the open orders add in the worst case. Each open
order may fill or not, independently and partially, so for every scenario the
worst outcome is that exactly the orders losing in that scenario fill: the
reservation keeps, per scenario, the sum of the negative parts of the orders'
P&L, ``sum_i min(0, q_i U_i[s])``. Scan risk of positions + reservation is then
the exact worst case over every subset of open orders filling, still O(S) per
order. Historical scenarios are treated the same way; parametric VaR adds each
order's stand-alone VaR (VaR is subadditive, so this bounds any subset).
"""

from __future__ import annotations

import math

import msgspec
import numpy as np

from risk.model import RiskModel, RiskModelError
from risk.params import MarginProfile
from risk.var import delta_gamma_var, delta_normal_var, var_es_from_pnl


class Exposure:
    """Quantity-weighted sums of instrument rows for one set of positions.

    ``scenario``: (S_total,) P&L per scenario, currency. ``historical``: (D,) P&L
    per historical day, currency. ``dollar_delta`` / ``dollar_gamma``: (U,)
    currency per 1.00 relative move (squared for gamma). ``short_notional``: (U,)
    sum over short option contracts of the option's underlying price (the future's
    for options on futures) x multiplier; ``short_list`` the same as Python floats
    (read back after each change, so bit-identical: the per-order paths add to it
    without a NumPy scalar). ``quantity``: signed contracts per row.
    """

    __slots__ = ("scenario", "historical", "dollar_delta", "dollar_gamma", "short_notional", "short_list",
                 "quantity", "_open_rows", "_track_history", "_pvar")

    def __init__(self, model: RiskModel, *, track_history: bool = True) -> None:
        """``track_history``: keep ``historical`` (O(D) per fill); off for profiles
        without historical VaR, whose ``historical`` then stays zeros."""
        self._track_history = track_history
        self.scenario = np.zeros(model.n_scenarios)
        self.historical = np.zeros(model.n_history)
        self.dollar_delta = np.zeros(model.n_underlyings)
        self.dollar_gamma = np.zeros(model.n_underlyings)
        self.short_notional = np.zeros(model.n_underlyings)
        self.short_list: list[float] = [0.0] * model.n_underlyings
        self.quantity = np.zeros(len(model.table))
        #: Rows with a non-zero quantity, per underlying: a flat underlying's sums are
        #: reset to exact zeros, so rounding from many fills never outlives a position.
        self._open_rows: list[set[int]] = [set() for _ in range(model.n_underlyings)]
        #: (model, parametric VaR) of the current sums: a what-if needs it twice, and
        #: it only changes with a fill or new risk arrays.
        self._pvar: tuple[RiskModel, float] | None = None

    def parametric_var(self, model: RiskModel) -> float:
        """Parametric VaR of these positions with ``model``'s covariance (currency), cached."""
        cached = self._pvar
        if cached is not None and cached[0] is model:
            return cached[1]
        value = parametric_var(model, self.dollar_delta, self.dollar_gamma)
        self._pvar = (model, value)
        return value

    def add(self, model: RiskModel, row: int, quantity: float) -> None:
        """Add ``quantity`` contracts (signed) of table ``row``: O(S_u + D)."""
        self._pvar = None
        u = model.block_list[row]
        seg = model.segments[u]
        before = self.quantity[row]
        after = before + quantity
        if abs(after) < QUANTITY_EPSILON:
            after = 0.0
        self.quantity[row] = after
        open_rows = self._open_rows[u]
        if after == 0.0:
            open_rows.discard(row)
        else:
            open_rows.add(row)
        if not open_rows:
            self.scenario[seg] = 0.0
            self.dollar_delta[u] = self.dollar_gamma[u] = self.short_notional[u] = 0.0
        else:
            self.scenario[seg] += quantity * model.scenario_rows[row]
            self.dollar_delta[u] += quantity * model.valuation.dollar_delta[row]
            self.dollar_gamma[u] += quantity * model.valuation.dollar_gamma[row]
            self.short_notional[u] += (max(-after, 0.0) - max(-before, 0.0)) * model.option_notional[row]
        self.short_list[u] = float(self.short_notional[u])
        if self._track_history and model.historical_rows is not None:
            if any(self._open_rows):
                self.historical += quantity * model.historical_rows[row]
            else:
                self.historical[:] = 0.0

    def rebuild(self, model: RiskModel) -> None:
        """Recompute every sum from ``quantity`` (after new risk arrays): O(n S)."""
        self._pvar = None
        q = self.quantity
        self.scenario = np.zeros(model.n_scenarios)
        for block, seg in zip(model.blocks, model.segments):
            self.scenario[seg] = q[block.rows] @ block.arrays
        self.historical = (q @ model.historical_rows if self._track_history and model.historical_rows is not None
                           else np.zeros(model.n_history))
        u = model.table.underlying
        n_u = model.n_underlyings
        self.dollar_delta = np.bincount(u, q * model.valuation.dollar_delta, minlength=n_u)
        self.dollar_gamma = np.bincount(u, q * model.valuation.dollar_gamma, minlength=n_u)
        self.short_notional = np.bincount(u, np.maximum(-q, 0.0) * model.option_notional, minlength=n_u)
        self.short_list = self.short_notional.tolist()


#: Quantities closer to zero than this (contracts) are zero: fractional lots
#: summed in floating point must still close a position exactly.
QUANTITY_EPSILON = 1e-9


class Reservation:
    """Worst-case contribution of open orders (see the module docstring).

    ``scenario`` (S_total,) and ``historical`` (D,): sums of min(0, q x row), so
    never positive. ``short_notional``: option notional of open sell orders per
    underlying (as if they all opened new shorts), a list of U Python floats (the
    same IEEE sums as a NumPy vector, without a NumPy scalar per order). ``var``: sum of the orders' stand-alone
    parametric VaR (currency), filled in by the account when its profile uses it.
    """

    __slots__ = ("scenario", "historical", "short_notional", "var", "_track_history")

    def __init__(self, model: RiskModel, *, track_history: bool = True) -> None:
        self._track_history = track_history
        self.scenario = np.zeros(model.n_scenarios)
        self.historical = np.zeros(model.n_history)
        self.short_notional: list[float] = [0.0] * model.n_underlyings
        self.var = 0.0

    def copy(self) -> "Reservation":
        new = Reservation.__new__(Reservation)
        new.scenario, new.historical = self.scenario.copy(), self.historical.copy()
        new.short_notional, new.var = list(self.short_notional), self.var
        new._track_history = self._track_history
        return new

    def add(self, model: RiskModel, row: int, quantity: float, sign: float = 1.0) -> None:
        """Add (sign=+1) or remove (sign=-1) an order of ``quantity`` contracts of ``row``."""
        u = model.block_list[row]
        seg = model.segments[u]
        parts = model.scenario_rows_loss_if_bought if quantity > 0 else model.scenario_rows_loss_if_sold
        self.scenario[seg] += (sign * quantity) * parts[row]
        if self._track_history and model.historical_rows is not None:
            days = model.historical_loss_if_bought if quantity > 0 else model.historical_loss_if_sold
            self.historical += (sign * quantity) * days[row]  # type: ignore[index]
        if quantity < 0:
            self.short_notional[u] += sign * -quantity * float(model.option_notional[row])


class MethodMargins(msgspec.Struct, frozen=True):
    """Initial margin by method (currency; None where the profile does not use it)."""

    scenario: float | None
    parametric_var: float | None
    historical_var: float | None
    historical_es: float | None
    short_option_minimum: float


def scan_risk(segment: np.ndarray) -> float:
    """Worst loss of one underlying's scenario P&L segment (currency, >= 0).

    Raises RiskModelError on NaN: a P&L that cannot be computed must never read as
    "no risk".
    """
    if not segment.size:
        return 0.0
    # The value at argmin is the minimum (a NaN if any: argmin stops at the first),
    # in ~1/3 of min()'s time (no reduction machinery); a zero's sign cannot matter below.
    worst = segment.item(segment.argmin())
    if worst != worst:
        raise RiskModelError("scenario P&L is NaN: a price, vol or scenario produced no value")
    return -worst if worst < 0.0 else 0.0


def scenario_term(model: RiskModel, profile: MarginProfile, exposure: Exposure, u: int,
                  reserve: Reservation | None = None) -> float:
    """One underlying's scenario margin: max(scan risk, short-option minimum), currency."""
    seg = model.segments[u]
    pnl = exposure.scenario[seg] if reserve is None else exposure.scenario[seg] + reserve.scenario[seg]
    short = exposure.short_list[u] + (0.0 if reserve is None else reserve.short_notional[u])
    return max(scan_risk(pnl), profile.short_option_minimum * float(short))


def parametric_var(model: RiskModel, dollar_delta: np.ndarray, dollar_gamma: np.ndarray) -> float:
    """Parametric VaR (currency) of first- and second-order exposures with the model's covariance."""
    if model.covariance_psd is None:
        raise RiskModelError("parametric_var needs a price history (none configured)")
    var = model.params.var
    if var.method == "delta_normal":
        return float(delta_normal_var(dollar_delta, model.covariance_psd, var.confidence).var)
    return float(delta_gamma_var(dollar_delta, dollar_gamma, model.covariance_psd, var.confidence).var)


def order_var(model: RiskModel, row: int, quantity: float) -> float:
    """Stand-alone parametric VaR of an order of ``quantity`` signed contracts of ``row``
    (currency): |quantity| x one contract's on the order's side. VaR is positively
    homogeneous (the P&L of q > 0 contracts is q times one contract's, and every
    cumulant-based quantile scales with it), so one figure per (row, side) serves every
    order; kept on the model (``unit_order_var``), shared by the shard's accounts."""
    key = row if quantity > 0 else -1 - row
    unit = model.unit_order_var.get(key)
    if unit is None:
        side = 1.0 if quantity > 0 else -1.0
        dd, dg = np.zeros(model.n_underlyings), np.zeros(model.n_underlyings)
        u = model.block_list[row]
        dd[u] = side * model.valuation.dollar_delta[row]
        dg[u] = side * model.valuation.dollar_gamma[row]
        unit = model.unit_order_var[key] = parametric_var(model, dd, dg)
    return abs(quantity) * unit


def method_margins(model: RiskModel, exposure: Exposure, profile: MarginProfile,
                   reserve: Reservation | None = None) -> MethodMargins:
    """Every margin method the profile selects, for the positions (plus open orders, worst case)."""
    methods = profile.methods
    short = exposure.short_notional if reserve is None else exposure.short_notional + reserve.short_notional
    som = float(profile.short_option_minimum * short.sum())
    scen = pvar = hvar = hes = None
    if "scenario" in methods:
        scen = math.fsum(scenario_term(model, profile, exposure, u, reserve) for u in range(model.n_underlyings))
    if "parametric_var" in methods:
        pvar = exposure.parametric_var(model)
        if reserve is not None:
            pvar += reserve.var
    if "historical_var" in methods:
        if model.historical_rows is None:
            raise RiskModelError("historical_var needs a price history (none configured)")
        pnl = exposure.historical if reserve is None else exposure.historical + reserve.historical
        hvar, hes = (float(x) for x in var_es_from_pnl(pnl, model.params.var.confidence))
    return MethodMargins(scen, pvar, hvar, hes, som)


def initial_margin(m: MethodMargins) -> float:
    """IM = the largest selected method, floored by the short-option minimum (currency)."""
    values = [v for v in (m.scenario, m.parametric_var, m.historical_var) if v is not None]
    return max(values + [m.short_option_minimum])
