"""One account's positions, cash, open-order reservations and margin.

Margin with open orders is the worst case over every subset of them filling
(see risk.exposure.Reservation): an order reserves margin until it is filled,
cancelled, rejected or expires, and no open order ever gets hedge credit from
another. A fill, an order and a what-if are O(S_u); a what-if equals reserving
the order and recomputing from scratch (tests check this against a brute force
over all subsets).

The pre-trade hook asks ``what_if`` then ``reserve`` of the same order: the what-if
keeps its arrays (``_trial``) and the reservation reuses them, the same operations on
the same operands, so the figures are bit-identical to computing them afresh (tests/
test_account_fastpath.py checks them against the previous implementation). VaR
profiles' what-if is in risk.account_whatif, the reports in risk.account_report.

Money is in the account currency; quantities are signed contracts (buy > 0).
Equity = cash + sum of quantity x (mark - average price) x multiplier: ``cash``
is collateral plus realized P&L, with the traded cost of open positions carried
in their average price.
"""

from __future__ import annotations

import math
from typing import Iterator

import msgspec
import numpy as np

from risk.account_report import margin_report, summary_of, top_driver_of
from risk.account_whatif import ExactSum, VarTrial, model_lists, var_what_if
from risk.errors import RiskModelError
from risk.exposure import (QUANTITY_EPSILON, Exposure, MethodMargins, Reservation, initial_margin, method_margins,
                           order_var, scan_risk, scenario_term)
from risk.model import RiskModel
from risk.params import MarginProfile
from risk.tiers import Tier

_NAN = math.nan


class Position(msgspec.Struct):
    """Signed quantity (contracts) and average traded price (currency per unit)."""

    quantity: float = 0.0
    average_price: float = 0.0


class OpenOrder(msgspec.Struct, frozen=True):
    """An accepted order's reservation: signed open quantity, limit price, and its
    stand-alone parametric VaR (currency; 0 when the profile does not use VaR)."""

    order_id: str
    row: int
    quantity: float
    limit_price: float
    var: float = 0.0


class Contributor(msgspec.Struct, frozen=True):
    """A position's P&L in the binding scenario (currency; negative = adds to the loss)."""

    instrument: str
    quantity: float
    scenario_pnl: float


class UnderlyingMargin(msgspec.Struct, frozen=True):
    """Scan risk of one underlying: worst loss, short-option minimum, and the scenario ("" if no loss)."""

    underlying: str
    scan_risk: float
    short_option_minimum: float
    requirement: float
    worst_scenario: str


class AccountMargin(msgspec.Struct, frozen=True):
    """An account's margin at one snapshot (currency unless said).

    ``initial_margin_with_orders``: IM counting open orders on their worst side.
    ``margin_ratio``: MM / equity, a fraction. ``binding_*``: the underlying and
    scenario that drive scenario margin ("" when nothing loses); ``top_contributors``:
    the positions' P&L in that scenario, worst first (gains included: hedges offset
    losses, and all of them together sum to minus the scan risk).
    """

    account: str
    equity: float
    cash: float
    unrealized_pnl: float
    initial_margin: float
    maintenance_margin: float
    initial_margin_with_orders: float
    margin_ratio: float
    methods: MethodMargins
    underlyings: tuple[UnderlyingMargin, ...]
    binding_underlying: str
    binding_scenario: str
    top_contributors: tuple[Contributor, ...]


class MarginSummary(msgspec.Struct, frozen=True):
    """The figures a fill changes, without the driver breakdown of :class:`AccountMargin`.

    Currency unless said; ``margin_ratio`` MM / equity (fraction). ``binding_*`` as
    in AccountMargin ("" when nothing loses). Cheap enough for every fill: O(U S_u)
    plus one dot product over the instrument table.
    """

    equity: float
    initial_margin: float
    maintenance_margin: float
    initial_margin_with_orders: float
    margin_ratio: float
    binding_underlying: str
    binding_scenario: str


class WhatIf(msgspec.Struct, frozen=True):
    """Margin effect of one order as if filled (currency).

    ``initial_margin_before`` / ``_after`` count open orders on their worst side;
    ``marginal_im`` = after - before. ``binding_scenario`` is the worst scenario
    index in the order's underlying after the order (-1 when the profile has no
    scenario method).
    """

    initial_margin_before: float
    initial_margin_after: float
    marginal_im: float
    binding_scenario: int


class Account:
    """Positions, cash, open-order reservations and cached margin terms of one account."""

    def __init__(self, account_id: str, profile: MarginProfile, model: RiskModel, cash: float = 0.0) -> None:
        self.id = account_id
        self.profile = profile
        self.model = model
        self.cash = float(cash)
        self.positions: dict[int, Position] = {}
        self.orders: dict[str, OpenOrder] = {}
        #: table row -> [open buy contracts (>= 0), open sell contracts (<= 0)] over
        #: ``orders``, kept with them so a position limit reads one row, not every order.
        self.open_by_row: dict[int, list[float]] = {}
        self.tier = Tier.NORMAL
        self._uses_history = "historical_var" in profile.methods
        self._exposure = Exposure(model, track_history=self._uses_history)
        self._reserve = Reservation(model, track_history=self._uses_history)
        self._scenario_only = profile.methods == ("scenario",)
        self._uses_var = "parametric_var" in profile.methods
        # Per-underlying scenario terms, positions alone and with orders (Python
        # floats: summing a short list is exact to recompute and cheaper than NumPy).
        self._terms_held = [0.0] * model.n_underlyings
        self._terms_all = [0.0] * model.n_underlyings
        #: Sum over positions of quantity x average price x multiplier (currency), kept
        #: per fill and recomputed exactly at each rebind, so equity needs no loop.
        self._cost = 0.0
        #: Cache of the VaR profiles' what-if inputs (see initial_margin_with_orders).
        self._im_with_orders: float | None = None
        self._im_held: float | None = None
        #: (model, row, quantity, quantity x its worst-case scenario row, VarTrial or None)
        #: of the last what-if: reserving that very order reuses them (_refresh_terms clears it).
        self._trial: tuple[RiskModel, int, float, np.ndarray, VarTrial | None] | None = None
        #: The open orders' stand-alone VaRs (currency), summed exactly.
        self._var_sum = ExactSum()
        #: (model, unrealized P&L) as of the last fill: equity changes only with a fill,
        #: cash or the model, and a check asks for it every time.
        self._upl: tuple[RiskModel, float] | None = None
        self._bind_views(model)

    # ----- state changes -------------------------------------------------
    def apply_fill(self, row: int, quantity: float, price: float, order_id: str | None = None) -> None:
        """Book a fill of ``quantity`` contracts (signed) at ``price`` (per unit).

        Realized P&L of a reduction goes to cash at the average price. If the
        fill belongs to an open order, that order's reservation shrinks by the
        filled quantity. A fill that contradicts its order (another instrument,
        the other side) raises ValueError and changes nothing.
        """
        order = self.orders.get(order_id) if order_id is not None else None
        if order is not None and (order.row != row or (order.quantity > 0) != (quantity > 0)):
            raise ValueError(f"fill of {quantity:g} x row {row} does not match open order {order_id!r}"
                             f" ({order.quantity:g} x row {order.row})")
        mult = float(self.model.table.multiplier[row])  # a Python float: cash must stay one
        pos = self.positions.setdefault(row, Position())
        self._cost -= pos.quantity * pos.average_price * mult
        q0, q1 = pos.quantity, pos.quantity + quantity
        if abs(q1) < QUANTITY_EPSILON:
            q1 = 0.0
        if q0 == 0.0 or (q0 > 0) == (quantity > 0):
            pos.average_price = (q0 * pos.average_price + quantity * price) / q1 if q1 != 0.0 else 0.0
        else:
            closed = min(abs(quantity), abs(q0)) * math.copysign(1.0, q0)
            self.cash += closed * (price - pos.average_price) * mult
            if q1 == 0.0:
                pos.average_price = 0.0
            elif (q1 > 0) != (q0 > 0):
                pos.average_price = price
        pos.quantity = q1
        self._upl = None
        self._cost += q1 * pos.average_price * mult
        if q1 == 0.0:
            del self.positions[row]
        self._exposure.add(self.model, row, quantity)
        if order is not None:
            filled = math.copysign(min(abs(quantity), abs(order.quantity)), order.quantity)
            self._reserve.add(self.model, row, filled, sign=-1.0)
            self._open_add(row, order.quantity > 0, -filled)
            remaining = order.quantity - filled
            self._var_sum.add(order.var, -1)
            if abs(remaining) < QUANTITY_EPSILON:
                del self.orders[order.order_id]
            else:
                left = OpenOrder(order.order_id, row, remaining, order.limit_price,
                                 order.var * remaining / order.quantity)
                self.orders[order.order_id] = left
                self._var_sum.add(left.var)
            self._refresh_var()
        self._refresh_terms(self.model.block_list[row])

    def reserve(self, order_id: str, row: int, quantity: float, limit_price: float) -> None:
        """Reserve margin for an accepted order (worst case); replaces an existing id."""
        if order_id in self.orders:
            self.release(order_id)
        model = self.model
        trial = self._trial
        if trial is None or trial[0] is not model or trial[1] != row or trial[2] != quantity:
            self._reserve.add(model, row, quantity)
            var = order_var(model, row, quantity) if self._uses_var else 0.0
            self.orders[order_id] = OpenOrder(order_id, row, quantity, limit_price, var)
            self._open_add(row, quantity > 0, quantity)
            self._var_sum.add(var)
            self._refresh_var()
            self._refresh_terms(model.block_list[row], held=False)
            return
        # The what-if of this very order ran on the current state: reuse its arrays.
        # The same operations as Reservation.add and _refresh_terms, on the same operands.
        u = model.block_list[row]
        reserve, var_trial = self._reserve, trial[4]
        self._reserve_views[u] += trial[3]
        if quantity < 0:
            reserve.short_notional[u] += -quantity * self._lists.option_notional[row]
        var = 0.0
        if var_trial is not None:
            var = var_trial.var
            if var_trial.history_loss is not None:
                reserve.historical -= var_trial.history_loss  # = + quantity x the worst-case row
        self.orders[order_id] = OpenOrder(order_id, row, quantity, limit_price, var)
        entry = self.open_by_row.get(row)  # = self._open_add(row, quantity > 0, quantity), inline
        if entry is None:
            entry = self.open_by_row[row] = [0.0, 0.0]
        side = 0 if quantity > 0 else 1
        value = entry[side] + quantity
        entry[side] = 0.0 if abs(value) < QUANTITY_EPSILON else value
        if entry[0] == 0.0 and entry[1] == 0.0:
            del self.open_by_row[row]
        if self._uses_var:
            self._var_sum.add(var)
            reserve.var = var_trial.orders_var  # type: ignore[union-attr]  # the same orders' VaRs, summed
        self._trial = None
        self._short_all[u] = short = self._exposure.short_list[u] + reserve.short_notional[u]
        if var_trial is not None and var_trial.pnl is not None:
            # The what-if summed exposure + (reservation + order): the new combined view.
            self._combined_views[u][...] = var_trial.pnl
            self._terms_all[u] = max(var_trial.scan, self.profile.short_option_minimum * short)
        else:
            self._refresh_all(u, short)
        self._im_with_orders = var_trial.after if var_trial is not None else None

    def release(self, order_id: str) -> bool:
        """Drop an order's reservation (cancelled, rejected, expired). False if unknown."""
        order = self.orders.pop(order_id, None)
        if order is None:
            return False
        self._reserve.add(self.model, order.row, order.quantity, sign=-1.0)
        self._open_add(order.row, order.quantity > 0, -order.quantity)
        self._var_sum.add(order.var, -1)
        self._refresh_var()
        self._refresh_terms(self.model.block_list[order.row], held=False)
        return True

    def open_sides(self, row: int) -> tuple[float, float]:
        """(open buys >= 0, open sells <= 0) of table ``row``, contracts."""
        entry = self.open_by_row.get(row)
        return (entry[0], entry[1]) if entry is not None else (0.0, 0.0)

    def rebind(self, model: RiskModel) -> None:
        """Switch to new risk arrays (after a revaluation) and rebuild every sum: O((n + orders) S)."""
        self.model = model
        self._exposure.rebuild(model)
        mult = model.table.multiplier
        self._cost = math.fsum(p.quantity * p.average_price * float(mult[r]) for r, p in self.positions.items())
        self._reserve = Reservation(model, track_history=self._uses_history)
        self._bind_views(model)  # after both: the views are of their new arrays
        self._var_sum.clear()
        for oid, order in list(self.orders.items()):
            self._reserve.add(model, order.row, order.quantity)
            if self._uses_var:
                order = self.orders[oid] = OpenOrder(oid, order.row, order.quantity, order.limit_price,
                                                     order_var(self.model, order.row, order.quantity))
            self._var_sum.add(order.var)
        self._refresh_var()
        for u in range(model.n_underlyings):
            self._refresh_terms(u)

    # ----- margin ---------------------------------------------------------
    def equity(self) -> tuple[float, float]:
        """(equity, unrealized P&L) at the model's marks, currency."""
        cached = self._upl
        if cached is not None and cached[0] is self.model:
            upl = cached[1]
        else:
            upl = float(self._exposure.quantity @ self.model.unit_value) - self._cost
            self._upl = (self.model, upl)
        return float(self.cash + upl), upl

    def summary(self) -> MarginSummary:
        """Equity, IM, MM, IM with orders, ratio and the binding scenario: the per-fill figures.

        Equal to the same fields of :meth:`margin`, at a fraction of its cost (no
        per-position driver breakdown, no per-method detail).
        """
        return summary_of(self)

    def initial_margin(self) -> float:
        """IM of the positions alone, currency."""
        if self._scenario_only:
            return math.fsum(self._terms_held)
        # VaR profiles: cached until the positions or arrays change (_refresh_terms with
        # held), so summary() of an account without orders computes the methods once.
        if self._im_held is None:
            self._im_held = initial_margin(method_margins(self.model, self._exposure, self.profile))
        return self._im_held

    def initial_margin_with_orders(self) -> float:
        """IM of the positions plus the worst case of the open orders, currency."""
        if not self.orders:
            return self.initial_margin()
        if self._scenario_only:
            return math.fsum(self._terms_all)
        # VaR profiles: O(U^2 + D) per call, and the pre-trade hook asks before every
        # order; every change of positions, orders or arrays clears it (_refresh_terms).
        if self._im_with_orders is None:
            self._im_with_orders = initial_margin(method_margins(self.model, self._exposure, self.profile,
                                                                 self._reserve))
        return self._im_with_orders

    def what_if(self, row: int, quantity: float) -> WhatIf:
        """IM with open orders before and after one more order of ``quantity`` contracts of ``row``.

        O(S_u) for scenario-only profiles (plus O(U^2 + D) with VaR methods), and
        equal to reserving the order and recomputing from scratch.
        """
        model = self.model
        u = model.block_list[row]
        parts = model.scenario_rows_loss_if_bought if quantity > 0 else model.scenario_rows_loss_if_sold
        x = quantity * parts[row]  # = min(0, quantity x risk array); reserve() reuses it
        loss_part = x + self._combined_views[u]
        worst = int(loss_part.argmin())
        if self._scenario_only:
            terms = self._terms_all
            before = math.fsum(terms)
            short = self._short_all[u]
            if quantity < 0:
                short += -quantity * self._lists.option_notional[row]
            loss = -loss_part.item(worst)
            if loss != loss:
                scan_risk(loss_part)  # raises: NaN never passes as "no risk"
            term = max(loss if loss > 0.0 else 0.0, self.profile.short_option_minimum * short)
            after = before - terms[u] + term
            self._trial = (model, row, quantity, x, None)
        else:
            before = self._im_with_orders  # = self.initial_margin_with_orders() when cached
            if before is None or not self.orders:
                before = self.initial_margin_with_orders()
            # Exactly initial_margin(method_margins(...)) of the reservation plus this
            # order (risk.account_whatif), and what reserve() of this very order sums.
            var_trial = var_what_if(self, u, row, quantity, x)
            after = var_trial.after
            self._trial = (model, row, quantity, x, var_trial)
            if "scenario" not in self.profile.methods:
                worst = -1
        return WhatIf(before, after, after - before, worst)

    def margin(self, top: int = 5) -> AccountMargin:
        """Full margin report: IM, MM, ratio, per-underlying scan, binding scenario, drivers."""
        return margin_report(self, top)

    def top_driver(self) -> str:
        """The position losing most in the binding scenario (instrument id; "" if none):
        ``margin(top=1).top_contributors[0].instrument`` without the rest of the report.

        O(positions) plus one scan per underlying: the per-fill AccountRisk refreshes it."""
        return top_driver_of(self)

    def scenario_with_orders(self, u: int) -> tuple[np.ndarray, float, float]:
        """Read-only view of underlying ``u``'s what-if inputs (for the FPGA risk filter).

        Returns (the scenario P&L of positions plus open orders on their worst side,
        currency per scenario, a copy; that underlying's scenario margin term with
        orders, currency; its short-option notional with orders, currency before the
        profile's short_option_minimum rate). :meth:`what_if` starts from these.
        """
        return self._combined_views[u].copy(), float(self._terms_all[u]), float(self._short_all[u])

    def quantities(self) -> np.ndarray:
        """Signed held contracts per table row (a copy), for stress and audit."""
        return self._exposure.quantity.copy()

    def iter_positions(self) -> Iterator[tuple[str, Position]]:
        for row, pos in self.positions.items():
            yield self.model.table.ids[row], pos

    # ----- internals ------------------------------------------------------
    def _orders_var(self, extra: float = 0.0) -> float:
        """The open orders' stand-alone VaRs (plus ``extra``) summed: = math.fsum of them."""
        total = self._var_sum
        if not total._nonfinite and extra - extra == 0.0:  # = total.exact, without a property call
            return total.value(extra)
        values = [o.var for o in self.orders.values()]
        return math.fsum(values + [extra] if extra else values)

    def _refresh_var(self) -> None:
        self._reserve.var = self._orders_var() if self._uses_var else 0.0

    def _bind_views(self, model: RiskModel) -> None:
        # Positions + worst-case orders per scenario, kept summed so a what-if adds one
        # vector, not two; one view per underlying of each sum, sliced once per model.
        self._im_with_orders = None
        self._trial = None
        self._upl = None
        self._lists = model_lists(model)
        self._combined = np.zeros(model.n_scenarios)
        self._combined_views = [self._combined[seg] for seg in model.segments]
        self._exposure_views = [self._exposure.scenario[seg] for seg in model.segments]
        self._reserve_views = [self._reserve.scenario[seg] for seg in model.segments]
        self._short_all = [0.0] * model.n_underlyings

    def _open_add(self, row: int, buy: bool, quantity: float) -> None:
        """Add ``quantity`` (signed contracts) to the open buys (``buy``) or sells of ``row``."""
        entry = self.open_by_row.get(row)
        if entry is None:
            entry = self.open_by_row[row] = [0.0, 0.0]
        side = 0 if buy else 1
        value = entry[side] + quantity
        # Fractional lots summed in floating point must still close a row exactly.
        entry[side] = 0.0 if abs(value) < QUANTITY_EPSILON else value
        if entry[0] == 0.0 and entry[1] == 0.0:
            del self.open_by_row[row]

    def _refresh_terms(self, u: int, held: bool = True) -> None:
        """Recompute underlying ``u``'s cached terms; ``held=False``: only the orders
        changed, so the positions-alone term stands."""
        self._im_with_orders = None
        self._trial = None
        short = self._exposure.short_list[u] + self._reserve.short_notional[u]
        self._short_all[u] = short
        if held:
            self._im_held = None
            try:
                self._terms_held[u] = scenario_term(self.model, self.profile, self._exposure, u)
            except RiskModelError:
                self._terms_held[u] = _NAN  # never a stale figure: a sum with it is NaN, which fails closed
                raise
        self._refresh_all(u, short)

    def _refresh_all(self, u: int, short: float) -> None:
        """Underlying ``u``'s term with orders from the sums (= scenario_term(..., reserve))."""
        combined = self._combined_views[u]
        np.add(self._exposure_views[u], self._reserve_views[u], combined)
        worst = combined.item(combined.argmin()) if combined.size else 0.0  # = min (_scan_value)
        if worst != worst:
            self._terms_all[u] = _NAN
            scan_risk(combined)  # raises
        scan = -worst if worst < 0.0 else 0.0
        som = self.profile.short_option_minimum * short
        self._terms_all[u] = max(scan, som)
