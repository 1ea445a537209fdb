"""Partial-liquidation planner: the fewest, cheapest position cuts that restore a margin ratio.

Pure: no I/O, no clocks. Given an account (positions on a risk model) and a
target margin ratio (MM / equity, a fraction), :func:`plan_reduction` picks
reductions of held positions, in whole lots (the last lot of a position may be
its remainder), so that ``MM_after / (equity - expected cost) <= target``.

How it chooses. The margin relief of cutting one more lot is exact on the risk
arrays: the account's scenario P&L vector plus ``-lot x`` the instrument's risk
array (and the short-option notional it releases), MM = ``mm_factor`` x IM. The
expected cost of trading ``k`` contracts is ``k x unit x half_spread + unit x
impact x k^2 / 2`` (``unit`` = mark x multiplier, currency per contract), floored
at ``min_cost_per_contract`` per contract. Lots are taken greedily by relief per
unit of marginal cost; when one more lot of some position reaches the target,
the cheapest such lot is taken and planning stops.

Futures (and spot) first: delta is cut with linear instruments before any option
position is touched (phase 1); options join only when linear cuts alone cannot
reach the target (phase 2). Nothing that adds margin is ever cut (relief must be
> 0), no position is flipped or opened. Finally every lot that the plan can do
without is dropped again (dearest first), so no single lot of the result can be
removed with the target still met: it never liquidates more than needed.
"""

from __future__ import annotations

import math
import weakref
from typing import Annotated

import msgspec
import numpy as np
from msgspec import Meta

from risk.account import Account
from risk.exposure import Exposure, initial_margin, method_margins
from risk.instruments import OPTION
from risk.liquidation_greedy import RELIEF_EPSILON, Greedy
from risk.model import RiskModel
from risk.tiers import margin_ratio

_min = np.minimum.reduce
_NonNegative = Annotated[float, Meta(ge=0.0)]
_Positive = Annotated[float, Meta(gt=0.0)]


class CostParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Expected execution cost of a liquidation trade.

    Half-spreads are fractions of the instrument's mark price, per kind.
    ``impact``: extra price concession per contract already traded in the same
    order (fraction of the mark per contract, so the cost of k contracts grows as
    k^2 / 2). ``min_cost_per_contract``: a floor, currency per contract (a tick
    times the multiplier), so a nearly worthless option is never "free" to trade.
    """

    future_half_spread: _NonNegative = 0.0001
    spot_half_spread: _NonNegative = 0.0005
    option_half_spread: _NonNegative = 0.02
    impact: _NonNegative = 0.00002
    min_cost_per_contract: _NonNegative = 0.5


class PlannerParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``target_ratio``: MM / equity (fraction) a partial liquidation restores.
    ``lot_size``: contracts per lot unless ``lot_sizes`` names the instrument."""

    target_ratio: Annotated[float, Meta(gt=0.0)] = 0.60
    lot_size: _Positive = 1.0
    lot_sizes: dict[str, _Positive] = {}
    costs: CostParams = CostParams()


class Cut(msgspec.Struct, frozen=True, kw_only=True):
    """One reduction: ``quantity`` is the signed change of the position (contracts;
    -3 sells 3 of a long), ``lots`` whole lots of it, ``expected_cost`` currency."""

    row: int
    instrument: str
    quantity: float
    lots: int
    expected_cost: float
    mark: float


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """A set of cuts and the margin it leaves (currency; ratios MM / equity fractions).

    ``equity_after`` deducts the expected cost; ``reached``: ratio_after <= target.
    """

    account: str
    cuts: tuple[Cut, ...]
    target_ratio: float
    ratio_before: float
    ratio_after: float
    maintenance_before: float
    maintenance_after: float
    equity_before: float
    equity_after: float
    expected_cost: float
    reached: bool
    full: bool = False


class LiquidationBook:
    """The planner's view of one account: candidate positions and margin terms.

    Built by :func:`book_from_account`; holds copies, never the account itself.
    Per candidate (a held position, index ``i``): ``held`` contracts (signed),
    ``lot`` contracts per lot, ``unit`` currency per contract (|mark| x multiplier),
    ``half_spread`` (fraction of the mark). Scenario-only profiles get the risk
    arrays as one dense matrix ``arrays`` (candidates x scenarios, each row zero
    outside its underlying's columns) so that the margin of many trial cuts is a
    handful of NumPy calls (risk.liquidation_greedy).
    """

    def __init__(self, account: Account, params: PlannerParams) -> None:
        model = account.model
        table = model.table
        self.account_id = account.id
        self.model = model
        self.profile = account.profile
        self.mm_factor = float(account.profile.mm_factor)
        self.som = float(account.profile.short_option_minimum)
        self.equity = account.equity()[0]
        #: Held contracts per table row: the VaR profiles' exact path rebuilds margins from it.
        self.quantity = None if account.profile.methods == ("scenario",) else account.quantities()
        self._scenario_only = account.profile.methods == ("scenario",)
        positions = account.positions
        rows = sorted(positions)
        n = len(rows)
        self.rows = np.array(rows, dtype=np.int64)
        self.held = np.array([positions[r].quantity for r in rows], dtype=float)
        self.abs_held = np.abs(self.held)
        self.sign = -np.sign(self.held)  # the direction of a cut
        if params.lot_sizes:
            self.lot = np.array([params.lot_sizes.get(table.ids[r], params.lot_size) for r in rows], dtype=float)
        else:
            self.lot = np.full(n, float(params.lot_size))
        self.max_lots = np.ceil(self.abs_held / self.lot - 1e-9).astype(np.int64)
        every = _rows_of(model)
        self._every = every
        self.is_option = every.is_option[self.rows]
        self.underlying = every.block_of[self.rows]
        self.mark = every.mark[self.rows]
        self.unit = every.unit[self.rows]
        c = params.costs
        self.half_spread = every.half_spread(c)[self.rows]
        self.costs = c
        self.option_notional = every.option_notional[self.rows]
        self.has_options = bool(self.is_option.any())
        if self._scenario_only:
            self._dense(account)

    def _dense(self, account: Account) -> None:
        """The scenario P&L now and the candidates' risk arrays, in two layouts.

        ``pnl0``: the account's scenario P&L, underlyings one after the other
        (``column_slices[u]``); ``arrays``: candidates x those columns, each row zero
        outside its underlying's (for :meth:`maintenance`); ``groups``: per underlying
        with candidates, (u, the candidates' indices, their risk arrays: its scenarios
        plus a zero row x the candidates, and candidates x its scenarios) for the search
        (risk.liquidation_greedy), which finds candidate ``i`` at ``group_of[i]``,
        ``slot[i]``; ``pnl_padded``: ``pnl0`` with a 0 after each underlying's columns
        (``padded_slices[u]``: its columns and that 0).
        """
        model, every = self.model, self._every
        exposure = account._exposure  # read only: copied below
        sizes, offsets = every.sizes, every.offsets
        self.column_slices = every.column_slices
        self.padded_slices = every.padded_slices
        n = len(self.rows)
        self.pnl0 = exposure.scenario[every.scenario_columns]
        self.pnl_padded = np.zeros(len(self.pnl0) + len(sizes))
        self.pnl_padded[every.padded_columns] = self.pnl0
        self.arrays = np.zeros((n, offsets[-1]))
        position = every.position[self.rows]
        self.groups: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
        self.group_of, self.slot = [0] * n, [0] * n
        underlying = self.underlying.tolist()
        members: dict[int, list[int]] = {}
        for i, u in enumerate(underlying):
            members.setdefault(u, []).append(i)
        for u, ids in sorted(members.items()):
            idx = np.array(ids, dtype=np.int64)
            block = every.arrays[u][position[idx]]
            self.arrays[idx, offsets[u]:offsets[u + 1]] = block
            rows = np.zeros((sizes[u] + 1, idx.size))
            rows[:-1] = block.T
            g = len(self.groups)
            for slot, i in enumerate(ids):
                self.group_of[i], self.slot[i] = g, slot
            self.groups.append((u, idx, rows, block))
        self.short0 = np.asarray(exposure.short_notional, dtype=float).copy()
        #: Scenario term per underlying and MM before any cut (currency).
        self.initial_terms = self._scenario_terms(self.pnl0, self.short0)
        self.initial_mm = self.mm_factor * math.fsum(self.initial_terms)
        if not (np.isfinite(self.pnl0).all() and every.finite[self.rows].all()):
            raise ValueError("scenario P&L is NaN: no plan on an unpriceable book")

    # ----- money ------------------------------------------------------------
    def cost(self, i: int, contracts: float) -> float:
        """Expected cost (currency) of trading ``contracts`` (unsigned) of candidate ``i`` at once."""
        if contracts <= 0.0:
            return 0.0
        c = self.costs
        raw = float(self.unit[i]) * (float(self.half_spread[i]) * contracts + c.impact * contracts * contracts / 2.0)
        return max(raw, c.min_cost_per_contract * contracts)

    def cost_vector(self, idx: np.ndarray | int, contracts: np.ndarray) -> np.ndarray:
        """:meth:`cost` of ``contracts`` of candidates ``idx`` (element-wise; 0 contracts cost 0)."""
        c = self.costs
        raw = self.unit[idx] * (self.half_spread[idx] * contracts + c.impact * contracts * contracts / 2.0)
        return np.maximum(raw, c.min_cost_per_contract * contracts)

    def contracts(self, i: int, lots: int) -> float:
        """Contracts (unsigned) in the first ``lots`` lots of candidate ``i``."""
        return min(lots * float(self.lot[i]), float(self.abs_held[i]))

    def contracts_vector(self, lots: np.ndarray) -> np.ndarray:
        """Contracts (unsigned) in the first ``lots[i]`` lots of every candidate."""
        return np.minimum(lots * self.lot, self.abs_held)

    # ----- margin -------------------------------------------------------------
    def scenario_maintenance(self, pnl: np.ndarray, short: np.ndarray) -> float:
        """MM (currency) of a scenario-only profile from the scenario P&L (``pnl0``'s
        layout) and the short-option notional per underlying: mm_factor x the sum over
        underlyings of max(scan risk, short-option minimum)."""
        return self.mm_factor * math.fsum(self._scenario_terms(pnl, short))

    def _scenario_terms(self, pnl: np.ndarray, short: np.ndarray) -> list[float]:
        terms, som, short = [], self.som, short.tolist()
        for u, columns in enumerate(self.column_slices):
            worst = float(_min(pnl[columns])) if columns.stop > columns.start else 0.0
            terms.append(max(-worst, 0.0, som * short[u]))
        return terms

    def short_after(self, quantity: np.ndarray) -> np.ndarray:
        """Short-option notional per underlying with the candidates at ``quantity`` (signed contracts)."""
        if not self.has_options:
            return self.short0.copy()
        change = (np.maximum(-quantity, 0.0) - np.maximum(-self.held, 0.0)) * self.option_notional
        return self.short0 + np.bincount(self.underlying, weights=change, minlength=len(self.short0))

    def maintenance(self, lots: np.ndarray) -> float:
        """MM (currency) after cutting ``lots`` lots of each candidate: exact, any profile."""
        return self._maintenance(self.delta_quantity(lots))

    def _maintenance(self, delta: np.ndarray) -> float:
        """:meth:`maintenance` after the position changes ``delta`` (signed contracts per candidate)."""
        if self._scenario_only:
            pnl = self.pnl0 + delta @ self.arrays
            short = self.short_after(self.held + delta)
            return self.scenario_maintenance(pnl, short)
        exposure = Exposure(self.model, track_history="historical_var" in self.profile.methods)
        q = self.quantity.copy()  # type: ignore[union-attr]
        q[self.rows] += delta
        for r in np.flatnonzero(q):
            exposure.add(self.model, int(r), float(q[r]))
        return self.mm_factor * initial_margin(method_margins(self.model, exposure, self.profile))

    def delta_quantity(self, lots: np.ndarray) -> np.ndarray:
        """Signed position change per candidate for ``lots`` lots cut."""
        return self.sign * self.contracts_vector(lots)

    def before(self) -> tuple[float, float, float]:
        """(MM, equity, ratio) with nothing cut (currency, fraction)."""
        if self._scenario_only:
            return self.initial_mm, self.equity, margin_ratio(self.initial_mm, self.equity)
        return self.evaluate(np.zeros(len(self.rows), dtype=np.int64))

    def evaluate(self, lots: np.ndarray) -> tuple[float, float, float]:
        """(MM, equity after expected cost, ratio) after cutting ``lots`` (currency, fraction)."""
        return self._evaluate(lots)[:3]  # type: ignore[return-value]

    def _evaluate(self, lots: np.ndarray) -> tuple[float, float, float, np.ndarray, np.ndarray]:
        """:meth:`evaluate`, and the signed position change and expected cost per candidate."""
        contracts = self.contracts_vector(lots)
        delta = self.sign * contracts
        mm = self._maintenance(delta)
        costs = self.cost_vector(slice(None), contracts)
        equity = self.equity - math.fsum(costs.tolist())
        return mm, equity, margin_ratio(mm, equity), delta, costs


class _ModelRows:
    """What a book gathers per candidate, for every row of a model's table at once:
    built once per model (a model is never changed in place: a market update makes a
    new one), so a book is a handful of gathers. ``finite``: the row's risk array is."""

    def __init__(self, model: RiskModel) -> None:
        table = model.table
        self.kind = np.asarray(table.kind)
        self.is_option = self.kind == OPTION
        self.block_of = np.asarray(model.block_of, dtype=np.int64)
        self.mark = np.asarray(model.valuation.mark, dtype=float)
        self.unit = np.abs(self.mark) * np.asarray(table.multiplier, dtype=float)
        self.option_notional = np.asarray(model.option_notional, dtype=float)
        self.position = np.asarray(model.position_in_block, dtype=np.int64)
        self.finite = np.ones(len(self.kind), dtype=bool)
        for block in model.blocks:
            self.finite[np.asarray(block.rows)] = np.isfinite(np.asarray(block.arrays)).all(axis=1)
        self.sizes = [s.stop - s.start for s in model.segments]
        self.offsets = [0]
        for size in self.sizes:
            self.offsets.append(self.offsets[-1] + size)
        self.column_slices = [slice(a, b) for a, b in zip(self.offsets, self.offsets[1:])]
        #: The scenario vector's columns in ``column_slices``' order; the same with a 0 after
        #: each underlying's columns (``padded_columns``: where each one goes; ``padded_slices``).
        self.scenario_columns = np.array([c for s in model.segments for c in range(s.start, s.stop)],
                                         dtype=np.int64)
        self.padded_columns = np.array([c + u for u, s in enumerate(self.column_slices)
                                        for c in range(s.start, s.stop)], dtype=np.int64)
        self.padded_slices = [slice(s.start + u, s.stop + u + 1) for u, s in enumerate(self.column_slices)]
        self.arrays = [np.asarray(block.arrays) for block in model.blocks]
        self._half_spread: dict[CostParams, np.ndarray] = {}

    def half_spread(self, c: CostParams) -> np.ndarray:
        """Half-spread per row (fraction of the mark), by kind."""
        out = self._half_spread.get(c)
        if out is None:
            out = self._half_spread[c] = np.where(self.is_option, c.option_half_spread,
                                                  np.where(self.kind == 1, c.future_half_spread,
                                                           c.spot_half_spread))
        return out


_MODEL_ROWS: "weakref.WeakKeyDictionary[RiskModel, _ModelRows]" = weakref.WeakKeyDictionary()


def _rows_of(model: RiskModel) -> _ModelRows:
    rows = _MODEL_ROWS.get(model)
    if rows is None:
        rows = _MODEL_ROWS[model] = _ModelRows(model)
    return rows


def book_from_account(account: Account, params: PlannerParams) -> LiquidationBook:
    """The planner's copy of ``account`` (positions, margin terms, costs) on its model."""
    return LiquidationBook(account, params)


def plan_reduction(book: LiquidationBook, target_ratio: float) -> Plan:
    """The cuts that bring ``book`` to ``target_ratio`` or below (see the module docstring).

    When no set of cuts reaches the target, the plan takes every lot with positive
    relief (``reached`` is False): the account is then a candidate for full liquidation.
    """
    linear = ~book.is_option
    if book._scenario_only:
        greedy = Greedy(book, target_ratio)
        reached = greedy.run(linear) or greedy.run(np.ones(len(book.rows), dtype=bool))
        if reached:
            greedy.prune()
        lots = greedy.lots
    else:
        lots, reached = _plan_generic(book, target_ratio, linear)
    return _plan(book, lots, target_ratio, full=False)


def plan_full(book: LiquidationBook) -> Plan:
    """Close every position (full liquidation), linear instruments listed first."""
    return _plan(book, book.max_lots.copy(), 0.0, full=True)


def _plan_generic(book: LiquidationBook, target: float, linear: np.ndarray) -> tuple[np.ndarray, bool]:
    """Same policy for VaR profiles, with an exact margin per trial (slower: O(n) margins per lot)."""
    lots = np.zeros(len(book.rows), dtype=np.int64)
    mm, equity, ratio = book.evaluate(lots)
    for allowed in (linear, np.ones(len(book.rows), dtype=bool)):
        while ratio > target:
            best, best_score, finish, finish_cost = -1, 0.0, -1, math.inf
            for i in np.flatnonzero(allowed & (lots < book.max_lots)):
                lots[i] += 1
                mm_i, eq_i, ratio_i = book.evaluate(lots)
                lots[i] -= 1
                relief = mm - mm_i
                cost = equity - eq_i
                if relief <= RELIEF_EPSILON:
                    continue
                if ratio_i <= target and cost < finish_cost:
                    finish, finish_cost = int(i), cost
                score = relief / max(cost, 1e-12)
                if score > best_score:
                    best, best_score = int(i), score
            pick = finish if finish >= 0 else best
            if pick < 0:
                break
            lots[pick] += 1
            mm, equity, ratio = book.evaluate(lots)
        if ratio <= target:
            break
    if ratio <= target:
        changed = True
        while changed:
            changed = False
            for i in np.flatnonzero(lots):
                lots[i] -= 1
                if book.evaluate(lots)[2] <= target:
                    changed = True
                    break
                lots[i] += 1
    return lots, ratio <= target


def _plan(book: LiquidationBook, lots: np.ndarray, target: float, *, full: bool) -> Plan:
    mm0, eq0, r0 = book.before()
    mm1, eq1, r1, delta, costs = book._evaluate(lots)
    cut = np.flatnonzero(lots)
    rows, option = book.rows[cut].tolist(), book.is_option[cut].tolist()
    order = sorted(range(len(rows)), key=lambda k: (option[k], rows[k]))  # linear first, then by row
    # book.cost of each cut, vectorized (the same operations on |delta|: every cut trades > 0 contracts)
    costs, delta = costs[cut].tolist(), delta[cut].tolist()
    marks, counts, ids = book.mark[cut].tolist(), lots[cut].tolist(), book.model.table.ids
    cuts = tuple(Cut(row=rows[k], instrument=ids[rows[k]], quantity=delta[k], lots=counts[k],
                     expected_cost=costs[k], mark=marks[k]) for k in order)
    return Plan(account=book.account_id, cuts=cuts, target_ratio=target, ratio_before=r0, ratio_after=r1,
                maintenance_before=mm0, maintenance_after=mm1, equity_before=eq0, equity_after=eq1,
                expected_cost=eq0 - eq1, reached=r1 <= target, full=full)
