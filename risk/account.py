"""One account's positions, cash, open-order reservations and margin.

Three exposures are kept: the positions alone, positions plus every open buy
order as if filled, and positions plus every open sell order as if filled. Margin
with open orders is the worse of the two order sides (an order reserves margin
as if filled, on the worst side, until it is filled, cancelled, rejected or
expires). A fill or an order is O(S_u) on each exposure; a what-if of one more
order is O(S_u) and equals a full recomputation (tests check this).

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

from risk.exposure import Exposure, MethodMargins, initial_margin, method_margins, scan_risk
from risk.model import RiskModel
from risk.params import MarginProfile
from risk.tiers import Tier, margin_ratio

CURRENT, BUYS, SELLS = 0, 1, 2


class Position(msgspec.Struct):
    """Signed quantity (contracts) and average traded price (currency per unit)."""

    quantity: float = 0.0
    average_price: float = 0.0


class OpenOrder(msgspec.Struct, frozen=True):
    """An accepted order's reservation: signed open quantity and limit price."""

    order_id: str
    row: int
    quantity: float
    limit_price: float


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


class WhatIf(msgspec.Struct, frozen=True):
    """Margin effect of one order as if filled (currency).

    ``initial_margin_before`` / ``_after`` count open orders on their worst side;
    ``marginal_im`` = after - before. ``binding_scenario`` is the worst scenario
    index of the order's underlying after the order (-1 when no scenario method).
    """

    initial_margin_before: float
    initial_margin_after: float
    marginal_im: float
    binding_scenario: int


class Account:
    """Positions, cash, reservations and cached margin terms of one account."""

    def __init__(self, account_id: str, profile: MarginProfile, model: RiskModel, cash: float = 0.0) -> None:
        self.id = account_id
        self.profile = profile
        self.model = model
        self.cash = float(cash)
        self.positions: dict[int, Position] = {}
        self.orders: dict[str, OpenOrder] = {}
        self.tier = Tier.NORMAL
        self._sides = [Exposure(model), Exposure(model), Exposure(model)]
        self._scenario_only = profile.methods == ("scenario",)
        self._terms = [np.zeros(model.n_underlyings) for _ in range(3)]
        #: Sum of each side's terms: scenario IM per side, kept so a what-if reads it in O(1).
        self._scenario_im = [0.0, 0.0, 0.0]

    # ----- state changes -------------------------------------------------
    def apply_fill(self, row: int, quantity: float, price: float, order_id: str | None = None) -> None:
        """Book a fill of ``quantity`` contracts (signed) at ``price`` (per unit).

        Realized P&L of a reduction goes to cash at the average price. If the
        fill belongs to an open order, that order's reservation shrinks by the
        filled quantity (its side is then unchanged: the order moved from
        reserved to held).
        """
        mult = self.model.table.multiplier[row]
        pos = self.positions.setdefault(row, Position())
        q0, q1 = pos.quantity, pos.quantity + quantity
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
        if q1 == 0.0:
            del self.positions[row]
        for side in (CURRENT, BUYS, SELLS):
            self._add(side, row, quantity)
        if order_id is not None and order_id in self.orders:
            order = self.orders[order_id]
            filled = math.copysign(min(abs(quantity), abs(order.quantity)), order.quantity)
            self._add(self._side_of(order.quantity), row, -filled)
            remaining = order.quantity - filled
            if remaining == 0.0:
                del self.orders[order_id]
            else:
                self.orders[order_id] = OpenOrder(order_id, row, remaining, order.limit_price)

    def reserve(self, order_id: str, row: int, quantity: float, limit_price: float) -> None:
        """Reserve margin for an accepted order as if filled; replaces an existing id."""
        if order_id in self.orders:
            self.release(order_id)
        self.orders[order_id] = OpenOrder(order_id, row, quantity, limit_price)
        self._add(self._side_of(quantity), row, quantity)

    def release(self, order_id: str) -> bool:
        """Drop an order's reservation (cancelled, rejected, expired). False if unknown."""
        order = self.orders.pop(order_id, None)
        if order is None:
            return False
        self._add(self._side_of(order.quantity), order.row, -order.quantity)
        return True

    def rebind(self, model: RiskModel) -> None:
        """Switch to new risk arrays (after a revaluation) and rebuild every sum: O(n S)."""
        self.model = model
        for side, exposure in enumerate(self._sides):
            exposure.rebuild(model)
            self._refresh_terms(side)

    # ----- margin ---------------------------------------------------------
    def equity(self) -> tuple[float, float]:
        """(equity, unrealized P&L) at the model's marks, currency."""
        mark = self.model.valuation.mark
        mult = self.model.table.multiplier
        upl = float(sum(p.quantity * (mark[r] - p.average_price) * mult[r] for r, p in self.positions.items()))
        return self.cash + upl, upl

    def initial_margin(self, side: int = CURRENT) -> float:
        """IM of one side (positions, or positions plus buy or sell orders), currency."""
        if self._scenario_only:
            return self._scenario_im[side]
        return initial_margin(method_margins(self.model, self._sides[side], self.profile))

    def initial_margin_with_orders(self) -> float:
        """IM counting open orders as filled on their worst side, currency."""
        if not self.orders:
            return self.initial_margin(CURRENT)
        return max(self.initial_margin(BUYS), self.initial_margin(SELLS))

    def what_if(self, row: int, quantity: float) -> WhatIf:
        """IM before and after one more order of ``quantity`` contracts of ``row``.

        O(S_u) for scenario-only profiles (plus O(U^2 + D) with VaR methods), and
        equal to reserving the order and recomputing from scratch.
        """
        side = BUYS if quantity > 0 else SELLS
        model = self.model
        u = model.block_of[row]
        exposure = self._sides[side]
        trial = quantity * model.scenario_rows[row]
        trial += exposure.scenario[model.segments[u]]
        worst = int(trial.argmin())
        if self._scenario_only:
            ims = self._scenario_im
            before = max(ims[BUYS], ims[SELLS])
            other = ims[SELLS if side == BUYS else BUYS]
            q0 = exposure.quantity[row]
            short = exposure.short_notional[u] + (max(-(q0 + quantity), 0.0) - max(-q0, 0.0)) * model.option_notional[row]
            loss = -float(trial[worst])
            term = max(loss if loss > 0.0 else 0.0, self.profile.short_option_minimum * short)
            after_side = ims[side] - float(self._terms[side][u]) + term
        else:
            before = self.initial_margin_with_orders()
            other = self.initial_margin(SELLS if side == BUYS else BUYS)
            probe = exposure.copy()
            probe.add(model, row, quantity)
            after_side = initial_margin(method_margins(model, probe, self.profile))
        after = max(after_side, other)
        return WhatIf(before, after, after - before, worst)

    def margin(self, top: int = 5) -> AccountMargin:
        """Full margin report: IM, MM, ratio, per-underlying scan, binding scenario, drivers."""
        model, exposure = self.model, self._sides[CURRENT]
        methods = method_margins(model, exposure, self.profile)
        im = float(initial_margin(methods))
        mm = self.profile.mm_factor * im
        equity, upl = self.equity()
        per_underlying = []
        for u, (block, seg) in enumerate(zip(model.blocks, model.segments)):
            segment = exposure.scenario[seg]
            som = float(self.profile.short_option_minimum * exposure.short_notional[u])
            scan = scan_risk(segment)
            label = block.scenarios.labels[int(segment.argmin())] if scan > 0.0 else ""
            per_underlying.append(UnderlyingMargin(block.underlying, scan, som, max(scan, som), label))
        binding_u = int(np.argmax([m.requirement for m in per_underlying])) if per_underlying else 0
        contributors: list[Contributor] = []
        binding_label = ""
        if per_underlying and per_underlying[binding_u].requirement > 0.0:
            block = model.blocks[binding_u]
            scenario = int(exposure.scenario[model.segments[binding_u]].argmin())
            binding_label = block.scenarios.labels[scenario]
            held = [(r, p.quantity) for r, p in self.positions.items() if model.block_of[r] == binding_u]
            pnl = [(q * float(model.scenario_rows[r][scenario]), r, q) for r, q in held]
            contributors = [Contributor(model.table.ids[r], q, v) for v, r, q in sorted(pnl)[:top]]
        return AccountMargin(
            account=self.id, equity=equity, cash=self.cash, unrealized_pnl=upl,
            initial_margin=im, maintenance_margin=mm,
            initial_margin_with_orders=float(self.initial_margin_with_orders()),
            margin_ratio=margin_ratio(mm, equity), methods=methods,
            underlyings=tuple(per_underlying),
            binding_underlying=per_underlying[binding_u].underlying if per_underlying else "",
            binding_scenario=binding_label, top_contributors=tuple(contributors),
        )

    def quantities(self) -> np.ndarray:
        """Signed held contracts per table row (a copy), for stress and audit."""
        return self._sides[CURRENT].quantity.copy()

    def iter_positions(self) -> Iterator[tuple[str, Position]]:
        for row, pos in self.positions.items():
            yield self.model.table.ids[row], pos

    # ----- internals ------------------------------------------------------
    @staticmethod
    def _side_of(quantity: float) -> int:
        return BUYS if quantity > 0 else SELLS

    def _add(self, side: int, row: int, quantity: float) -> None:
        self._sides[side].add(self.model, row, quantity)
        u = self.model.block_of[row]
        exposure = self._sides[side]
        terms = self._terms[side]
        new_term = max(scan_risk(exposure.scenario[self.model.segments[u]]),
                       self.profile.short_option_minimum * float(exposure.short_notional[u]))
        self._scenario_im[side] += new_term - float(terms[u])
        terms[u] = new_term

    def _refresh_terms(self, side: int) -> None:
        exposure = self._sides[side]
        for u, seg in enumerate(self.model.segments):
            self._terms[side][u] = max(scan_risk(exposure.scenario[seg]),
                                       self.profile.short_option_minimum * exposure.short_notional[u])
        self._scenario_im[side] = float(self._terms[side].sum())
