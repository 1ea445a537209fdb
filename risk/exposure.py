"""Linear risk aggregates of a set of positions, and initial margin from them.

An :class:`Exposure` is what margin needs to know about a set of positions, kept
as sums that a fill updates in O(S): the scenario P&L vector (all underlyings'
scenarios concatenated), the historical-scenario P&L vector, the dollar delta
and dollar gamma per underlying, and the short-option notional per underlying.
Initial margin is then computed from the exposure alone; a what-if of one more
contract changes one underlying's segment, so it is O(S_u).
"""

from __future__ import annotations

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
    sum over short option contracts of underlying price x multiplier.
    ``quantity``: signed contracts per table row.
    """

    __slots__ = ("scenario", "historical", "dollar_delta", "dollar_gamma", "short_notional", "quantity")

    def __init__(self, model: RiskModel) -> None:
        self.scenario = np.zeros(model.n_scenarios)
        self.historical = np.zeros(model.n_history)
        self.dollar_delta = np.zeros(model.n_underlyings)
        self.dollar_gamma = np.zeros(model.n_underlyings)
        self.short_notional = np.zeros(model.n_underlyings)
        self.quantity = np.zeros(len(model.table))

    def copy(self) -> "Exposure":
        new = Exposure.__new__(Exposure)
        for name in self.__slots__:
            setattr(new, name, getattr(self, name).copy())
        return new

    def add(self, model: RiskModel, row: int, quantity: float) -> None:
        """Add ``quantity`` contracts (signed) of table ``row``: O(S_u + D)."""
        u = model.block_of[row]
        seg = model.segments[u]
        self.scenario[seg] += quantity * model.scenario_rows[row]
        if model.historical_rows is not None:
            self.historical += quantity * model.historical_rows[row]
        self.dollar_delta[u] += quantity * model.valuation.dollar_delta[row]
        self.dollar_gamma[u] += quantity * model.valuation.dollar_gamma[row]
        before = self.quantity[row]
        after = before + quantity
        self.quantity[row] = after
        self.short_notional[u] += (max(-after, 0.0) - max(-before, 0.0)) * model.option_notional[row]

    def rebuild(self, model: RiskModel) -> None:
        """Recompute every sum from ``quantity`` (after new risk arrays): O(n S)."""
        q = self.quantity
        self.scenario = np.zeros(model.n_scenarios)
        for block, seg in zip(model.blocks, model.segments):
            self.scenario[seg] = q[block.rows] @ block.arrays
        self.historical = q @ model.historical_rows if model.historical_rows is not None else np.zeros(0)
        u = model.table.underlying
        n_u = model.n_underlyings
        self.dollar_delta = np.bincount(u, q * model.valuation.dollar_delta, minlength=n_u)
        self.dollar_gamma = np.bincount(u, q * model.valuation.dollar_gamma, minlength=n_u)
        self.short_notional = np.bincount(u, np.maximum(-q, 0.0) * model.option_notional, minlength=n_u)


class MethodMargins(msgspec.Struct, frozen=True):
    """Initial margin by method (currency; None where the profile does not use it)."""

    scenario: float | None
    parametric_var: float | None
    historical_var: float | None
    historical_es: float | None
    short_option_minimum: float


def scan_risk(segment: np.ndarray) -> float:
    """Worst loss of one underlying's scenario P&L segment (currency, >= 0)."""
    worst = float(segment.min()) if segment.size else 0.0
    return -worst if worst < 0.0 else 0.0


def scenario_terms(model: RiskModel, exposure: Exposure, profile: MarginProfile) -> np.ndarray:
    """Per-underlying scenario margin: max(scan risk, short-option minimum), currency."""
    scans = np.array([scan_risk(exposure.scenario[seg]) for seg in model.segments])
    return np.maximum(scans, profile.short_option_minimum * exposure.short_notional)


def parametric_var(model: RiskModel, exposure: Exposure) -> float:
    """Parametric VaR (currency) of the exposure with the model's covariance."""
    if model.covariance is None:
        raise RiskModelError("parametric_var needs a price history (none configured)")
    var = model.params.var
    if var.method == "delta_normal":
        return delta_normal_var(exposure.dollar_delta, model.covariance_psd, var.confidence).var
    return delta_gamma_var(exposure.dollar_delta, exposure.dollar_gamma, model.covariance_psd, var.confidence).var


def method_margins(model: RiskModel, exposure: Exposure, profile: MarginProfile) -> MethodMargins:
    """Every margin method the profile selects, evaluated on ``exposure``."""
    methods = profile.methods
    som = float(profile.short_option_minimum * exposure.short_notional.sum())
    scen = float(scenario_terms(model, exposure, profile).sum()) if "scenario" in methods else None
    pvar = float(parametric_var(model, exposure)) if "parametric_var" in methods else None
    hvar = hes = None
    if "historical_var" in methods:
        if model.historical_rows is None:
            raise RiskModelError("historical_var needs a price history (none configured)")
        hvar, hes = (float(x) for x in var_es_from_pnl(exposure.historical, model.params.var.confidence))
    return MethodMargins(scen, pvar, hvar, hes, som)


def initial_margin(m: MethodMargins) -> float:
    """IM = the largest selected method, floored by the short-option minimum (currency)."""
    values = [v for v in (m.scenario, m.parametric_var, m.historical_var) if v is not None]
    return max(values + [m.short_option_minimum])
