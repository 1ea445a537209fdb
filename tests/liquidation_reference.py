"""The partial-liquidation planner's search as it was before it was made incremental (a reference).

tests/test_liquidation_planner_incremental.py checks that risk.liquidation's
planner (risk.liquidation_greedy, which caches each candidate's next lot and
re-evaluates only the underlying that moved) cuts exactly what this slower
version cut: every step here re-evaluates every candidate. Scenario-only
profiles only (the VaR profiles' generic path was not changed). Kept verbatim
from risk/liquidation.py and risk/liquidation_greedy.py at commit b2ecf37, so do
not "fix" it: it is the behaviour the optimized planner must reproduce.
"""

from __future__ import annotations

import math

import numpy as np

from risk.account import Account
from risk.instruments import OPTION
from risk.liquidation import PlannerParams

#: Relief below this (currency of MM) is no relief: rounding must not buy a cut.
RELIEF_EPSILON = 1e-9
#: Lots of one candidate priced per step (a longer run goes on at the next step).
MAX_CURVE = 64


class ReferenceBook:
    """The previous planner's view of one account (risk.liquidation.LiquidationBook then).

    Holds copies, never the account itself.
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
        self.held = np.fromiter((positions[r].quantity for r in rows), dtype=float, count=n)
        self.abs_held = np.abs(self.held)
        self.sign = -np.sign(self.held)  # the direction of a cut
        if params.lot_sizes:
            self.lot = np.array([params.lot_sizes.get(table.ids[r], params.lot_size) for r in rows], dtype=float)
        else:
            self.lot = np.full(n, float(params.lot_size))
        self.max_lots = np.ceil(self.abs_held / self.lot - 1e-9).astype(np.int64)
        kind = np.asarray(table.kind)[self.rows]
        self.is_option = kind == OPTION
        self.underlying = np.asarray(model.block_of, dtype=np.int64)[self.rows]
        self.mark = np.asarray(model.valuation.mark, dtype=float)[self.rows]
        self.unit = np.abs(self.mark) * np.asarray(table.multiplier, dtype=float)[self.rows]
        c = params.costs
        self.half_spread = np.where(self.is_option, c.option_half_spread,
                                    np.where(kind == 1, c.future_half_spread, c.spot_half_spread))
        self.costs = c
        self.option_notional = np.asarray(model.option_notional, dtype=float)[self.rows]
        self.has_options = bool(self.is_option.any())
        if self._scenario_only:
            self._dense(account)

    def _dense(self, account: Account) -> None:
        """The scenario P&L now and the candidates' risk arrays, in two layouts.

        ``pnl0``: the account's scenario P&L, underlyings one after the other
        (``column_slices[u]``); ``arrays``: candidates x those columns, each row zero
        outside its underlying's; ``compact``: each candidate's own underlying's
        columns only (candidates x the widest underlying), ``gather`` their column
        numbers in ``pnl0`` (column ``len(pnl0)`` pads a narrower underlying: the
        search appends a +inf there, which no minimum picks).
        """
        model = self.model
        exposure = account._exposure  # read only: copied below
        segments = model.segments
        sizes = [s.stop - s.start for s in segments]
        offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
        self.column_slices = [slice(int(offsets[u]), int(offsets[u + 1])) for u in range(len(segments))]
        width = int(offsets[-1])
        widest = max(sizes, default=0)
        n = len(self.rows)
        self.pnl0 = np.concatenate([exposure.scenario[s] for s in segments]) if segments else np.zeros(0)
        self.arrays = np.zeros((n, width))
        self.compact = np.zeros((n, widest))
        self.gather = np.full((n, widest), width, dtype=np.int64)
        position = np.asarray(model.position_in_block)[self.rows]
        for u in range(len(segments)):
            idx = np.flatnonzero(self.underlying == u)
            if not idx.size:
                continue
            block = np.asarray(model.blocks[u].arrays)[position[idx]]
            size = sizes[u]
            self.arrays[idx, offsets[u]:offsets[u + 1]] = block
            self.compact[idx, :size] = block
            self.gather[idx, :size] = np.arange(offsets[u], offsets[u + 1])
        self.short0 = np.asarray(exposure.short_notional, dtype=float).copy()
        #: Candidate i's risk array over its own underlying's columns (views).
        self.own_row = self.compact if len(set(sizes)) <= 1 else \
            [self.compact[i, :sizes[u]] for i, u in enumerate(self.underlying.tolist())]
        #: Scenario term per underlying and MM before any cut (currency).
        self.initial_terms = self._scenario_terms(self.pnl0, self.short0)
        self.initial_mm = self.mm_factor * math.fsum(self.initial_terms)
        if not (np.isfinite(self.pnl0).all() and np.isfinite(self.arrays).all()):
            raise ValueError("scenario P&L is NaN: no plan on an unpriceable book")

    def _scenario_terms(self, pnl: np.ndarray, short: np.ndarray) -> list[float]:
        terms = []
        for u, columns in enumerate(self.column_slices):
            worst = float(pnl[columns].min()) if columns.stop > columns.start else 0.0
            terms.append(max(-worst, 0.0, self.som * float(short[u])))
        return terms


def ratio_ok(mm: np.ndarray, equity: np.ndarray, target: float) -> np.ndarray:
    """Element-wise ``risk.tiers.margin_ratio(mm, equity) <= target`` (fractions)."""
    positive = equity > 0.0
    ratio = mm / np.where(positive, equity, 1.0)
    return (mm <= 0.0) | (positive & (ratio <= target))


class ReferenceGreedy:
    """Search state: lots taken per candidate and the account's margin terms after them."""

    def __init__(self, book: ReferenceBook, target: float) -> None:
        self.book = book
        self.target = target
        n = len(book.rows)
        self.lots = np.zeros(n, dtype=np.int64)
        self.done = np.zeros(n)  # contracts cut per candidate (unsigned)
        self.done_cost = np.zeros(n)  # expected cost of them (currency)
        self.quantity = book.held.copy()
        self.short_held = np.maximum(-book.held, 0.0)  # short contracts (options' minimum)
        self.pnl = np.append(book.pnl0, np.inf)  # the last column pads short underlyings
        self.short = book.short0.astype(float).copy()
        c = book.costs
        self.linear = book.unit * book.half_spread  # currency per contract
        self.quadratic = book.unit * (c.impact / 2.0)  # currency per contract^2
        self.floor = c.min_cost_per_contract
        self.mm_factor = book.mm_factor
        self.terms = np.array(book.initial_terms)
        self.mm = book.initial_mm
        self.spent = 0.0
        # Per-candidate constants as Python floats: a run is priced lot by lot in Python.
        self._lot, self._abs, self._sign = book.lot.tolist(), book.abs_held.tolist(), book.sign.tolist()
        self._linear, self._quadratic = self.linear.tolist(), self.quadratic.tolist()
        self._u, self._opt, self._max = book.underlying.tolist(), book.is_option.tolist(), book.max_lots.tolist()
        self._notional = book.option_notional.tolist()
        self._row = book.own_row
        self._allowed = np.ones(n, dtype=bool)

    def _term(self, u: int) -> float:
        b = self.book
        worst = float(self.pnl[b.column_slices[u]].min()) if b.column_slices[u].stop > b.column_slices[u].start \
            else 0.0
        return max(-worst, 0.0, b.som * float(self.short[u]))

    def _cost(self, idx: np.ndarray | slice | int, contracts: np.ndarray) -> np.ndarray:
        cost = contracts * (self.linear[idx] + self.quadratic[idx] * contracts)
        return np.maximum(cost, self.floor * contracts)

    def _relief(self, idx: np.ndarray | slice, contracts: np.ndarray) -> np.ndarray:
        """MM relief (currency) of moving candidate ``idx[j]`` to ``contracts[j]`` cut, alone."""
        b = self.book
        change = b.sign[idx] * (contracts - self.done[idx])
        pnl = self.pnl[b.gather[idx]]
        pnl += change[:, None] * b.compact[idx]
        term = pnl.min(axis=1)
        np.negative(term, out=term)
        np.maximum(term, 0.0, out=term)
        u = b.underlying[idx]
        short = self.short[u]
        if b.has_options:
            extra = np.maximum(-(self.quantity[idx] + change), 0.0)
            extra -= self.short_held[idx]
            extra *= b.option_notional[idx]
            short = short + extra
        np.maximum(term, b.som * short, out=term)
        relief = self.terms[u] - term
        relief *= self.mm_factor
        return relief

    def _move(self, i: int, lots: int) -> None:
        """Cut ``lots`` lots of candidate ``i`` in all (more or fewer than now)."""
        b = self.book
        contracts = min(lots * self._lot[i], self._abs[i])
        change = self._sign[i] * (contracts - float(self.done[i]))
        u = self._u[i]
        self.pnl[b.column_slices[u]] += change * self._row[i]
        self.quantity[i] += change
        if self._opt[i]:
            short = max(-float(self.quantity[i]), 0.0)
            self.short[u] += (short - float(self.short_held[i])) * self._notional[i]
            self.short_held[i] = short
        cost = self._cost1(i, contracts)
        self.spent += cost - float(self.done_cost[i])
        self.done_cost[i], self.done[i], self.lots[i] = cost, contracts, lots
        self.terms[u] = self._term(u)
        self.mm = self.mm_factor * math.fsum(self.terms.tolist())

    def _cost1(self, i: int, contracts: float) -> float:
        cost = contracts * (self._linear[i] + self._quadratic[i] * contracts)
        floor = self.floor * contracts
        return cost if cost > floor else floor

    def _terms_at(self, i: int, contracts: list[float]) -> list[float]:
        """Scenario term (currency) of ``i``'s underlying with ``i`` cut to each of ``contracts``."""
        b = self.book
        u = self._u[i]
        change = np.array(contracts)
        change -= float(self.done[i])
        change *= self._sign[i]
        pnl = np.multiply.outer(change, self._row[i])
        pnl += self.pnl[b.column_slices[u]]
        worst = pnl.min(axis=1).tolist() if pnl.shape[1] else [0.0] * len(contracts)
        som = b.som
        if self._opt[i]:
            q, held, notional = float(self.quantity[i]), float(self.short_held[i]), self._notional[i]
            base = float(self.short[u])
            shorts = [som * (base + (max(-(q + c), 0.0) - held) * notional) for c in change.tolist()]
        else:
            shorts = [som * float(self.short[u])] * len(contracts)
        return [max(-w, 0.0, s) for w, s in zip(worst, shorts)]

    def _curve(self, i: int) -> tuple[list[float], list[float]]:
        """Cumulative (relief, cost) of each further lot of ``i`` from the current state
        (currency; at most ``MAX_CURVE`` lots: a longer run goes on at the next step)."""
        k0 = int(self.lots[i])
        lot, held = self._lot[i], self._abs[i]
        contracts = [min((k0 + j) * lot, held) for j in range(1, min(self._max[i] - k0, MAX_CURVE) + 1)]
        term = float(self.terms[self._u[i]])
        mmf = self.mm_factor
        relief = [mmf * (term - t) for t in self._terms_at(i, contracts)]
        done_cost = float(self.done_cost[i])
        return relief, [self._cost1(i, c) - done_cost for c in contracts]

    def ratio_met(self) -> bool:
        equity = self.book.equity - self.spent
        return self.mm <= 0.0 or (equity > 0.0 and self.mm / equity <= self.target)

    # ----- taking lots ------------------------------------------------------------------
    def _refresh(self) -> None:
        """Exact (relief, cost) of every candidate's next lot, its score and finishing margin."""
        b = self.book
        nxt = (self.lots + 1) * b.lot
        np.minimum(nxt, b.abs_held, out=nxt)
        relief = self._relief(slice(None), nxt)
        cost = self._cost(slice(None), nxt)
        cost -= self.done_cost
        self.relief, self.cost = relief, cost
        good = self._allowed & (self.lots < b.max_lots) & (relief > RELIEF_EPSILON)
        self.score = np.where(good, relief / np.maximum(cost, 1e-12), -np.inf)
        self.margin = np.where(good, relief - self.target * cost, -np.inf)

    def run(self, allowed: np.ndarray) -> bool:
        """Take lots among ``allowed`` candidates until the target is met (True) or no lot helps.

        Each step re-evaluates every candidate's next lot exactly; the cheapest single
        lot that reaches the target wins, else the best score takes a run of lots.
        """
        self._allowed = allowed
        target = self.target
        if not self.ratio_met() and not allowed.any():
            return False
        while not self.ratio_met():
            self._refresh()
            equity = self.book.equity - self.spent
            near = (self.margin >= self.mm - target * equity) & (self.cost < equity)
            if near.any():  # one lot reaches the target: the cheapest such
                pick = int(np.argmin(np.where(near, self.cost, np.inf)))
                self._move(pick, int(self.lots[pick]) + 1)
                continue
            i = int(self.score.argmax())
            if self.score[i] == -np.inf:
                return False
            self.score[i] = -np.inf
            runner = float(self.score.max())
            relief, cost = self._curve(i)
            taken, before_r, before_c = 0, 0.0, 0.0
            for r, c in zip(relief, cost):
                step_r, step_c = r - before_r, c - before_c
                if not (step_r > RELIEF_EPSILON and step_r >= runner * max(step_c, 1e-12)):
                    break
                after = equity - c
                if after > 0.0 and self.mm - r <= target * after:
                    break  # the lot that reaches the target: the next step takes the cheapest such
                taken, before_r, before_c = taken + 1, r, c
            self._move(i, int(self.lots[i]) + max(taken, 1))
        return True

    # ----- giving lots back ------------------------------------------------------------
    def prune(self) -> None:
        """Give back every lot the plan can do without, dearest (by marginal cost) first."""
        b = self.book
        while True:
            taken = np.flatnonzero(self.lots)
            if not taken.size:
                return
            fewer = np.minimum((self.lots[taken] - 1) * b.lot[taken], b.abs_held[taken])
            saved = self.done_cost[taken] - self._cost(taken, fewer)
            ok = ratio_ok(self.mm - self._relief(taken, fewer), b.equity - self.spent + saved, self.target)
            if not ok.any():
                return
            dearest = np.where(ok, saved, -np.inf)
            j = int(np.argmax(dearest))
            dearest[j] = -np.inf
            i = int(taken[j])
            self._move(i, int(self.lots[i]) - self._give_back(i, float(dearest.max())))

    def _give_back(self, i: int, runner: float) -> int:
        """Lots of ``i`` to give back (>= 1, the first is known to keep the target met):
        while the target stays met and each is at least as dear as ``runner``."""
        k0 = int(self.lots[i])
        if k0 <= 1:
            return 1
        lot, held = self._lot[i], self._abs[i]
        contracts = [min(k * lot, held) for k in range(k0 - 1, -1, -1)]
        u = self._u[i]
        others = self.mm - self.mm_factor * float(self.terms[u])
        equity = self.book.equity - self.spent + float(self.done_cost[i])
        target = self.target
        given, previous = 0, float(self.done_cost[i])
        for c, term in zip(contracts, self._terms_at(i, contracts)):
            cost = self._cost1(i, c)
            mm, eq = others + self.mm_factor * term, equity - cost
            if not (mm <= 0.0 or (eq > 0.0 and mm / eq <= target)) or previous - cost < runner:
                break
            given, previous = given + 1, cost
        return max(given, 1)


def reference_lots(account: Account, params: PlannerParams, target: float) -> tuple[np.ndarray, np.ndarray, bool]:
    """(table rows, lots cut per row, reached) of the previous planner on ``account``."""
    book = ReferenceBook(account, params)
    greedy = ReferenceGreedy(book, target)
    linear = ~book.is_option
    reached = greedy.run(linear) or greedy.run(np.ones(len(book.rows), dtype=bool))
    if reached:
        greedy.prune()
    return book.rows, greedy.lots, reached


def reference_cuts(book, lots: np.ndarray) -> tuple:
    """The cuts risk.liquidation._plan made of ``lots`` before it was vectorized (Cut structs)."""
    from risk.liquidation import Cut

    order = sorted(np.flatnonzero(lots), key=lambda i: (bool(book.is_option[i]), int(book.rows[i])))
    delta = book.delta_quantity(lots)
    return tuple(Cut(row=int(book.rows[i]), instrument=book.model.table.ids[int(book.rows[i])],
                     quantity=float(delta[i]), lots=int(lots[i]),
                     expected_cost=book.cost(int(i), abs(float(delta[i]))), mark=float(book.mark[i]))
                 for i in order)
